"""Example source trees shipped with nnrag (indexed by ``nnrag demo``; never imported)."""

from pathlib import Path

from nnrag.exceptions import NnragError

ZOO = Path(__file__).parent / "zoo"


def corpus_dir() -> Path:
    """The seed corpus (``corpus/`` of the source checkout nnrag is installed from)."""
    path = Path(__file__).resolve().parents[2] / "corpus"
    if not path.is_dir():
        raise NnragError(
            f"the seed corpus is not at {path}: install nnrag from a source checkout "
            "(pip install -e .) to use it"
        )
    return path
