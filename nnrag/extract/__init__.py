"""Scope resolution, dependency closure and scope-closed emission of indexed definitions."""

from nnrag.extract._closure import Closure, ClosureBuilder, ExternalImport
from nnrag.extract._emit import Emitted, emit, extract
from nnrag.extract._export import block_rows, export, stats
from nnrag.extract._scope import Analysis, Ref, analyse

__all__ = [
    "Analysis", "Closure", "ClosureBuilder", "Emitted", "ExternalImport", "Ref", "analyse",
    "block_rows", "emit", "export", "extract", "stats",
]
