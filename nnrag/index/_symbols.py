"""Module-level name resolution over the indexed tree (Python's import semantics).

A :class:`SymbolTable` answers "what does ``name`` mean at the top level of module ``m``?"
by following definitions, ``from``/``import`` statements (relative ones were made absolute
by the scanner), ``__init__`` re-exports, star imports and alias chains. Local (function /
class) scopes are the resolver's business (:mod:`nnrag.rag`), not this module's.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nnrag.index._store import Store

_BUILTINS = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__",
                                        "__package__"}



def _rank(guard: str, in_tree: bool, available: bool, stmt_index: int) -> tuple[int, int]:
    """Order candidate bindings of one name; the smallest wins.

    Unguarded bindings win, the last one as at run time. Among guarded alternatives
    (``try``/``except ImportError``, ``if``/``else``) an import of an installed external
    package comes first (``try: from torch... import sdpa``), then in-tree code (the
    self-contained fallback ``except ImportError: class X``), then the first branch; an
    import of a package that is not installed comes last, and TYPE_CHECKING-only names
    are never needed at run time.
    """
    if guard == "type_checking":
        return (9, stmt_index)
    if not guard:
        return (0, -stmt_index)
    if not available:
        return (5, stmt_index)
    if not in_tree:
        return (1 if guard in ("try", "if") else 3, stmt_index)
    return (2, stmt_index)


@lru_cache(maxsize=1024)
def _available(module: str) -> bool:
    """Is the top-level package of ``module`` installed? Looked up without importing it."""
    top = module.split(".")[0]
    return bool(top) and (top in sys.builtin_module_names
                          or importlib.machinery.PathFinder.find_spec(top) is not None)


@dataclass(frozen=True)
class Binding:
    """What a module-level name refers to."""

    kind: str  # "definition" | "module" | "external" | "builtin" | "unresolved"
    module: str = ""  # defining module (definition), the module itself (module), or import source
    name: str = ""  # definition name, or the imported attribute for externals
    def_id: int | None = None
    # external: ``from import_module import name`` / ``import import_module``
    import_module: str = ""
    import_name: str | None = None
    type_checking: bool = False
    reason: str = ""
    object_path: str = ""  # external: dotted path of the object the local name refers to

    @property
    def qualname(self) -> str:
        if self.kind == "definition":
            return f"{self.module}.{self.name}"
        if self.kind == "external":
            return self.object_path
        return self.module


class SymbolTable:
    """An in-memory view of the store's modules, definitions and imports."""

    def __init__(self, store: Store) -> None:
        self.modules: dict[str, dict[str, Any]] = {m["name"]: m for m in store.modules()}
        self.defs: dict[int, dict[str, Any]] = {}
        self.defs_by_name: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for d in store.definition_heads():
            d["bases"] = json.loads(d["bases"] or "[]")
            self.defs[d["id"]] = d
            self.defs_by_name.setdefault((d["module"], d["name"]), []).append(d)
        self.imports: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.star_imports: dict[str, list[dict[str, Any]]] = {}
        for i in store.imports():
            if i["local_name"] == "*":
                self.star_imports.setdefault(i["module"], []).append(i)
            else:
                self.imports.setdefault((i["module"], i["local_name"]), []).append(i)
        self._cache: dict[tuple[str, str], Binding] = {}
        self._public: dict[str, set[str]] = {}

    def in_tree(self, module: str) -> bool:
        return module in self.modules

    def resolve(self, module: str, name: str) -> Binding:
        key = (module, name)
        if key not in self._cache:
            self._cache[key] = self._resolve(module, name, frozenset())
        return self._cache[key]

    def _resolve(self, module: str, name: str, seen: frozenset[tuple[str, str]]) -> Binding:
        if (module, name) in seen:
            return Binding("unresolved", module, name, reason=f"import cycle at {module}.{name}")
        seen = seen | {(module, name)}
        candidates: list[tuple[tuple[int, int], Binding]] = []
        for d in self.defs_by_name.get((module, name), []):
            binding = Binding("definition", module, name, def_id=d["id"],
                              type_checking=d["guard"] == "type_checking")
            candidates.append((_rank(d["guard"], True, True, d["stmt_index"]), binding))
        for imp in self.imports.get((module, name), []):
            binding = self._follow_import(imp, seen)
            in_tree = binding.kind in ("definition", "module")
            available = in_tree or binding.kind != "external" or _available(binding.import_module)
            if imp["guard"] == "type_checking":
                binding = Binding(**{**binding.__dict__, "type_checking": True})
            candidates.append((_rank(imp["guard"], in_tree, available, imp["stmt_index"]), binding))
        if candidates:
            candidates.sort(key=lambda c: c[0])
            return candidates[0][1]
        for star in self.star_imports.get(module, []):
            target = star["target_module"]
            if self.in_tree(target) and name in self._public_names(target):
                return self._resolve(target, name, seen)
        submodule = f"{module}.{name}"
        if self.in_tree(submodule) and self.modules.get(module, {}).get("is_package"):
            return Binding("module", submodule)
        if name in _BUILTINS:
            return Binding("builtin", name=name)
        for star in self.star_imports.get(module, []):
            if not self.in_tree(star["target_module"]):  # best guess: it comes from there
                return Binding("external", import_module=star["target_module"], import_name=name,
                               object_path=f"{star['target_module']}.{name}",
                               reason="star import from an external module")
        return Binding("unresolved", module, name, reason=f"'{name}' is not bound in {module}")

    def resolve_import(self, target_module: str, target_name: str | None, local: str) -> Binding:
        """What ``local`` refers to after an import that the table does not hold (one inside
        a function body), by the same rules as a module-level import.

        ``target_module`` is absolute (relative imports resolved); ``target_name`` is None for
        ``import target_module [as local]``.
        """
        imp = {"target_module": target_module, "target_name": target_name, "local_name": local}
        return self._follow_import(imp, frozenset())

    def _follow_import(self, imp: dict[str, Any], seen: frozenset[tuple[str, str]]) -> Binding:
        target, attr = imp["target_module"], imp["target_name"]
        if attr is None:  # ``import a.b [as c]``
            bound = target if imp["local_name"] != target.split(".")[0] else target.split(".")[0]
            if self.in_tree(bound):
                return Binding("module", bound)
            return Binding("external", import_module=target, import_name=None, object_path=bound)
        if self.in_tree(target):
            found = self._resolve(target, attr, seen)
            if found.kind != "unresolved":
                return found
            if self.in_tree(f"{target}.{attr}"):
                return Binding("module", f"{target}.{attr}")
            if _available(target):
                # Not visible statically (a lazy ``__getattr__`` module such as
                # transformers' ``_LazyModule``, or a file that was not indexed): the
                # installed package provides it at run time, so keep the import.
                return Binding("external", import_module=target, import_name=attr,
                               object_path=f"{target}.{attr}", reason=found.reason)
            return found
        if self.in_tree(f"{target}.{attr}"):
            return Binding("module", f"{target}.{attr}")
        if not target:
            return Binding("unresolved", reason=f"relative import above the indexed root: {attr}")
        return Binding("external", import_module=target, import_name=attr,
                       object_path=f"{target}.{attr}")

    def _public_names(self, module: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """What ``from module import *`` binds: ``__all__``, else every public name of the
        module's namespace, those it star-imports from in-tree modules included
        (``ops/__init__``: ``from .misc import *``, ``misc``: ``from ._permute import *``)."""
        info = self.modules[module]
        if info.get("all_names"):
            return set(json.loads(info["all_names"]))
        if module not in self._public:
            names = {n for (m, n) in self.defs_by_name if m == module}
            names |= {n for (m, n) in self.imports if m == module}
            for star in self.star_imports.get(module, []):
                target = star["target_module"]
                if self.in_tree(target) and target not in seen and target != module:
                    names |= self._public_names(target, seen | {module})
            self._public[module] = {n for n in names if not n.startswith("_")}
        return self._public[module]

    def resolve_dotted(self, module: str, dotted_name: str) -> tuple[Binding, list[str]]:
        """Resolve ``a.b.c`` used in ``module``: the binding reached and the attributes left.

        Attribute steps are followed through in-tree modules (``layers.conv.Conv``), so the
        result names the definition, not the module alias.
        """
        head, *rest = dotted_name.split(".")
        binding = self.resolve(module, head)
        while rest and binding.kind == "module":
            binding = self.resolve(binding.module, rest[0])
            rest = rest[1:]
        return binding, rest
