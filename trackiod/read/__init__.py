"""Query-only access to the database, one module per concern: the connection, runs and history, series,
ranks, contexts, media, energy, alerts, files and artifacts. No writes to the database."""
