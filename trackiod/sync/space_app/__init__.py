"""The read-only dashboard that ``trackiod deploy`` publishes as a Hugging Face Space (files copied as they are)."""
