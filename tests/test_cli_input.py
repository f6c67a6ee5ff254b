"""Bad input at the command line: one line on stderr, a documented exit code, no traceback.

The table runs in-process (``CliRunner``: a subprocess per case would cost seconds each);
an exception escaping a command shows up there as ``result.exception`` that is not a
``SystemExit``. A seeded fuzz test throws random option values and random specs at the
same paths. The escape-sequence tests check that nothing a user or a model named reaches
the terminal raw.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnrag.cli import main
from nnrag.train.runstore import RunStore
from nnrag.train.spec import SpecError, load_spec

SPEC = {"model": {"code": "x = 1\n"}, "dataset": "digits"}


def invoke(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_one_line_error(result: Any, code: int = 2) -> str:
    """The contract of every rejected input; returns the message."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].lower().startswith("error"), result.stderr
    return lines[0]


def _spec(tmp_path: Path, data: Any, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else str(data))
    return path


BAD_OPTIONS: list[tuple[str, ...]] = [
    ("index", ".", "--jobs", "0"),
    ("index", ".", "--jobs", "-3"),
    ("index", ".", "--max-file-mb", "-1"),
    ("index", ".", "--max-file-mb", "nan"),
    ("index", ".", "--max-file-mb", "inf"),
    ("validate", "X", "--timeout", "-5"),
    ("validate", "X", "--timeout", "0"),
    ("validate", "X", "--timeout", "nan"),
    ("validate", "X", "--memory-mb", "0"),
    ("validate", "X", "--memory-mb", "-1"),
    ("validate", "X", "--jobs", "0"),
    ("query", "conv", "-k", "0"),
    ("query", "conv", "-k", "-2"),
    ("query", "conv", "--max-params", "-1"),
    ("similar", "X", "-k", "0"),
    ("embed", "--batch-size", "0"),
    ("embed", "--batch-size", "-4"),
    ("duplicates", "--min-size", "0"),
    ("runs", "--limit", "0"),
    ("leaderboard", "--limit", "-1"),
    ("show", "-1"),
    ("show", str(2**70)),
    ("resume", "--workers", "0"),
    ("mutate", "mlp", "--seed", "-1"),
    ("mutate", "mlp", "--seed", str(2**32)),
    ("mutate", "mlp", "--jobs", "0"),
    ("mutate", "mlp", "--epochs", "0"),
    ("mutate", "mlp", "--max-params", "-5"),
    ("generate", "--seed", str(2**32)),
    ("generate", "--top-p", "2"),
    ("generate", "--temperature", "-1"),
    ("generate", "--threads", "0"),
    ("generate", "--context", "0"),
    ("demo", "--workers", "0"),
    ("demo", "--epochs", "0"),
    ("index", ".", "--no-such-option"),
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=" ".join)
def test_bad_option_values_are_one_line_usage_errors(args: tuple[str, ...]) -> None:
    message = assert_one_line_error(invoke(*args))
    assert "--help" in message  # says where the ranges are


def test_train_rejects_bad_workers(tmp_path: Path) -> None:
    assert_one_line_error(invoke("train", _spec(tmp_path, SPEC), "--workers", "0"))


@pytest.mark.parametrize("seed", [2**32, 2**40, -1])
def test_a_seed_out_of_range_is_a_spec_error(tmp_path: Path, seed: int) -> None:
    spec = _spec(tmp_path, {**SPEC, "seed": seed})
    message = assert_one_line_error(invoke("train", spec, "--runs", tmp_path / "runs.db"))
    assert "seed" in message
    runs = RunStore(tmp_path / "runs.db")  # nothing was queued
    assert runs.runs() == []
    runs.close()


@pytest.mark.parametrize("name,text", [
    ("deep.json", "[" * 200_000 + "]" * 200_000),
    ("deep.yaml", "[" * 200_000 + "]" * 200_000),
    ("deep_block.yaml", "- " * 50_000 + "1\n"),
    ("deep_map.json", '{"a":' * 50_000 + "1" + "}" * 50_000),
    ("deepish.json", json.dumps({**SPEC, "hyperparameters": {"extra": {}}})
     .replace("{}", '{"a":' * 500 + "1" + "}" * 500)),
])
def test_a_deeply_nested_spec_is_one_spec_error(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "nest" in str(info.value) and "\n" not in str(info.value)
    assert_one_line_error(invoke("train", path, "--runs", tmp_path / "runs.db"))


def _unwritable(tmp_path: Path, kind: str) -> Path:
    if kind == "file-as-folder":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a folder should be")
        return blocker
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("kind", ["file-as-folder", "read-only"])
def test_extract_into_an_unwritable_folder(zoo_db_copy: Path, tmp_path: Path, kind: str) -> None:
    target = _unwritable(tmp_path, kind) / "x.py"
    message = assert_one_line_error(invoke("extract", "Mlp", "-o", target, "--db", zoo_db_copy))
    assert "cannot write" in message and str(target.parent) in message


@pytest.mark.parametrize("kind", ["file-as-folder", "read-only"])
def test_export_into_an_unwritable_folder(zoo_db_copy: Path, tmp_path: Path, kind: str) -> None:
    target = _unwritable(tmp_path, kind) / "out"
    message = assert_one_line_error(invoke("export", target, "--db", zoo_db_copy))
    assert "cannot write" in message


def test_extract_writes_atomically(zoo_db_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "x.py"
    target.write_text("old")
    result = invoke("extract", "Mlp", "-o", target, "--db", zoo_db_copy)
    assert result.exit_code == 0, result.output
    assert "class Mlp" in target.read_text()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# -- escape sequences -----------------------------------------------------------------------

EVIL = "evil\x1b]0;owned\x07\x1b[2J\x1b[31mred\x9b1m\x08\r"


def _no_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) < 0xa0]
    assert not bad, repr(text)


