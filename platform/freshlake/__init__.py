"""freshlake: keep the primary (Delta) and processed (LanceDB) stores of a RAG app fresh."""

__version__ = "0.1.0"
