"""The docs' benchmark tables come from benchmarks/results/*.json and never drift from them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
RENDER = ROOT / "benchmarks" / "render.py"


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(RENDER.parent))
    spec = importlib.util.spec_from_file_location(name, RENDER.parent / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True)


def test_docs_are_rendered_from_the_results() -> None:
    done = _run("--check")
    assert done.returncode == 0, done.stderr


def test_readme_headline_rows_come_from_the_results() -> None:
    render = _module("render")
    docs = render.load(ROOT / "benchmarks" / "results")
    entries = [e for d in docs.values() for e in d.get("headline", [])]
    assert entries, "no results file names a headline figure"
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- results:headline -->")[1].split("<!-- /results:headline -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(entries) + 1  # the header row
    assert len(readme.splitlines()) <= 200


def _fixture(root: Path, runs: list[dict[str, object]]) -> Path:
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "docs").mkdir()
    results = root / "benchmarks" / "results" / "toy.json"
    results.write_text(json.dumps({
        "benchmark": "toy", "command": "python benchmarks/toy.py", "machine": "2 cores, CPU only",
        "runs": runs,
        "headline": [{"what": "toy speed", "figure": "{rows.fast.took_s} s of {count:,}",
                      "link": "docs/benchmarks.md#toy"}]}))
    (root / "docs" / "benchmarks.md").write_text(
        "# toy\n\nbefore\n\n<!-- results:toy -->\nstale\n<!-- /results:toy -->\n\nafter\n")
    (root / "README.md").write_text(
        "top\n\n<!-- results:headline -->\n<!-- /results:headline -->\n")
    return results


RUN = {"label": "first", "commit": "abc1234", "count": 12345,
       "rows": [{"case": "fast", "took_s": 1.5, "ok": True}, {"case": "slow", "took_s": 9.25}]}


def test_render_writes_the_last_run_and_check_catches_drift(tmp_path: Path) -> None:
    results = _fixture(tmp_path, [{**RUN, "label": "old", "rows": [{"case": "fast", "took_s": 7}]},
                                  RUN])
    assert _run("--check", "--root", str(tmp_path)).returncode == 1
    assert _run("--root", str(tmp_path)).returncode == 0
    docs = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "stale" not in docs and docs.startswith("# toy\n\nbefore") and "after" in docs
    assert ("| case | took s | ok |\n|---|---:|---|\n| fast | 1.5 | yes |\n"
            "| slow | 9.25 |  |") in docs
    assert "Run *first* at commit `abc1234`" in docs and "| count | 12345 |" in docs
    assert "Earlier runs" in docs and "old (`abc1234`)" in docs
    readme = (tmp_path / "README.md").read_text()
    assert "| toy speed | 1.5 s of 12,345 | [details](docs/benchmarks.md#toy) |" in readme
    assert "Measured on 2 cores, CPU only." in readme
    assert _run("--check", "--root", str(tmp_path)).returncode == 0
    doc = json.loads(results.read_text())
    doc["runs"][-1]["rows"][0]["took_s"] = 1.25
    results.write_text(json.dumps(doc))
    stale = _run("--check", "--root", str(tmp_path))
    assert stale.returncode == 1 and "out of date" in stale.stderr


def test_a_results_file_without_markers_gets_its_own_section(tmp_path: Path) -> None:
    _fixture(tmp_path, [RUN])
    other = {"benchmark": "extra bench", "command": "python benchmarks/extra.py",
             "machine": "2 cores, CPU only", "runs": [{"label": "l", "commit": "c", "x_ms": 3}]}
    (tmp_path / "benchmarks" / "results" / "extra.json").write_text(json.dumps(other))
    assert _run("--root", str(tmp_path)).returncode == 0
    docs = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "## extra bench\n\n<!-- results:extra -->" in docs and "| x ms | 3 |" in docs
    assert _run("--check", "--root", str(tmp_path)).returncode == 0


def test_another_docs_page_with_markers_gets_the_same_section(tmp_path: Path) -> None:
    _fixture(tmp_path, [RUN])
    page = tmp_path / "docs" / "feature.md"
    page.write_text("# feature\n\n<!-- results:toy -->\nold\n<!-- /results:toy -->\n\nend\n")
    plain = tmp_path / "docs" / "plain.md"
    plain.write_text("# nothing placed here\n")
    assert _run("--check", "--root", str(tmp_path)).returncode == 1
    assert _run("--root", str(tmp_path)).returncode == 0
    text = page.read_text()
    assert "old" not in text and "| fast | 1.5 | yes |" in text and text.endswith("end\n")
    assert plain.read_text() == "# nothing placed here\n"
    assert _run("--check", "--root", str(tmp_path)).returncode == 0


@pytest.mark.parametrize("doc, message", [
    ({"benchmark": "b", "command": "c", "machine": "m", "runs": []}, "non-empty"),
    ({"benchmark": "b", "command": "c", "runs": [{"label": "l", "commit": "c"}]}, "'machine'"),
    ({"benchmark": "b", "command": "c", "machine": "m", "runs": [{"label": "l"}]}, "'commit'"),
])
def test_a_malformed_results_file_is_refused(tmp_path: Path, doc: dict[str, object],
                                             message: str) -> None:
    _fixture(tmp_path, [RUN])
    (tmp_path / "benchmarks" / "results" / "bad.json").write_text(json.dumps(doc))
    done = _run("--check", "--root", str(tmp_path))
    assert done.returncode == 1 and "bad.json" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_record_appends_a_run_with_commit_machine_and_command(tmp_path: Path) -> None:
    results = _module("_results")
    argv = ["--db", "x.db", "--record", "quiet", "--note=n"]
    results.record("toy", "first", {"p50_ms": 1.0}, script="benchmarks/toy.py", argv=argv,
                   results_dir=tmp_path)
    results.record("toy", "second", {"p50_ms": 2.0}, script="benchmarks/toy.py",
                   argv=["--db", "y.db"], note="shared cores", results_dir=tmp_path)
    doc = json.loads((tmp_path / "toy.json").read_text())
    assert doc["command"] == "python benchmarks/toy.py --db x.db"
    assert doc["machine"] == results.machine() and "cores" in doc["machine"]
    first, second = doc["runs"]
    assert first["label"] == "first" and first["p50_ms"] == 1.0 and "command" not in first
    assert second["command"] == "python benchmarks/toy.py --db y.db"
    assert second["note"] == "shared cores" and second["commit"] == results.commit()
    with pytest.raises(ValueError, match="metadata"):
        results.record("toy", "x", {"commit": "1"}, script="t.py", argv=[], results_dir=tmp_path)
