"""Decide which classes are *blocks*: concrete ``torch.nn.Module`` subclasses with ``forward``.

Bases are resolved through the indexed tree with :class:`SymbolTable`, so every spelling
(``nn.Module``, ``torch.nn.Module``, ``from torch.nn import Module as M``, a base class in
another module of the tree) leads to the same answer. External bases under ``torch`` are
checked against the real ``torch`` (a trusted dependency); a short list covers library
bases whose packages are usually indexed only in part (transformers' model files).
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from nnrag.index._symbols import SymbolTable

# External bases known to be nn.Module subclasses without their own ``forward``.
KNOWN_MODULE_BASES = (
    "transformers.modeling_utils.PreTrainedModel",
    "transformers.PreTrainedModel",
    "transformers.modeling_layers.GradientCheckpointingLayer",
)


_TORCH_MODULE = "torch.nn.modules.module.Module"


@lru_cache(maxsize=4096)
def external_module_info(qualname: str) -> tuple[bool, bool]:
    """``(is nn.Module subclass, defines a real forward)`` for an external dotted name."""
    if qualname in KNOWN_MODULE_BASES or (
        qualname.startswith("transformers.") and qualname.endswith("PreTrainedModel")
    ):
        return True, False
    if not (qualname == "torch" or qualname.startswith("torch.")):
        return False, False
    import torch

    parts = qualname.split(".")
    obj: object = None
    for cut in range(len(parts), 0, -1):  # import the longest importable prefix, getattr the rest
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False, False
        break
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        return False, False
    return True, obj.forward is not torch.nn.Module.forward  # type: ignore[attr-defined]


def find_blocks(table: SymbolTable) -> set[int]:
    """Ids of class definitions that are blocks."""
    memo: dict[int, tuple[bool, bool]] = {}

    def info(def_id: int, stack: frozenset[int]) -> tuple[bool, bool]:
        if def_id in memo:
            return memo[def_id]
        if def_id in stack:
            return False, False
        d = table.defs[def_id]
        # Indexing torch itself: its own ``Module`` is the root, reached in-tree.
        is_module, has_forward = d["qualname"] == _TORCH_MODULE, bool(d["has_forward"])
        if is_module:
            has_forward = False  # ``forward = _forward_unimplemented``
        if d["kind"] == "class":
            for base in d["bases"]:
                binding, rest = table.resolve_dotted(d["module"], base)
                if binding.kind == "definition" and not rest and binding.def_id is not None:
                    m, f = info(binding.def_id, stack | {def_id})
                elif binding.kind == "external":
                    m, f = external_module_info(".".join([binding.object_path, *rest]))
                else:
                    continue
                is_module |= m
                has_forward |= f and m
        memo[def_id] = (is_module, has_forward)
        return memo[def_id]

    return {
        i for i, d in table.defs.items()
        if d["kind"] == "class" and not d["is_abstract"] and all(info(i, frozenset()))
    }
