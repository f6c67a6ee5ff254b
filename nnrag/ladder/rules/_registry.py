"""One registry class for every heuristic table of the ladder, and the record of what fired.

The ladder's guesses (argument names, probe layouts, repairs read from error messages) are
ordered rule lists: usually the first rule that applies wins, sometimes all apply. Keeping
each as a named, documented, explicitly ordered :class:`Registry` makes the order visible
and testable, and lets a run say which rules it needed: every rule whose result is used is
appended to a context-local recorder (:func:`recording`), which the sandbox child resets
per block and returns as ``rules_fired``.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class RuleError(KeyError):
    """Base of the registry's lookup and registration errors."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownRuleError(RuleError):
    """``get``/``record`` of a name the registry does not hold."""


class DuplicateRuleError(RuleError):
    """A second rule registered under a taken name or order."""


class _Stop:
    """A rule's verdict "this is my case, and nothing can be done": later rules are skipped."""

    def __repr__(self) -> str:
        return "STOP"


STOP: Any = _Stop()


@dataclass(frozen=True)
class Rule:
    """One heuristic: ``fn`` returns None when it does not apply."""

    name: str
    fn: Callable[..., Any]
    doc: str
    example: str
    order: int

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


_FIRED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "nnrag_rules_fired", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """Collect the qualified names (``registry.rule``) of rules fired inside the block."""
    fired: list[str] = []
    token = _FIRED.set(fired)
    try:
        yield fired
    finally:
        _FIRED.reset(token)


def fired_names(fired: list[str]) -> list[str]:
    """The recorder's names in first-fired order, each once."""
    return list(dict.fromkeys(fired))


class Registry:
    """Named rules in explicit order; ``first`` (first result wins) or ``apply`` (all)."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.doc = doc
        self._rules: dict[str, Rule] = {}

    def register(
        self, name: str, *, doc: str, example: str, order: int
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add`; returns the function unchanged."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, fn, doc=doc, example=example, order=order)
            return fn

        return deco

    def add(self, name: str, fn: Callable[..., Any], *, doc: str, example: str, order: int) -> Rule:
        if name in self._rules:
            raise DuplicateRuleError(f"{self.name}: rule {name!r} is already registered")
        taken = {r.order: r.name for r in self._rules.values()}
        if order in taken:
            raise DuplicateRuleError(f"{self.name}: order {order} is taken by {taken[order]!r}")
        rule = Rule(name, fn, doc, example, order)
        self._rules = dict(sorted({**self._rules, name: rule}.items(), key=lambda kv: kv[1].order))
        return rule

    def get(self, name: str) -> Rule:
        try:
            return self._rules[name]
        except KeyError:
            known = ", ".join(self._rules) or "none"
            raise UnknownRuleError(f"{self.name}: no rule {name!r} (known: {known})") from None

    def list(self, pattern: str = "*") -> list[str]:
        """Rule names matching an fnmatch ``pattern``, in order."""
        return [n for n in self._rules if fnmatch.fnmatchcase(n, pattern)]

    def __iter__(self) -> Iterator[Rule]:
        return iter(list(self._rules.values()))

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self)} rules)"

    def record(self, name: str) -> None:
        """Mark ``name`` as fired (for results used later than the rule ran)."""
        rule = self.get(name)
        fired = _FIRED.get()
        if fired is not None:
            fired.append(f"{self.name}.{rule.name}")

    def first(self, *args: Any, default: Any = None, record: bool = True, **kwargs: Any) -> Any:
        """The first non-None result in order (``STOP`` ends the search with ``default``)."""
        for rule in self:
            result = rule.fn(*args, **kwargs)
            if result is None:
                continue
            if result is STOP:
                return default
            if record:
                self.record(rule.name)
            return result
        return default

    def apply(self, *args: Any, record: bool = True,
              **kwargs: Any) -> builtins.list[tuple[str, Any]]:
        """Every rule's non-None result, as ``(name, result)`` in order."""
        out = []
        for rule in self:
            result = rule.fn(*args, **kwargs)
            if result is None or result is STOP:
                continue
            if record:
                self.record(rule.name)
            out.append((rule.name, result))
        return out
