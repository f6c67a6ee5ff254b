"""Shape-preserving mutation of model source: width, depth, activation, norm, residual."""

from nnrag.mutate._engine import (
    KINDS,
    Mutant,
    MutationError,
    MutationReport,
    Mutator,
    record_target,
)
from nnrag.mutate._lineage import write_files, write_index
from nnrag.mutate._sites import MutationSourceError, collect_sites, instrument, rewrite_sites
from nnrag.mutate._target import MutationTargetError, Target, load_target

__all__ = [
    "KINDS", "Mutant", "MutationError", "MutationReport", "MutationSourceError",
    "MutationTargetError", "Mutator", "Target", "collect_sites", "instrument", "load_target",
    "record_target", "rewrite_sites", "write_files", "write_index",
]
