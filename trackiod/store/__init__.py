"""The database: schema and migrations, the chunked series codec, the single writer."""
