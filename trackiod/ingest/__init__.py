"""The writer thread's front half: frames in, one transaction per batch, acknowledgements out."""
