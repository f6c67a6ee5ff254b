"""Width plans: before/after source tables per rewrite case, and a Hypothesis property."""

from __future__ import annotations

import difflib
import importlib.util
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnrag.examples import corpus_dir
from nnrag.mutate._analyse import analyse
from nnrag.mutate._plan import Planner
from nnrag.mutate._record import PORTS, layer_kind
from nnrag.mutate._sites import collect_sites, rewrite_sites
from tests.mutate import _models as M

CORPUS = corpus_dir()


def planner_for(source: str, rec: dict[str, Any], seed: int = 0) -> Planner:
    return Planner(collect_sites(source), analyse(rec), random.Random(seed), rec["geometry"])


def site_on(source: str, line_part: str, value: int) -> int:
    """The literal ``value`` on the first line containing ``line_part``."""
    lines = source.splitlines()
    for site in collect_sites(source):
        if line_part in lines[site.line - 1] and site.value == value:
            return site.id
    raise AssertionError(f"no literal {value} on a line with {line_part!r}")


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        if tag != "equal":
            out += list(zip((x.strip() for x in a[i1:i2]), (y.strip() for y in b[j1:j2]),
                            strict=True))
    return out


def build(source: str, folder: Path) -> torch.nn.Module:
    name = f"mutant_{abs(hash(source)) % 10**10}"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(0)
    return module.Net((64, 1, 8, 8), (10,), {"lr": 0.01, "momentum": 0.9}, torch.device("cpu"))


def widths(model: torch.nn.Module) -> dict[str, int]:
    out = {}
    for path, mod in model.named_modules():
        for attr in PORTS.get(layer_kind(mod), ()):
            value = getattr(mod, attr, None)
            if isinstance(value, tuple | list) and value:
                value = value[-1]
            if isinstance(value, int):
                out[f"{path}:{attr}"] = value
    return out


CASES = [
    ("literal argument", M.LITERAL, ("self.conv = ", 8), 16, [
        ("self.conv = nn.Conv2d(1, 8, 3, padding=1)", "self.conv = nn.Conv2d(1, 16, 3, padding=1)"),
        ("self.bn = nn.BatchNorm2d(8)", "self.bn = nn.BatchNorm2d(16)"),
        ("self.conv2 = nn.Conv2d(8, 12, 3, padding=1)",
         "self.conv2 = nn.Conv2d(16, 12, 3, padding=1)"),
    ]),
    ("keyword argument", M.KEYWORD, ("out_channels=", 8), 12, [
        ("self.conv = nn.Conv2d(in_channels=in_shape[1], out_channels=8, kernel_size=3)",
         "self.conv = nn.Conv2d(in_channels=in_shape[1], out_channels=12, kernel_size=3)"),
        ("self.fc = nn.Linear(in_features=8, out_features=out_shape[0])",
         "self.fc = nn.Linear(in_features=12, out_features=out_shape[0])"),
    ]),
    ("Sequential element", M.SEQUENTIAL, ("nn.Conv2d(8, 16, 3)", 16), 24, [
        ("nn.Conv2d(8, 16, 3),", "nn.Conv2d(8, 24, 3),"),
        ("nn.Linear(16, out_shape[0]),", "nn.Linear(24, out_shape[0]),"),
    ]),
    ("parameter default", M.DEFAULT, ("width=8", 8), 4, [
        ("def __init__(self, in_shape, out_shape, prm, device, width=8):",
         "def __init__(self, in_shape, out_shape, prm, device, width=4):"),
    ]),
    ("loop-built layers", M.LOOP, ("for w in", 8), 12, [
        ("for w in (8, 16):", "for w in (12, 16):"),
    ]),
    ("depthwise conv keeps groups == channels", M.GROUPED, ("self.stem", 8), 16, [
        ("self.stem = nn.Conv2d(in_shape[1], 8, 1)", "self.stem = nn.Conv2d(in_shape[1], 16, 1)"),
        ("self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)",
         "self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)"),
        ("self.pw = nn.Conv2d(8, 16, 1, groups=2)", "self.pw = nn.Conv2d(16, 16, 1, groups=2)"),
    ]),
    ("residual block ties the block to its input", M.RESIDUAL, ("self.stem", 8), 12, [
        ("self.stem = nn.Conv2d(in_shape[1], 8, 3, padding=1)",
         "self.stem = nn.Conv2d(in_shape[1], 12, 3, padding=1)"),
        ("self.block = Block(8)", "self.block = Block(12)"),
        ("self.fc = nn.Linear(8, out_shape[0])", "self.fc = nn.Linear(12, out_shape[0])"),
    ]),
    ("attention heads divide the width; a bidirectional GRU doubles it", M.ATTENTION,
     ("self.embed", 16), 24, [
        ("self.embed = nn.Linear(1, 16)", "self.embed = nn.Linear(1, 24)"),
        ("self.attn = nn.MultiheadAttention(16, 4, batch_first=True)",
         "self.attn = nn.MultiheadAttention(24, 4, batch_first=True)"),
        ("self.norm = nn.LayerNorm(16)", "self.norm = nn.LayerNorm(24)"),
        ("self.rnn = nn.GRU(16, 12, batch_first=True, bidirectional=True)",
         "self.rnn = nn.GRU(24, 12, batch_first=True, bidirectional=True)"),
    ]),
    ("flatten -> linear with the spatial factor", M.FLATTEN, ("self.conv", 8), 4, [
        ("self.conv = nn.Conv2d(1, 8, 3, padding=1)", "self.conv = nn.Conv2d(1, 4, 3, padding=1)"),
        ("self.fc = nn.Linear(8 * 8 * 8, out_shape[0])",
         "self.fc = nn.Linear(4 * 8 * 8, out_shape[0])"),
    ]),
]


