"""A random secret private to one ``$NNRAG_HOME``, for data that public code must not rebuild.

A generated dataset with a public seed (mnist1d's 42) hands its test labels to anyone who runs
the generator: trained code could regenerate them and forge its score. Seeds derived from this
secret cannot be reproduced without reading ``$NNRAG_HOME/secret``, which the sandbox hides.

The file is created on first use, mode 0600, and never rewritten: concurrent first users
write their own temporary file and hard-link it into place, so exactly one secret wins and
every process (now and later) derives the same seeds from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from nnrag.config import nnrag_home
from nnrag.exceptions import NnragError

__all__ = ["derive_key", "home_secret", "secret_path"]

_HEX_CHARS = 64  # 32 random bytes


def secret_path() -> Path:
    """Where the home's secret lives (it may not exist yet)."""
    return nnrag_home() / "secret"


def _read(path: Path) -> bytes:
    raw = path.read_bytes().strip()
    if len(raw) != _HEX_CHARS or any(c not in b"0123456789abcdef" for c in raw):
        raise NnragError(
            f"{path} is not a {_HEX_CHARS}-character hex secret; delete it to make a new one "
            "(generated test sets and their caches change with it)"
        )
    return raw


def home_secret() -> bytes:
    """The home's secret (hex bytes), created atomically with mode 0600 on first use."""
    path = secret_path()
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(_HEX_CHARS // 2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # link, unlike rename, never replaces:
            os.link(tmp, path)  # the first writer wins, the others read its secret
    finally:
        Path(tmp).unlink(missing_ok=True)
    return _read(path)


def derive_key(secret: bytes, purpose: str) -> tuple[int, ...]:
    """Eight 32-bit words (256 bits) for ``purpose`` that only the secret's holder can compute.

    Words, because ``numpy.random.seed`` takes a single integer of 32 bits only (few enough
    to search by brute force) but a sequence of 32-bit words of any length. The purpose
    string keeps keys for different uses unrelated.
    """
    digest = hashlib.sha256(secret + b"\0" + purpose.encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "big") for i in range(0, len(digest), 4))
