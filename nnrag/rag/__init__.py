"""Scope resolution, dependency closure, scope-closed emission and the validation ladder."""

from nnrag.rag._closure import Closure, ClosureBuilder, ExternalImport
from nnrag.rag._emit import Emitted, emit
from nnrag.rag._scope import Analysis, Ref, analyse
from nnrag.rag._validate import LADDER_VERSION, Outcome, extract, validate

__all__ = [
    "LADDER_VERSION", "Analysis", "Closure", "ClosureBuilder", "Emitted", "ExternalImport", "Outcome",
    "Ref", "analyse", "emit", "extract", "validate",
]
