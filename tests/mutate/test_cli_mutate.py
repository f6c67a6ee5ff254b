"""``nnrag mutate`` through a subprocess: a real run, and every bad target with a clear error."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.mutate import _models as M
from tests.test_cli import check

pytestmark = pytest.mark.sandbox


def test_mutate_corpus_model_json_and_lineage(cli: Any, nnrag_home: Path, tmp_path: Path) -> None:
    result = check(cli("mutate", "lenet5", "--n", "4", "--kinds", "width,activation", "--seed", "2",
                       "--out", tmp_path / "out", "--train", "digits", "--format", "json",
                       timeout=400), 0)
    data = json.loads(result.stdout)
    assert data["valid"] == data["wanted"] == 4 and data["traced"] is True
    assert data["shortfall"] is None
    assert {m["kind"] for m in data["mutants"]} <= {"width", "activation"}
    assert len(list((tmp_path / "out").glob("*.py"))) == data["valid"]
    rows = sqlite3.connect(nnrag_home / "index.db").execute(
        "SELECT json_extract(detail, '$.parent') FROM block_provenance "
        "WHERE source='mutate'").fetchall()
    assert len(rows) == data["valid"] and rows[0][0].endswith("lenet5.py")
    assert len(data["trained"]) == data["valid"]
    assert all(t["outcome"] == "ok" and 0 <= t["best"] <= 1 for t in data["trained"])


def test_mutate_untraceable_model_says_what_is_disabled(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "untraceable.py"
    path.write_text(M.UNTRACEABLE)
    result = check(cli("mutate", path, "--n", "2", "--no-index", timeout=300), 0)
    assert "could not trace" in result.stderr and "residual" in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("import torch\n\nclass Model(torch.nn.Module):\n    pass\n", "defines no class Net"),
    ("class Net(:\n", "does not parse: line 1"),
    ("class Net:\n    pass\n", "no class Net(nn.Module)"),
    (M.HEAD + "class Net(nn.Module):\n    def __init__(self, *a):\n        super().__init__()\n"
     "        raise RuntimeError('broken on purpose')\n", "broken on purpose"),
])
def test_mutate_bad_file_targets(cli: Any, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "model.py"
    path.write_text(content)
    result = check(cli("mutate", path, "--no-index", timeout=300), 2)
    assert message in result.stderr


def test_mutate_unknown_target_and_kind(cli: Any, tmp_path: Path) -> None:
    missing = check(cli("mutate", "no_such_model_anywhere"), 2)
    assert "no index" in missing.stderr or "no indexed definition" in missing.stderr.lower()
    kind = check(cli("mutate", "lenet5", "--kinds", "width,teleport", "--no-index"), 2)
    assert "unknown mutation kind" in kind.stderr
    assert "no such file" in check(cli("mutate", tmp_path / "absent.py"), 2).stderr


def test_the_change_column_is_wrapped_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrowed stem with +146.9% parameters needs its whole change line to be believed."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    import nnrag.cli._mutate as cli_mutate

    change = ("width: stem conv1 out_channels 16 -> 8, bn1 num_features 16 -> 8, "
              "layer1.0 conv1 in_channels 16 -> 8, then every dependent site, enumerated "
              "in full so the reader sees why the parameters grew")
    mutant = SimpleNamespace(md5="0123456789abcdef", kind="width", params=2469, flops=None,
                             valid=True, rung="backward", error=None, description=change)
    report = SimpleNamespace(
        traced=True, mutants=[mutant], valid=[mutant], params=1000, flops=None, duplicates=0,
        rejected_by_plan=0, seconds=1.0, wanted=3, shortfall="the design space is used up",
        target=SimpleNamespace(label="net"))
    buffer = io.StringIO()
    monkeypatch.setattr(cli_mutate, "out", Console(file=buffer, width=100, soft_wrap=True,
                                                   markup=False, highlight=False))
    cli_mutate._print(report, [], [], [])
    text = buffer.getvalue()
    header, *rows = text.splitlines()
    column = " ".join(r[header.index("change"):].strip() for r in rows if r.startswith(" "))
    assert column == change  # every word, folded over several lines
    assert "+146.9%" in text
    assert "only 1 of the 3 wanted: the design space is used up" in text
