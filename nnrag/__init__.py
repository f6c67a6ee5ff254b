"""nnrag: a content-addressed index of PyTorch building blocks.

Start with :func:`open_workspace`::

    import nnrag

    ws = nnrag.open_workspace()          # $NNRAG_HOME (default ~/.nnrag)
    ws.index("path/to/repo")
    hits = ws.search("residual block", k=5)
    print(ws.extract(hits[0].qualname).code)

The lower-level classes (``Store``, ``Searcher``, ``Engine``, ...) are re-exported too.
Every name is imported on first use (PEP 562), so ``import nnrag`` stays light: sandbox
children import this package before anything else and must not pay for torch or LibCST.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nnrag._version import __version__
from nnrag.exceptions import NnragError

if TYPE_CHECKING:
    from nnrag.extract import Emitted
    from nnrag.index import Store
    from nnrag.ladder import Outcome
    from nnrag.search import Hit, Searcher
    from nnrag.train import Engine, RunStore, TrainSpec
    from nnrag.workspace import Workspace, open_workspace

# public name -> the module that defines it (imported when the name is first used)
_LAZY: dict[str, str] = {
    "open_workspace": "nnrag.workspace",
    "Workspace": "nnrag.workspace",
    "Store": "nnrag.index",
    "Emitted": "nnrag.extract",
    "Hit": "nnrag.search",
    "Searcher": "nnrag.search",
    "Outcome": "nnrag.ladder",
    "Engine": "nnrag.train",
    "RunStore": "nnrag.train",
    "TrainSpec": "nnrag.train",
}

__all__ = [
    "Emitted", "Engine", "Hit", "NnragError", "Outcome", "RunStore", "Searcher", "Store",
    "TrainSpec", "Workspace", "__version__", "open_workspace",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nnrag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