@pytest.mark.parametrize(("case", "source", "where", "new", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_width_rewrite_table(case: str, source: str, where: tuple[str, int], new: int,
                             expected: list[tuple[str, str]], recorder: Any,
                             tmp_path: Path) -> None:
    rec = recorder(source)
    plan = planner_for(source, rec).plan_for({site_on(source, *where): new})
    assert plan is not None, f"{case}: no consistent plan"
    after = rewrite_sites(source, dict(plan.changes))
    assert changed_lines(source, after) == expected
    model = build(after, tmp_path)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert {k: v for k, v in widths(model).items()} == {
        k: v for k, v in dict(plan.predicted or ()).items() if "@" not in k
    }


def test_a_plan_that_would_change_the_input_or_output_is_refused(recorder: Any) -> None:
    source = M.LITERAL
    rec = recorder(source)
    planner = planner_for(source, rec)
    assert planner.plan_for({site_on(source, "self.conv = ", 1): 3}) is None  # input channels
    assert site_on(source, "self.conv = ", 1) not in planner.width_sites


def test_heads_must_divide_the_embedding_width(recorder: Any) -> None:
    planner = planner_for(M.ATTENTION, recorder(M.ATTENTION))
    assert planner.plan_for({site_on(M.ATTENTION, "self.embed", 16): 18}) is None  # 18 % 4 != 0
    hidden = planner.plan_for({site_on(M.ATTENTION, "self.rnn", 12): 20})
    assert hidden is not None and dict(hidden.predicted or ())["fc:in_features"] == 40


def test_rewrite_keeps_comments_and_formatting() -> None:
    after = rewrite_sites(M.SEQUENTIAL, {site_on(M.SEQUENTIAL, "# stem", 8): 16})
    assert "nn.Conv2d(1, 16, 3),  # stem" in after
    assert len(after.splitlines()) == len(M.SEQUENTIAL.splitlines())


PROPERTY_MODELS = {
    "literal": M.LITERAL, "loop": M.LOOP, "grouped": M.GROUPED, "residual": M.RESIDUAL,
    "flatten": M.FLATTEN, "attention": M.ATTENTION, "resnet8": (CORPUS / "resnet8.py").read_text(),
    "lenet5": (CORPUS / "lenet5.py").read_text(),
    "fractalnet": (CORPUS / "fractalnet.py").read_text(),
}


@pytest.mark.parametrize("name", sorted(PROPERTY_MODELS))
@example(seed=15036445)  # lenet5: a pooling literal once passed for a width
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_valid_plans_keep_shapes_and_match_predictions(name: str, seed: int, recorder: Any,
                                                       tmp_path: Path) -> None:
    source = PROPERTY_MODELS[name]
    plan = planner_for(source, recorder(source), seed).width()
    if plan is None:
        return
    model = build(rewrite_sites(source, dict(plan.changes)), tmp_path)
    model.eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    predicted = {k: v for k, v in dict(plan.predicted or ()).items() if "@" not in k}
    assert widths(model) == predicted