def test_model_names_with_escape_sequences_are_printed_inert(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    runs = RunStore(db)
    run = runs.create(EVIL, "digits", {"model": {"code": "x"}}, "k", "m", "f", "x")
    runs.start(run)
    runs.finish(run, {"outcome": "error", "error": EVIL, "traceback": f"trace: {EVIL}"},
                "accuracy")
    runs.close()
    for args in (("runs",), ("show", str(run))):
        result = invoke(*args, "--runs", db)
        assert result.exit_code == 0, result.output
        _no_controls(result.stdout)
        _no_controls(result.stderr)
        assert "evil" in result.stdout and "\\x1b" in result.stdout  # shown, escaped
    as_json = invoke("runs", "--runs", db, "--format", "json")
    assert json.loads(as_json.stdout)[0]["name"] == EVIL  # JSON keeps the exact text
    _no_controls(as_json.stdout)


def test_error_messages_with_escape_sequences_are_printed_inert(zoo_db_copy: Path) -> None:
    result = invoke("extract", f"No{EVIL}Such", "--db", zoo_db_copy)
    assert result.exit_code == 2
    _no_controls(result.stderr)


def test_the_safe_console_escapes_every_control_character() -> None:
    from nnrag.cli._common import safe_text

    assert safe_text("a\x1b[31mb\tc\nd\x00\x7f\x9b") == "a\\x1b[31mb\tc\nd\\x00\\x7f\\x9b"
    assert safe_text("plain [text] é 中") == "plain [text] é 中"


# -- fuzz: random option values and random specs --------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "1e400", "-0", "0x10", "nan", "-inf", "1_000", "\x1b[2J"]),
)
COMMANDS = [
    ("index", "{tree}", "--jobs"), ("index", "{tree}", "--max-file-mb"),
    ("validate", "X", "--timeout"), ("validate", "X", "--memory-mb"), ("validate", "X", "--jobs"),
    ("query", "conv", "-k"), ("query", "conv", "--max-params"), ("embed", "--batch-size"),
    ("runs", "--limit"), ("leaderboard", "--limit"), ("show",), ("duplicates", "--min-size"),
]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), value=NUMBERS)
def test_fuzz_option_values(tmp_path: Path, command: tuple[str, ...], value: str) -> None:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    args = [a.format(tree=tree) for a in command]
    result = invoke(*args, value, "--db", tmp_path / "fuzz.db") if command[0] != "show" \
        else invoke(*args, value, "--runs", tmp_path / "runs.db")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, value, repr(result.exception))
    assert result.exit_code in (0, 1, 2), (args, value, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, (
            args, value, result.stderr)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
              st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(
                                ["model", "code", "file", "block", "dataset", "seed", "budget",
                                 "epochs", "hyperparameters", "lr", "limit", "extra", "x"]),
                                inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=JSON, suffix=st.sampled_from([".json", ".yaml"]))
def test_fuzz_specs(tmp_path: Path, data: Any, suffix: str) -> None:
    """Anything at all: a spec, or one SpecError."""
    import yaml

    path = tmp_path / f"spec{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(exc)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                      st.integers(min_value=2**32 - 2, max_value=2**32 + 2)),
       extra=st.dictionaries(st.sampled_from(["limit", "transform", "metric"]), JSON, max_size=2))
def test_fuzz_valid_specs_with_random_seeds(tmp_path: Path, seed: int, extra: Any) -> None:
    """A spec that loads has a seed every consumer takes (numpy, torch, scikit-learn)."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, **extra, "seed": seed}))
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(exc)
        return
    assert 0 <= seed < 2**32


# -- resume: a row stored before the seed was checked --------------------------------------


def test_resume_survives_a_stored_spec_that_is_no_longer_valid(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    runs = RunStore(db)
    bad = {"model": {"code": "x = 1\n"}, "dataset": "digits", "seed": 2**32}
    runs.create("old", "digits", bad, "k", "m", "f", "x = 1\n")
    runs.close()
    result = invoke("resume", "--runs", db)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception), result.output)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    conn = sqlite3.connect(db)
    status, outcome, error = conn.execute("SELECT status, outcome, error FROM runs").fetchone()
    assert (status, outcome) == ("done", "error") and "seed" in error
    assert invoke("resume", "--runs", db).stdout.strip() == "nothing to resume"


@pytest.mark.parametrize("kwargs", [{"timeout": -5}, {"timeout": float("nan")}, {"memory_mb": 0},
                                    {"jobs": 0}])
def test_the_api_refuses_nonsense_limits_too(zoo_db_copy: Path, kwargs: dict[str, Any]) -> None:
    import nnrag
    from nnrag.exceptions import NnragError

    ws = nnrag.open_workspace(db=zoo_db_copy)
    with pytest.raises(NnragError, match="must be a number above 0"):
        ws.validate(["Mlp"], **kwargs)
    with pytest.raises(NnragError, match="batch_size"):
        ws.embed("hashing", batch_size=0)
    ws.close()
