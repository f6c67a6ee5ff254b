"""Example source trees shipped with nnrag (indexed by ``nnrag demo``; never imported)."""

from pathlib import Path

ZOO = Path(__file__).parent / "zoo"
