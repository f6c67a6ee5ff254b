"""``nnrag demo`` fills the default workspace: every later command finds its results with no
``--db`` or ``--runs``, and the query it suggests is hybrid when the search extra is installed.

The demo runs once per module (about half a minute on two cores) in a home of its own; the
tests after it run later commands against that home the way a user would: with nothing but
``NNRAG_HOME`` set, as after ``export NNRAG_HOME=...`` or with the default ``~/.nnrag``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nnrag
from nnrag.cli._demo import _embed, _pointer
from nnrag.search import dense_available
from tests.test_cli import HAS_SANDBOX, Cli, check

DENSE = dense_available()
pytestmark = [pytest.mark.sandbox,
              pytest.mark.skipif(not HAS_SANDBOX, reason="nnrag.sandbox is not available yet")]


def _run(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NNRAG_DB"}
    env.update(NNRAG_HOME=str(home), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "nnrag.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The home the demo filled and what it printed on stdout."""
    home = tmp_path_factory.mktemp("demo_home")
    result = check(_run(home, "demo", "--epochs", "1"), 0)
    return home, result.stdout


def test_demo_trains_into_the_default_home(demo: tuple[Path, str]) -> None:
    home, stdout = demo
    assert "10 blocks" in stdout  # the zoo
    assert stdout.count(" backward") == 4, stdout
    board = stdout.split("leaderboard")[1]
    rows = [r for r in (line.split() for line in board.splitlines())
            if len(r) == 5 and r[0].isdigit()]
    assert len(rows) == 6 and "6 trained" in stdout, stdout
    assert max(float(r[2]) for r in rows) > 0.5  # one epoch leaves chance (0.10) far behind
    assert (home / "runs.db").exists() and (home / "index.db").exists()
    trained = {p.name for p in (home / "trained").glob("*.py")}
    assert len(trained) == 7 and "__init__.py" in trained  # six models, beside the runs
    assert not (home / "demo").exists()
    assert "point them here" not in stdout  # already the stores later commands read


def test_later_commands_find_the_demo_with_no_options(cli: Cli, demo: tuple[Path, str]) -> None:
    env = {"NNRAG_HOME": str(demo[0])}
    runs = json.loads(check(cli("runs", "--format", "json", env=env), 0).stdout)
    assert len(runs) == 6 and {r["outcome"] for r in runs} == {"ok"}
    board = json.loads(check(cli("leaderboard", "--dataset", "digits", "--format", "json",
                                 env=env), 0).stdout)
    assert {r["name"] for r in board} == {"mlp", "lenet5", "resnet8", "resnet20",
                                          "mobilenetv2_small", "mlp_mixer_tiny"}
    code = check(cli("extract", "zoo.layers.conv.SqueezeExcite", env=env), 0).stdout
    assert "class SqueezeExcite" in code
    short = check(cli("extract", "SqueezeExcite", env=env), 2)  # three in the demo's index
    assert "zoo.layers.conv.SqueezeExcite" in short.stderr


def _suggested(stdout: str) -> tuple[str, str]:
    """The query the demo's last line suggests, and the search it says it is."""
    found = re.search(r"try: nnrag query '([^']+)' \((\w+) search\)", stdout)
    assert found, stdout
    return found.group(1), found.group(2)


def test_the_suggested_query_is_hybrid(cli: Cli, demo: tuple[Path, str]) -> None:
    text, kind = _suggested(demo[1])
    if not DENSE:  # without the extra, the demo says once how to get dense search
        assert kind == "lexical" and demo[1].count("pip install 'nnrag[search]'") == 1
        return
    assert kind == "hybrid" and "embed: " in demo[1] and "dense search is off" not in demo[1]
    result = check(cli("query", text, "--format", "json", env={"NNRAG_HOME": str(demo[0])}), 0)
    hits = json.loads(result.stdout)
    assert hits and all(set(h["via"]) == {"dense", "lexical"} for h in hits[:3]), hits
    assert "nnrag embed" not in result.stderr and "rebuilt" not in result.stderr, result.stderr


@pytest.mark.skipif(not DENSE, reason="needs the search extra")
def test_a_fresh_hybrid_query_imports_no_torch(demo: tuple[Path, str]) -> None:
    """The cold start of a query: torch, transformers and sentence-transformers cost seconds
    to import and are not needed to embed one query with the packaged MiniLM."""
    script = ("import sys\nfrom nnrag.cli import main\n"
              "try:\n    main(['query', 'residual block', '--format', 'json'])\n"
              "except SystemExit as e:\n    assert not e.code, e.code\n"
              "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') "
              "if m in sys.modules]\nprint('heavy:', heavy, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "NNRAG_DB"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**env, "NNRAG_HOME": str(demo[0])}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stderr, proc.stderr
    assert "dense" in json.loads(proc.stdout)[0]["via"]


def test_a_second_demo_reuses_everything(demo: tuple[Path, str]) -> None:
    again = check(_run(demo[0], "demo", "--epochs", "1"), 0)
    assert "0 trained, 6 reused" in again.stdout  # deduplicated against the first run
    if DENSE:
        assert "embed: 0 blocks embedded" in again.stdout, again.stdout


def test_another_home_says_how_to_point_later_commands_there(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             nnrag_home: Path) -> None:
    assert _pointer(nnrag.open_workspace()) is None
    assert _pointer(nnrag.open_workspace(nnrag_home)) is None
    elsewhere = tmp_path / "my demo"
    assert _pointer(nnrag.open_workspace(elsewhere)) == f"export NNRAG_HOME='{elsewhere}'"
    monkeypatch.setenv("NNRAG_DB", str(tmp_path / "shared.db"))  # it would win over the home
    assert _pointer(nnrag.open_workspace(elsewhere)) == (
        f"export NNRAG_HOME='{elsewhere}' NNRAG_DB='{elsewhere / 'index.db'}'")


def test_without_the_search_extra_the_demo_says_how_once(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: Any) -> None:
    monkeypatch.setattr("nnrag.search.dense_available", lambda: False)
    assert _embed(nnrag.open_workspace()) is False
    assert capsys.readouterr().out.count("pip install 'nnrag[search]'") == 1
