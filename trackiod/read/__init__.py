"""Query-only access to the database: runs, series, media, energy, attachments. No writes."""
