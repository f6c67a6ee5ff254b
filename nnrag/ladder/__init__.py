"""The validation ladder: climb parse .. backward for each emitted block, in the sandbox.

``RULES`` (registry name -> :class:`~nnrag.ladder.rules.Registry`) lists the heuristics the
ladder guesses with; it is loaded on first access, since it imports torch.
"""

from typing import Any

from nnrag.ladder import rules
from nnrag.ladder._validate import LADDER_VERSION, Outcome, cache_key, validate
from nnrag.ladder.rules import Registry, Rule, UnknownRuleError


def __getattr__(name: str) -> Any:
    if name == "RULES":  # loaded on first use by nnrag.ladder.rules
        return rules.RULES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LADDER_VERSION",
    "RULES",
    "Outcome",
    "Registry",
    "Rule",
    "UnknownRuleError",
    "cache_key",
    "validate",
]
