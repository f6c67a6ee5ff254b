"""Every ``NNRAG_*`` environment variable nnrag reads, read here and nowhere else.

One place, so the table in ``docs/configuration.md`` can be checked against the code
(``tests/test_config.py`` does) and a default is never spelled twice. Values are read at
call time, not at import, so a process that changes its environment sees the change; an
empty value counts as unset (``NNRAG_DB= nnrag query ...`` means the default, not ``./``).

The one exception is the sandbox's cover list (``nnrag/sandbox/_fsview.py``): it is computed
from an environment mapping by a module that deliberately imports nothing of nnrag, and a
test holds it to the functions here.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The variables read below, in the order ``docs/configuration.md`` lists them.
ENV_VARS = ("NNRAG_HOME", "NNRAG_DB", "NNRAG_DATA", "NNRAG_CACHE", "NNRAG_EMBED_MODEL")


def _env(name: str) -> str | None:
    """The variable's value, ``None`` when unset or empty."""
    return os.environ.get(name) or None


def nnrag_home() -> Path:
    """``$NNRAG_HOME``, else ``~/.nnrag``: the workspace (index, runs, trained models, data
    cache), which ``nnrag demo`` fills so later commands find its results."""
    env = _env("NNRAG_HOME")
    return Path(env).expanduser() if env else Path.home() / ".nnrag"


def default_db_path() -> Path:
    """``$NNRAG_DB``, else ``$NNRAG_HOME/index.db``: the index every command reads unless
    ``--db`` names another, so one index can be shared by several workspaces."""
    env = _env("NNRAG_DB")
    return Path(env).expanduser() if env else nnrag_home() / "index.db"


def data_dir() -> Path | None:
    """``$NNRAG_DATA``: a folder of dataset files, searched after a spec's own ``root`` and
    before ``$NNRAG_HOME/data`` (``None`` when unset), for data kept outside the workspace."""
    env = _env("NNRAG_DATA")
    return Path(env).expanduser() if env else None


def cache_dir() -> Path:
    """``$NNRAG_CACHE``, else ``$XDG_CACHE_HOME/nnrag``, else ``~/.cache/nnrag``: converted
    LLM weights for ``nnrag generate``. Not under ``NNRAG_HOME``: they are large and shared
    by every workspace."""
    env = _env("NNRAG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nnrag"


def embed_model() -> str | None:
    """``$NNRAG_EMBED_MODEL``: the sentence embedder for dense search (a local folder, a hub
    id, or ``hashing[-DIM]`` for a model-free stand-in) when ``--model`` does not name one;
    ``None`` means the packaged MiniLM."""
    return _env("NNRAG_EMBED_MODEL")
