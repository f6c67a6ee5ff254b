"""Where nnrag keeps its state: ``$NNRAG_HOME`` (default ``~/.nnrag``) and the index db."""

from __future__ import annotations

import os
from pathlib import Path


def nnrag_home() -> Path:
    return Path(os.environ.get("NNRAG_HOME") or Path.home() / ".nnrag").expanduser()


def default_db_path() -> Path:
    """``$NNRAG_DB`` if set, else ``$NNRAG_HOME/index.db``."""
    env = os.environ.get("NNRAG_DB")
    return Path(env).expanduser() if env else nnrag_home() / "index.db"
