"""Example source trees shipped with nnrag (indexed by ``nnrag demo``; never imported).

Both live inside the package, so a wheel carries them: ``nnrag demo``, generation references
and corpus mutation targets work from ``pip install .`` as well as from an editable install.
"""

from pathlib import Path

from nnrag.exceptions import NnragError

ZOO = Path(__file__).parent / "zoo"
#: The seed corpus: LEMUR-contract model files, package data rather than a subpackage (no
#: ``__init__.py``; the engine loads each file by path).
CORPUS = Path(__file__).parent / "corpus"


def corpus_dir() -> Path:
    """The seed corpus, checked: a packaging mistake should name the folder, not surface as
    "no such model" far from its cause."""
    if not CORPUS.is_dir():
        raise NnragError(f"the seed corpus is missing from this nnrag install: {CORPUS}")
    return CORPUS
