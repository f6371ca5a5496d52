"""The database and the files beside it: schema and migrations, the chunk codec, the blob store, the single writer."""
