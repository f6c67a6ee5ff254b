"""Scanning source trees into the block index (LibCST), and the SQLite store behind it."""

from nnrag.index._indexer import index_package, index_path, locate_package, mark_blocks
from nnrag.index._model import Definition, FileProblem, FileScan, ImportBinding, IndexReport
from nnrag.index._scan import normalised_hash, scan_source
from nnrag.index._store import RUNGS, SCHEMA_VERSION, Store, rung_number
from nnrag.index._symbols import Binding, SymbolTable

__all__ = [
    "RUNGS", "SCHEMA_VERSION", "Binding", "Definition", "FileProblem", "FileScan", "ImportBinding",
    "IndexReport", "Store", "SymbolTable", "index_package", "index_path", "locate_package",
    "mark_blocks", "normalised_hash", "rung_number", "scan_source",
]
