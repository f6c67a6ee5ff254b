"""The library logger. nnrag never calls ``logging.basicConfig``: applications decide."""

from __future__ import annotations

import logging

_ROOT = "nnrag"
logging.getLogger(_ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return a child of the ``nnrag`` logger (``name`` is usually ``__name__``)."""
    if name != _ROOT and not name.startswith(_ROOT + "."):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)
