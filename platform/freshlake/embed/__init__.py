"""Text -> vectors: the packaged all-MiniLM-L6-v2, a warm embedding service, and test doubles."""
