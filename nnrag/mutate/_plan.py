"""Width and depth plans: which literals to change, and the widths that will result.

A width plan scales a few literal sites, then *repairs* the constraints it broke: when a
class of widths that must stay equal disagrees (a hard-coded ``BatchNorm2d(16)`` after a conv
whose width came from another literal), the other literals feeding that class are solved
for the new width. A plan is accepted only when every constraint holds; its predicted
widths are the port expressions evaluated at the new literal values, so they are exact for
any arithmetic the model's code does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from nnrag.mutate._expr import evaluate, sites
from nnrag.mutate._graph import Constraints
from nnrag.mutate._sites import Site

RATIOS = (0.5, 0.75, 1.25, 1.5, 2.0)
_DEPTH_NAME = re.compile(r"depth|blocks|layers|repeat|num_|n_", re.I)
MAX_WIDTH = 4096


@dataclass(frozen=True)
class Plan:
    """Literal changes and, for width plans, the width every port will have."""

    kind: str
    changes: tuple[tuple[int, int | float], ...]
    predicted: tuple[tuple[str, int], ...] | None
    description: str


def _rounded(x: float, like: int | float) -> int | float:
    if isinstance(like, float):
        return round(x, 3)
    step = 8 if like % 8 == 0 and like >= 16 else 4 if like % 4 == 0 and like >= 8 else 1
    return max(step, int(round(x / step)) * step)


def _solve(expr: object, site_id: int, values: dict[int, float], target: int) -> int | float | None:
    """A value of literal ``site_id`` that makes ``expr`` evaluate to ``target``."""
    current = evaluate(expr, values)
    old = values[site_id]
    if not current:
        return None
    guess = old * target / current
    candidates: list[int | float] = [guess] if isinstance(old, float) else []
    base = int(round(guess))
    candidates += [base + d for d in (0, 1, -1, 2, -2)]
    for value in candidates:
        if value <= 0 or value > MAX_WIDTH * 4:
            continue
        trial = {**values, site_id: value}
        try:
            if int(evaluate(expr, trial)) == target:
                return value
        except (ZeroDivisionError, ValueError, TypeError, OverflowError):
            continue
    return None


class Planner:
    """Proposes plans for one recorded model; seeded, so a run is reproducible."""

    def __init__(self, site_list: list[Site], cons: Constraints, rng: random.Random,
                 geometry: Collection[int] = ()) -> None:
        self.cons = cons
        self.rng = rng
        self.base: dict[int, float] = {s.id: s.value for s in site_list}
        self.by_id = {s.id: s for s in site_list}
        pinned = cons.pinned_roots()
        free: set[int] = set()
        blocked: set[int] = set()
        for key, port in cons.ports.items():
            if port.expr is None:
                continue
            (blocked if cons.find(key) in pinned else free).update(sites(port.expr))
        # literals that also set kernel sizes, strides or pooled sizes change the spatial
        # factor of flatten -> linear too: never treat them as widths
        blocked |= set(geometry)
        self.width_sites = sorted(
            s for s in free - blocked if not isinstance(self.base[s], bool) and self.base[s] > 0
        )
        # plans start from literals that alone make some width (``Conv2d(64, ...)``, ``planes``);
        # factors of a product (``256 * 6 * 6``) only change when a repair needs them to
        alone = {next(iter(found)) for port in cons.ports.values() if port.expr is not None
                 and len(found := sites(port.expr)) == 1}
        self.seed_sites = [s for s in self.width_sites if s in alone] or self.width_sites
        used = {s for port in cons.ports.values() if port.expr is not None
                for s in sites(port.expr)}
        self.depth_sites = sorted(
            s.id for s in site_list
            if isinstance(s.value, int) and 1 <= s.value <= 64 and s.id not in used
            and (s.call == "range" or (not s.call and _DEPTH_NAME.search(s.name or "")))
        )
        self.original = cons.port_values(self.base)
        self.outcomes: dict[int, tuple[int, int]] = {}  # site -> (valid, invalid) mutants

    def width(self) -> Plan | None:
        seeds = [s for s in self.seed_sites if s in self.width_sites]
        if not seeds:
            return None
        k = min(len(seeds), self.rng.choice((1, 1, 2, 3)))
        chosen = self.rng.sample(seeds, k)
        changes = {s: _rounded(self.base[s] * self.rng.choice(RATIOS), self.base[s])
                   for s in chosen}
        return self.plan_for(changes)

    def plan_for(self, changes: Mapping[int, int | float]) -> Plan | None:
        """The plan that sets these literals, repaired to a consistent one (None: impossible)."""
        if all(v == self.base[s] for s, v in changes.items()):
            return None
        values = self._repair({**self.base, **changes}, set(changes))
        if values is None:
            return None
        ports = self.cons.port_values(values)
        if ports == self.original or any(
            v < 1 or (v != self.original[k] and v > max(MAX_WIDTH, 2 * self.original[k]))
            for k, v in ports.items()
        ):  # widths that grew past all proportion (a loop bound taken for a width, say)
            return None
        changed = tuple(sorted((s, v) for s, v in values.items() if v != self.base[s]))
        text = ", ".join(f"{self._where(s)} {self.base[s]}->{v}" for s, v in changed)
        return Plan("width", changed, tuple(sorted(ports.items())), text)

    def _repair(self, values: dict[int, float], touched: set[int],
                rounds: int = 8) -> dict[int, float] | None:
        for _ in range(rounds):
            ports = self.cons.port_values(values)
            problems = self.cons.violations(ports, values)
            if not problems:
                return values
            progress = False
            for _root, key, target in problems:
                if key is None or target < 1:
                    return None
                port = self.cons.ports[key]
                if port.expr is None:
                    return None
                current = self.cons.port_values(values)[key]
                if current == target:
                    continue
                for s in sorted(sites(port.expr), key=lambda s: (s in touched, s)):
                    if s not in self.width_sites:
                        continue
                    solved = _solve(port.expr, s, values, target)
                    if solved is not None:
                        values[s] = solved
                        touched.add(s)
                        progress = True
                        break
                else:
                    return None
            if not progress:
                return None
        return None

    def learn(self, plan: Plan, valid: bool) -> None:
        """Sandbox feedback: a literal whose every change so far broke the model is dropped.

        Without an fx graph there are no constraints, and some literals are not widths at
        all (a factor of 2 for a bidirectional RNN); this keeps the run from retrying them.
        """
        for site, _value in plan.changes:
            good, bad = self.outcomes.get(site, (0, 0))
            self.outcomes[site] = (good + valid, bad + (not valid))
            good, bad = self.outcomes[site]
            if not good and bad >= 2 and site in self.width_sites and len(self.width_sites) > 1:
                self.width_sites.remove(site)

    def depth(self) -> Plan | None:
        if not self.depth_sites:
            return None
        s = self.rng.choice(self.depth_sites)
        old = int(self.base[s])
        new = old + 1 if old == 1 or self.rng.random() < 0.5 else old - 1
        return Plan("depth", ((s, new),), None, f"{self._where(s)} {old}->{new}")

    def _where(self, site_id: int) -> str:
        site = self.by_id[site_id]
        return f"{site.name or site.call or 'literal'}@{site.line}:{site.col}"
