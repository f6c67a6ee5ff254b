"""Scope resolution, dependency closure and scope-closed emission of indexed definitions."""

from nnrag.extract._closure import Closure, ClosureBuilder, ExternalImport
from nnrag.extract._emit import Emitted, emit, extract
from nnrag.extract._export import block_rows, export, stats
from nnrag.extract._scope import Analysis, Ref, analyse
from nnrag.extract._splice import Splicer, SpliceResult, Unresolved, splice, splice_all

__all__ = [
    "Analysis", "Closure", "ClosureBuilder", "Emitted", "ExternalImport", "Ref", "analyse",
    "SpliceResult", "Splicer", "Unresolved", "block_rows", "emit", "export", "extract",
    "splice", "splice_all", "stats",
]
