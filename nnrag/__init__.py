"""nnrag: a content-addressed index of PyTorch building blocks.

The public surface is re-exported here; implementation lives in private modules of the
subpackages (``nnrag.index``, ``nnrag.rag``, ``nnrag.execute``).
"""

from nnrag.exceptions import NnragError

__version__ = "0.1.0"
__all__ = ["NnragError", "__version__"]
