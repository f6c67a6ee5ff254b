"""nnrag: a content-addressed index of PyTorch building blocks.

The public surface is re-exported here; implementation lives in private modules of the
subpackages (``nnrag.index``, ``nnrag.rag``, ``nnrag.train``).
"""

from nnrag._version import __version__
from nnrag.exceptions import NnragError

__all__ = ["NnragError", "__version__"]
