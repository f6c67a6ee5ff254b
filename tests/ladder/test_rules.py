"""The ladder's heuristic registries: every rule is named, documented and ordered, lookups
fail loudly, and a climb reports the rules whose guesses it used (``rules_fired``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nnrag.index import Store, index_path
from nnrag.ladder import RULES, Outcome, validate
from nnrag.ladder._infer import values_for_name
from nnrag.ladder._validate import _outcome
from nnrag.ladder.rules import (
    STOP,
    DuplicateRuleError,
    Registry,
    Rule,
    UnknownRuleError,
    fired_names,
    recording,
)

from .test_ladder_child import ATTN, assert_ok, climb

ALL_RULES = [(reg, rule) for reg in RULES.values() for rule in reg]


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("registry", "rule"), ALL_RULES, ids=[f"{reg.name}.{rule.name}" for reg, rule in ALL_RULES]
)
def test_every_rule_is_named_documented_and_ordered(registry: Registry, rule: Rule) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", rule.name)
    assert registry.list().count(rule.name) == 1
    assert registry.get(rule.name) is rule
    assert rule.doc.strip() and "\n" not in rule.doc
    assert rule.example.strip() and len(rule.example.split()) >= 2  # "<library> <Block>"
    assert isinstance(rule.order, int) and callable(rule.fn)


def test_registries_are_named_by_their_keys_and_iterate_in_order() -> None:
    assert list(RULES) == [
        "init_names", "small_configs", "config_fixes", "init_repairs",
        "leaf_layouts", "forward_args", "probe_repairs", "shape_repairs",
    ]
    for name, registry in RULES.items():
        assert registry.name == name and registry.doc and len(registry) > 0
        orders = [rule.order for rule in registry]
        assert orders == sorted(orders) and len(set(orders)) == len(orders)


def test_wildcard_listing() -> None:
    names = RULES["init_names"]
    assert names.list("num_*") == [
        "num_classes", "num_heads", "num_kv_heads", "num_layers", "num_anchors"
    ]
    assert names.list() == [rule.name for rule in names]
    assert names.list("no_such_*") == []
    assert RULES["shape_repairs"].list("*_rank") == ["conv_rank", "norm_rank", "unpack_rank"]


def test_unknown_rule_raises_the_specific_error() -> None:
    with pytest.raises(UnknownRuleError, match=r"init_names: no rule 'nope'"):
        RULES["init_names"].get("nope")
    with pytest.raises(KeyError):  # a lookup error like any mapping's
        RULES["forward_args"].record("nope")


def test_duplicate_names_and_orders_are_refused() -> None:
    reg = Registry("toy", "a test registry")
    reg.add("a", lambda v: v, doc="d", example="toy A", order=10)
    with pytest.raises(DuplicateRuleError, match="already registered"):
        reg.add("a", lambda v: v, doc="d", example="toy A", order=20)
    with pytest.raises(DuplicateRuleError, match="order 10 is taken by 'a'"):
        reg.add("b", lambda v: v, doc="d", example="toy B", order=10)


def test_first_apply_stop_and_recording() -> None:
    reg = Registry("toy", "a test registry")
    reg.add("late", lambda v: "late", doc="d", example="toy L", order=30)
    reg.add("odd", lambda v: "odd" if v % 2 else None, doc="d", example="toy O", order=10)
    reg.add("stop", lambda v: STOP if v == 4 else None, doc="d", example="toy S", order=20)
    assert reg.list() == ["odd", "stop", "late"]  # by order, not by registration
    with recording() as fired:
        assert reg.first(3) == "odd"
        assert reg.first(2) == "late"
        assert reg.first(4, default="none") == "none"  # STOP: later rules are skipped
        assert reg.first(3, record=False) == "odd"
        assert reg.apply(3) == [("odd", "odd"), ("late", "late")]
    assert fired == ["toy.odd", "toy.late", "toy.odd", "toy.late"]
    assert fired_names(fired) == ["toy.odd", "toy.late"]
    assert reg.first(3) == "odd"  # outside a recording nothing is kept, nothing fails


def test_questions_about_a_name_do_not_count_as_fired() -> None:
    with recording() as fired:
        assert values_for_name("num_heads", record=False)[0] == "heads"
        assert fired == []
        assert values_for_name("num_heads")[0] == "heads"
    assert fired == ["init_names.num_heads"]


WINDOW = """
class WindowBias(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(49, dim))

    def forward(self, x):
        return self.proj(x) + self.bias
"""


def test_a_climb_reports_the_rules_it_used() -> None:
    r = climb(ATTN, "Attention")
    assert_ok(r)
    assert r["rules_fired"][:3] == ["init_names.dim", "init_names.num_heads", "leaf_layouts.linear"]
    r = climb(WINDOW, "WindowBias")
    assert_ok(r)
    assert "shape_repairs.broadcast" in r["rules_fired"]
    assert "probe_repairs.reshape" in r["rules_fired"]
    assert len(set(r["rules_fired"])) == len(r["rules_fired"])
    r = climb("class Plain(nn.Module):\n    def forward(self, x):\n        return x * 2\n", "Plain")
    assert r["rules_fired"] == []  # nothing guessed by name or repaired


def test_validate_outcomes_carry_rules_fired(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "layer.py").write_text(
        "import torch.nn as nn\n\n\nclass Scale(nn.Module):\n"
        "    def __init__(self, num_heads, dim):\n        super().__init__()\n"
        "        self.lin = nn.Linear(dim, dim)\n\n"
        "    def forward(self, x):\n        return self.lin(x) * 2\n"
    )
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    (first,) = validate(store, ["Scale"])
    assert first.rung == 6 and not first.cached
    assert {"init_names.dim", "init_names.num_heads"} <= set(first.rules_fired)
    (again,) = validate(store, ["Scale"])
    assert again.cached and again.rules_fired == first.rules_fired


def test_results_without_rules_fired_give_an_empty_tuple() -> None:
    old = {"rung": 6, "failed_rung": None, "cause": None}
    assert _outcome("q", old, True).rules_fired == ()
    assert Outcome("q", 0, None, None, None, None, False).rules_fired == ()
