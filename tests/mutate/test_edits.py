"""Structural edits: before/after tables, and a mutation run end to end through the sandbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nnrag.mutate import Mutator, load_target, write_index
from nnrag.mutate._edits import activation_edits, layer_edits, norm_edits, residual_edits
from tests.mutate import _models as M
from tests.mutate.test_plan import changed_lines


def first(edits: Any, description_part: str) -> str:
    for _kind, description, code in edits:
        if description_part in description:
            return code
    raise AssertionError(f"no edit {description_part!r}")


EDITS = [
    ("module activation", lambda s: activation_edits(s), M.SEQUENTIAL, "ReLU -> GELU",
     [("nn.ReLU(),", "nn.GELU(),")]),
    ("functional activation", lambda s: activation_edits(s), M.DEFAULT, "relu() -> silu()",
     [("return self.fc(torch.relu(self.conv(x)).amax((2, 3)))",
       "return self.fc(torch.nn.functional.silu(self.conv(x)).amax((2, 3)))")]),
    ("norm swap", lambda s: norm_edits(s), M.LITERAL, "BatchNorm2d -> GroupNorm",
     [("self.bn = nn.BatchNorm2d(8)", "self.bn = nn.GroupNorm(1, 8)")]),
    ("insert a layer", lambda s: layer_edits(s), M.KEYWORD, "Conv2d + ReLU",
     [("self.conv = nn.Conv2d(in_channels=in_shape[1], out_channels=8, kernel_size=3)",
       "self.conv = nn.Sequential("
       "nn.Conv2d(in_channels=in_shape[1], out_channels=8, kernel_size=3), "
       "nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))")]),
    ("remove a layer", lambda s: layer_edits(s), M.SEQUENTIAL, "drop ReLU",
     [("nn.ReLU(),", "")]),
]


@pytest.mark.parametrize(("case", "make", "source", "which", "expected"), EDITS,
                         ids=[e[0] for e in EDITS])
def test_edit_table(case: str, make: Any, source: str, which: str,
                    expected: list[tuple[str, str]]) -> None:
    after = first(make(source), which)
    if expected == [("nn.ReLU(),", "")]:  # a removed line has no counterpart
        kept = [line for line in source.splitlines() if line.strip() != "nn.ReLU(),"]
        assert after.splitlines() == kept
    else:
        assert changed_lines(source, after) == expected
    compile(after, "<mutant>", "exec")


def test_residual_edits(recorder: Any) -> None:
    rec = recorder(M.RESIDUAL)
    lines = [n["line"] for n in rec["graph"] if n["target"].endswith("add")]
    edits = list(residual_edits(M.RESIDUAL, rec, lines))
    removed = first(edits, "remove the residual")
    assert changed_lines(M.RESIDUAL, removed) == [
        ("return torch.relu(self.conv(x)) + x", "return torch.relu(self.conv(x))")]
    added = first(edits, "add x + Conv2d(x)")
    assert "self.conv = NnragResidual(nn.Conv2d(c, c, 3, padding=1))" in added
    assert "class NnragResidual(" in added
    compile(added, "<mutant>", "exec")


@pytest.mark.sandbox
def test_mutator_finds_ten_valid_mutants_and_records_lineage(tmp_path: Path) -> None:
    target = load_target("resnet8")
    report = Mutator(target, in_shape=(64, 1, 8, 8), num_classes=10, seed=3, jobs=2).run(10)
    assert report.traced and len(report.valid) == 10 and report.shortfall is None
    kinds = {m.kind for m in report.valid}  # width plans and several structural kinds
    assert "width" in kinds and len(kinds) >= 3, kinds
    assert len({m.md5 for m in report.valid}) == len(report.valid)
    for m in report.valid:
        if m.kind == "width":
            assert m.predicted is not None and m.ports is not None
            actual = {f"{p}:{a}": v for p, ports in m.ports.items() for a, v in ports.items()}
            assert {k: v for k, v in m.predicted.items() if "@" not in k} == actual
    names = write_index(report, tmp_path / "index.db", tmp_path)
    rows = sqlite3.connect(tmp_path / "index.db").execute(
        "SELECT qualname, json_extract(detail, '$.parent'), json_extract(detail, '$.kind')"
        " FROM block_provenance WHERE source='mutate'").fetchall()
    assert len(rows) == len(report.valid) == len(names)
    assert {r[1] for r in rows} == {target.origin}


@pytest.mark.sandbox
def test_untraceable_model_falls_back_and_says_what_is_disabled(tmp_path: Path) -> None:
    path = tmp_path / "untraceable.py"
    path.write_text(M.UNTRACEABLE)
    report = Mutator(load_target(str(path)), in_shape=(64, 1, 8, 8), num_classes=10, seed=0).run(3)
    assert not report.traced and report.trace_error
    assert (any("residual" in d for d in report.disabled)
            and any("width" in d for d in report.disabled))
    assert report.valid and "residual" not in {m.kind for m in report.mutants}


def _all_valid(monkeypatch: pytest.MonkeyPatch, recorder: Any, checked: list[int]) -> None:
    """Record in-process and let every mutant pass, so counting is tested without a sandbox
    (a batch of valid mutants is more than a small --n asks for)."""
    from types import SimpleNamespace

    import nnrag.mutate._engine as engine

    def run_many(_fn: str, payloads: list[Any], **_kw: Any) -> list[Any]:
        checked.append(len(payloads))
        return [SimpleNamespace(ok=True, value={"ok": True, "rung": "backward", "params": 1,
                                                "flops": 1}) for _ in payloads]

    monkeypatch.setattr(engine, "record_target", lambda t, *_a: recorder(t.source))
    monkeypatch.setattr(engine, "run_many", run_many)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_exactly_n_valid_mutants_are_returned(n: int, monkeypatch: pytest.MonkeyPatch,
                                              recorder: Any, tmp_path: Path) -> None:
    path = tmp_path / "net.py"
    path.write_text(M.LITERAL)
    checked: list[int] = []
    _all_valid(monkeypatch, recorder, checked)
    report = Mutator(load_target(str(path)), in_shape=(64, 1, 8, 8), num_classes=10,
                     kinds=("width",), jobs=4).run(n)
    assert len(report.valid) == len(report.mutants) == report.wanted == n
    assert report.shortfall is None and sum(checked) == max(n, 4)  # one batch of >= jobs


def test_fewer_than_n_says_why(monkeypatch: pytest.MonkeyPatch, recorder: Any,
                               tmp_path: Path) -> None:
    path = tmp_path / "net.py"
    path.write_text(M.LITERAL)
    _all_valid(monkeypatch, recorder, [])
    report = Mutator(load_target(str(path)), in_shape=(64, 1, 8, 8), num_classes=10,
                     kinds=("activation",)).run(500)
    assert 0 < len(report.valid) < 500
    assert report.shortfall is not None and "activation" in report.shortfall
