"""Retrieval over the index: BM25 over block text, dense vectors (FAISS), fused by rank."""

from nnrag.search._embed import Embedder, EmbedderError, dense_available, get_embedder, model_name
from nnrag.search._lexical import LexicalIndex
from nnrag.search._searcher import Filters, Hit, QueryError, Searcher, duplicate_groups
from nnrag.search._vectors import EmbedReport, VectorIndex, embed_blocks

__all__ = [
    "EmbedReport", "Embedder", "EmbedderError", "Filters", "Hit", "LexicalIndex", "QueryError",
    "Searcher", "VectorIndex", "dense_available", "duplicate_groups", "embed_blocks",
    "get_embedder", "model_name",
]
