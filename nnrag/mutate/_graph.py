"""Width constraints of a recorded model: which layer widths must stay equal, and why.

Every tensor's *feature axis* (channels for conv maps, the last axis for tokens and
features) carries a width class. Layers tie their width attributes ("ports") to the classes
of their input and output: a conv's ``in_channels`` joins its input's class, its
``out_channels`` starts a new one, a norm layer passes its class through, a residual
addition merges two classes, a concatenation along the feature axis makes a class whose
width is the sum of its inputs, a flatten before a linear layer makes one that is a
multiple of the conv width. The model's input and output classes are pinned. What cannot be
analysed is pinned too, so a plan never relies on a guess; the sandbox checks every mutant
anyway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nnrag.mutate._expr import Expr, evaluate


@dataclass(frozen=True)
class Port:
    """One width a plan may change: a layer attribute or a reshape argument."""

    key: str
    value: int
    expr: Expr | None


@dataclass
class Constraints:
    """Union-find over ports and tensor classes, plus derived widths and divisibility."""

    parent: dict[str, str] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)  # original width of each class key
    derived: list[tuple[str, str, list[str], int, list[Expr]]] = field(default_factory=list)
    divides: list[tuple[str, str]] = field(default_factory=list)  # (a, b): a % b == 0
    pinned: set[str] = field(default_factory=set)
    residuals: list[dict[str, Any]] = field(default_factory=list)
    traced: bool = True

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb

    def add_port(self, key: str, spec: Mapping[str, Any]) -> str:
        self.ports[key] = Port(key, int(spec["value"]), spec.get("expr"))
        self.find(key)
        return key

    def classes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key in list(self.parent):
            out.setdefault(self.find(key), []).append(key)
        return out

    def pinned_roots(self) -> set[str]:
        return {self.find(k) for k in self.pinned}

    def port_values(self, sites: Mapping[int, float]) -> dict[str, int]:
        """Every port's width when the literals hold ``sites`` (constants stay)."""
        out = {}
        for key, port in self.ports.items():
            if port.expr is None:
                out[key] = port.value
            else:
                try:
                    value = evaluate(port.expr, sites)
                except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                    value = -1
                out[key] = (int(value) if isinstance(value, int | float) and math.isfinite(value)
                            else -1)
        return out

    def violations(self, values: Mapping[str, int],
                   sites: Mapping[int, float]) -> list[tuple[str, str | None, int]]:
        """What ``values`` breaks: ``(class root, port key or None, the width it should have)``."""
        problems: list[tuple[str, str | None, int]] = []
        classes = self.classes()
        pinned = self.pinned_roots()
        width: dict[str, int] = {}
        for root, keys in sorted(classes.items()):
            ports = [k for k in keys if k in values]
            if root in pinned:
                target = next((self.size[k] for k in keys if k in self.size), None)
            elif ports:
                changed = [values[k] for k in ports if values[k] != self.ports[k].value]
                target = max(set(changed), key=changed.count) if changed else values[ports[0]]
            else:
                target = None
            if target is None:
                continue
            width[root] = target
            problems += [(root, k, target) for k in ports if values[k] != target or values[k] < 1]
        for key, _kind, bases, factor, extra in self.derived:
            base_w = [width.get(self.find(b)) for b in bases]
            root = self.find(key)
            if any(w is None for w in base_w) or root not in width:
                continue
            try:
                amounts = [int(evaluate(e, sites)) for e in extra]
            except (ZeroDivisionError, ValueError, TypeError, KeyError):
                amounts = [-1]
            if any(a < 0 for a in amounts):  # negative padding: the code's branch would differ
                problems.append((root, None, -1))
                continue
            add = sum(amounts)
            expected = factor * sum(base_w) + add  # type: ignore[arg-type]
            if width[root] != expected:
                movable = [k for k in classes[root] if k in values and root not in pinned]
                problems += [(root, k, expected) for k in movable] or [(root, None, expected)]
        for a, b in self.divides:
            va, vb = values.get(a), values.get(b)
            if va is not None and vb is not None and (vb < 1 or va % vb):
                problems.append((self.find(a), None, -1))
        return problems
