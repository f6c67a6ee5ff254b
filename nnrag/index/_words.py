"""Identifier splitting, shared by the block text and the concept glossary."""

from __future__ import annotations

import re

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+[dD](?![a-z])|\d+")


def split_identifier(name: str) -> list[str]:
    """``MultiHeadAttention`` / ``rel_pos_bias`` / ``SEModule`` -> lower-case words."""
    words: list[str] = []
    for part in name.split("_"):
        words += [w.lower() for w in _CAMEL.findall(part)]
    return [w for w in words if w]
