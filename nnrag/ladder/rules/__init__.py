"""The ladder's heuristics as named, ordered, documented registries (see ``_registry``).

``RULES`` maps each registry's name to the registry. It is built on first access because
the rules import torch and the ladder's inference modules, which ``import nnrag.ladder``
alone must not pay for.
"""

from __future__ import annotations

from typing import Any

from nnrag.ladder.rules._registry import (
    STOP,
    DuplicateRuleError,
    Registry,
    Rule,
    RuleError,
    UnknownRuleError,
    fired_names,
    recording,
)


def __getattr__(name: str) -> Any:
    if name == "RULES":
        from nnrag.ladder.rules._catalog import RULES

        return RULES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RULES",
    "STOP",
    "DuplicateRuleError",
    "Registry",
    "Rule",
    "RuleError",
    "UnknownRuleError",
    "fired_names",
    "recording",
]
