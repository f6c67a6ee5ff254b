"""Lazy import of optional dependencies with an 'install nnrag[extra]' message."""

from __future__ import annotations

import importlib
from types import ModuleType

from nnrag.exceptions import OptionalDependencyError


def optional_import(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an error that names the extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyError(
            f"'{module}' is required for this feature: pip install 'nnrag[{extra}]' "
            f"-c constraints.txt ({exc})"
        ) from exc
