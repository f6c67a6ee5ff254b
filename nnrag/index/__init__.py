"""Scanning source trees into the block index (LibCST), and the SQLite store behind it.

Also the project's hash identity (normalised MD5, structural fingerprint) and the catalog
(text, categories, concepts) that search reads.
"""

from nnrag.index._catalog import (
    CATALOG_VERSION,
    GENERATION_KEY,
    CatalogReport,
    ensure_catalog,
    sync_catalog,
)
from nnrag.index._categories import CATEGORIES
from nnrag.index._concepts import ConceptMatcher
from nnrag.index._fingerprint import code_fingerprint, fingerprint
from nnrag.index._indexer import index_package, index_path, locate_package, mark_blocks
from nnrag.index._lemur import (
    REPORTED,
    LemurImport,
    import_lemur,
    lemur_module,
    read_lemur_models,
)
from nnrag.index._model import Definition, FileProblem, FileScan, ImportBinding, IndexReport
from nnrag.index._rows import BlockFacts, BlockMetric, CatalogEntry, DefinitionRow, PackageCounts
from nnrag.index._scan import (
    dotted,
    normalised_hash,
    normalised_md5,
    resolve_relative,
    scan_source,
)
from nnrag.index._store import RUNGS, SCHEMA_VERSION, Store, rung_number
from nnrag.index._symbols import Binding, SymbolTable
from nnrag.index._text import query_text, words_of
from nnrag.index._words import split_identifier

__all__ = [
    "Binding", "BlockFacts", "BlockMetric", "CATALOG_VERSION", "CATEGORIES", "CatalogEntry",
    "CatalogReport", "ConceptMatcher", "Definition", "DefinitionRow", "FileProblem", "FileScan",
    "GENERATION_KEY", "ImportBinding", "IndexReport", "LemurImport", "PackageCounts", "REPORTED",
    "RUNGS",
    "SCHEMA_VERSION", "Store", "SymbolTable", "code_fingerprint", "dotted", "ensure_catalog",
    "fingerprint", "import_lemur", "index_package", "index_path", "lemur_module",
    "locate_package", "mark_blocks", "read_lemur_models",
    "normalised_hash", "normalised_md5", "query_text", "resolve_relative", "rung_number",
    "scan_source", "split_identifier", "sync_catalog", "words_of",
]
