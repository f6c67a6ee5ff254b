"""Constructor repair: turn a failed ``cls(**kwargs)`` into a better guess.

The evidence (the message, the block's own traceback lines) is read by the rules of the
``init_repairs`` registry; this module is the ladder's entry to them.
"""

from __future__ import annotations

from typing import Any

from nnrag.ladder.rules._init_repairs import INIT_REPAIRS, blamed_line, blamed_lines


def repair(cls: type, kwargs: dict[str, Any], exc: BaseException) -> dict[str, Any] | None:
    """A new kwargs dict that addresses ``exc``, or None when nothing applies."""
    fixed: dict[str, Any] | None = INIT_REPAIRS.first(cls, kwargs, exc)
    return fixed


__all__ = ["blamed_line", "blamed_lines", "repair"]
