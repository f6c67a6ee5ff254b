"""The real ``nnrag`` command line, run in a subprocess with NNRAG_HOME in a temporary folder.

Exit codes: 0 clean, 1 when an ``index`` run skipped files, 2 for fatal/usage errors. No
Python traceback may ever reach the user.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import nnrag.index._indexer as indexer
from nnrag.cli import main
from nnrag.index import SCHEMA_VERSION, Store, index_path

Cli = Callable[..., Any]  # the ``cli`` fixture of conftest.py

SUBCOMMANDS = ["index", "extract", "validate", "blocks", "export", "stats", "demo", "mutate"]
try:  # validate/demo need the sandbox, which may still be under construction
    import nnrag.sandbox  # noqa: F401

    HAS_SANDBOX = True
except Exception:  # pragma: no cover - depends on the state of the tree
    HAS_SANDBOX = False


def check(result: Any, code: int) -> Any:
    assert result.returncode == code, str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert "Traceback" not in result.stdout, str(result)
    return result


# -- help -----------------------------------------------------------------------------------


def test_help_via_entry_point(nnrag_home: Path) -> None:
    script = Path(sys.executable).parent / "nnrag"
    if not script.exists():  # pragma: no cover - not installed with `pip install -e .`
        pytest.skip("the nnrag console script is not installed next to this interpreter")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    result = check(proc, 0)  # a CompletedProcess has returncode, stdout and stderr too
    assert "Usage:" in result.stdout
    for sub in SUBCOMMANDS:
        assert sub in result.stdout


@pytest.mark.parametrize("command", [*SUBCOMMANDS, "--version"])
def test_subcommand_help(command: str) -> None:
    """In-process (the same ``main``): one subprocess per --help would cost seconds."""
    args = [command] if command.startswith("--") else [command, "--help"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert ("Usage:" in result.output) if command != "--version" else ("nnrag" in result.output)


# -- index: bad input -----------------------------------------------------------------------


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    """One good file among every kind of file that cannot be indexed."""
    root = tmp_path / "badrepo"
    (root / "sub").mkdir(parents=True)
    (root / "good.py").write_text("def ok():\n    return 1\n")
    (root / "syntax.py").write_text("x = 1\ndef f(:\n    pass\n")
    (root / "latin.py").write_bytes(b"# no coding declaration\nx = 1\nname = 'Andr\xe9'\n")
    (root / "x.py").write_bytes(bytes(range(256)) * 4)  # binary, NUL bytes included
    with open(root / "generated.py", "w") as fh:  # 5 MB of generated code
        line = "CONSTANT_%07d = %d\n"
        for i in range(5_000_000 // len(line % (0, 0)) + 1):
            fh.write(line % (i, i))
    (root / "sub" / "parent").symlink_to("..", target_is_directory=True)  # directory loop
    (root / "self.py").symlink_to("self.py")  # self-referencing file link
    # would overflow the C stack of LibCST's native parser (segfault) if parsed
    (root / "nested.py").write_text("x = " + "(" * 3000 + "1" + ")" * 3000 + "\n")
    (root / "unary.py").write_text("x = " + "-" * 100_000 + "1\n")
    return root


BAD_KINDS = {
    "syntax.py": "syntax_error",
    "latin.py": "decode_error",
    "x.py": "binary",
    "generated.py": "too_large",
    "parent": "symlink_loop",
    "self.py": "symlink_loop",
    "nested.py": "syntax_error",
    "unary.py": "syntax_error",
}


def test_index_bad_input(cli: Cli, bad_tree: Path, tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    result = check(cli("index", bad_tree, "--db", db, "--format", "json"), 1)
    summary = json.loads(result.stdout)
    kinds = {Path(p["path"]).name: p["kind"] for p in summary["problems"]}
    assert kinds == BAD_KINDS
    assert summary["failed"] == len(BAD_KINDS)
    assert summary["scanned"] == 1 and summary["definitions"] == 1
    syntax = next(p for p in summary["problems"] if p["path"].endswith("syntax.py"))
    assert (syntax["line"], syntax["column"]) == (2, 7)
    assert all(p["message"] for p in summary["problems"])
    with Store(db, create=False) as store:
        assert [r["qualname"] for r in store._rows("SELECT qualname FROM definitions")] == [
            "good.ok"
        ]

    # nothing changed, but it is still broken: reported again (from the store), still exit 1
    again = check(cli("index", bad_tree, "--db", db), 1)
    err = again.stderr
    assert f"{bad_tree / 'syntax.py'}:2:7: syntax_error: invalid syntax" in err
    assert f"{bad_tree / 'latin.py'}: decode_error" in err
    assert f"{bad_tree / 'x.py'}: binary" in err
    assert f"{bad_tree / 'generated.py'}: too_large" in err and "MB" in err
    assert f"{bad_tree / 'sub' / 'parent'}: symlink_loop" in err
    assert f"{bad_tree / 'self.py'}: symlink_loop" in err
    assert f"{bad_tree / 'nested.py'}:1:" in err and "too many nested parentheses" in err
    assert f"{len(BAD_KINDS)} failed" in again.stdout
    assert "0 files scanned, 1 unchanged" in again.stdout


def test_index_clean_tree_exits_0(cli: Cli, write_tree: Callable[..., Path]) -> None:
    root = write_tree({"a.py": "class A:\n    pass\n", "b.py": "from a import A\n"})
    result = check(cli("index", root), 0)
    assert "2 files scanned" in result.stdout and "0 failed" in result.stdout
    assert result.stderr == ""


def test_index_interrupted_then_completed(
    zoo_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-run (in-process, to inject it): exit 130, committed batches kept; the next
    run picks up where it stopped."""
    db = tmp_path / "int.db"
    real = indexer.scan_source
    calls = 0

    def interrupt_on_fourth(text: str, module: str, is_package: bool = False):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt
        return real(text, module, is_package)

    monkeypatch.setattr(indexer, "_BATCH", 1)
    monkeypatch.setattr(indexer, "scan_source", interrupt_on_fourth)
    result = CliRunner().invoke(main, ["index", str(zoo_tree), "--db", str(db), "--jobs", "1"])
    assert result.exit_code == 130
    assert "interrupted" in result.output
    monkeypatch.setattr(indexer, "scan_source", real)

    again = CliRunner().invoke(main, ["index", str(zoo_tree), "--db", str(db), "--format", "json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["scanned"], summary["unchanged"], summary["failed"]) == (7, 3, 0)
    assert summary["blocks"] == 10


def test_index_missing_path(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    result = check(cli("index", missing), 2)
    assert str(missing) in result.stderr
    assert "does not exist" in result.stderr


def test_index_usage_errors(cli: Cli) -> None:
    assert "PATH or --package" in check(cli("index"), 2).stderr


def test_index_unknown_package(cli: Cli) -> None:
    result = check(cli("index", "--package", "surely_not_installed_xyz"), 2)
    assert "surely_not_installed_xyz" in result.stderr


def test_index_installed_package(cli: Cli, tmp_path: Path) -> None:
    """A small pure-Python package of the venv (pytest's iniconfig), found without importing."""
    spec = importlib.util.find_spec("iniconfig")
    assert spec is not None and spec.submodule_search_locations
    db = tmp_path / "pkg.db"
    result = check(cli("index", "--package", "iniconfig", "--db", db, "--format", "json"), 0)
    summary = json.loads(result.stdout)
    assert summary["package"] == "iniconfig" and summary["failed"] == 0
    assert Path(summary["root"]) == Path(next(iter(spec.submodule_search_locations))).resolve()
    assert summary["scanned"] >= 2 and summary["definitions"] > 0 and summary["blocks"] == 0
    with Store(db, create=False) as store:
        names = {r["name"] for r in store._rows("SELECT name FROM modules")}
        assert {"iniconfig", "iniconfig.exceptions"} <= names
        assert store._rows("SELECT 1 FROM definitions WHERE qualname='iniconfig.IniConfig'")
        assert store.packages()[0]["version"]


# -- store errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("index", "{tree}"), ("extract", "X")])
def test_non_sqlite_db_is_a_clear_error(cli: Cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 100)
    tree = tmp_path / "tree"
    tree.mkdir()
    args = [a.format(tree=tree) for a in command]
    result = check(cli(*args, "--db", db), 2)
    assert "notes.db" in result.stderr and "not a database" in result.stderr


def test_newer_schema_is_refused(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with Store(db) as store, store.transaction():
        store.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    result = check(cli("stats", "--db", db), 2)
    assert "schema version" in result.stderr and "newer" in result.stderr
    with sqlite3.connect(db) as conn:  # untouched
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[
            0
        ] == str(SCHEMA_VERSION + 1)


READ_COMMANDS = [("blocks",), ("stats",), ("extract", "Block"), ("export", "{out}")]
if HAS_SANDBOX:
    READ_COMMANDS.append(("validate", "--all"))


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_commands_against_a_missing_index(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    db = tmp_path / "nonexistent" / "x.db"
    out = tmp_path / "out"
    args = [a.format(out=out) for a in command]
    result = check(cli(*args, "--db", db), 2)
    assert "no index at" in result.stderr and str(db) in result.stderr
    assert "nnrag index" in result.stderr
    assert not db.exists() and not db.parent.exists()
    assert not out.exists()


def test_default_db_is_not_created_by_reads(cli: Cli, nnrag_home: Path) -> None:
    result = check(cli("stats", "--format", "json"), 2)
    assert str(nnrag_home / "index.db") in result.stderr
    assert not (nnrag_home / "index.db").exists()


# -- read commands on the zoo ---------------------------------------------------------------


def test_blocks_json_and_pattern(cli: Cli, zoo_db_copy: Path) -> None:
    rows = json.loads(
        check(
            cli("blocks", "--pattern", "*Attention*", "--format", "json", "--db", zoo_db_copy), 0
        ).stdout
    )
    assert [r["qualname"] for r in rows] == ["zoo.layers.attention.Attention"]
    row = rows[0]
    assert row["name"] == "Attention" and row["package"] == "zoo"
    assert row["lineno"] < row["end_lineno"] and len(row["hash"]) == 40
    assert row["rung_name"] == "unvalidated"


def test_blocks_table_and_env_db(cli: Cli, zoo_db_copy: Path) -> None:
    result = check(cli("blocks", env={"NNRAG_DB": str(zoo_db_copy)}), 0)
    assert "zoo.models.vit.TinyViT" in result.stdout
    assert "10 blocks" in result.stdout


def test_stats_json(cli: Cli, zoo_db_copy: Path) -> None:
    data = json.loads(check(cli("stats", "--format", "json", "--db", zoo_db_copy), 0).stdout)
    zoo = data["packages"]["zoo"]
    assert (zoo["modules"], zoo["blocks"], zoo["validated"]) == (10, 10, 0)
    assert zoo["version"] == "0.1.0"
    assert zoo["files"] == {"ok": 10}


def test_extract_simple_name_to_stdout(cli: Cli, zoo_db_copy: Path) -> None:
    result = check(cli("extract", "Mlp", "--db", zoo_db_copy), 0)
    tree = ast.parse(result.stdout)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert "Mlp" in classes
    assert "zoo.layers.mlp.Mlp" in result.stdout  # provenance header


def test_extract_qualified_name_json(cli: Cli, zoo_db_copy: Path) -> None:
    result = check(
        cli("extract", "zoo.models.vit.Block", "--db", zoo_db_copy, "--format", "json"), 0
    )
    data = json.loads(result.stdout)
    assert data["qualname"] == "zoo.models.vit.Block"
    assert {"zoo.layers.attention.Attention", "zoo.layers.mlp.Mlp"} <= set(data["definitions"])
    ast.parse(data["code"])


def test_extract_to_file(cli: Cli, zoo_db_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "vit.py"
    result = check(cli("extract", "TinyViT", "-o", target, "--db", zoo_db_copy), 0)
    assert result.stdout == ""
    assert str(target) in result.stderr
    code = target.read_text()
    assert "class TinyViT" in code
    ast.parse(code)
    assert [p.name for p in target.parent.iterdir()] == ["vit.py"]  # no temporary left behind


def test_extract_ambiguous_name(cli: Cli, tmp_path: Path, write_tree: Callable[..., Path]) -> None:
    root = write_tree(
        {
            "__init__.py": "",
            "vision.py": "class Block:\n    pass\n",
            "text.py": "class Block:\n    pass\n",
        },
        root="twoblocks",
    )
    db = tmp_path / "two.db"
    with Store(db) as store:
        index_path(store, root)
    result = check(cli("extract", "Block", "--db", db), 2)
    assert "ambiguous" in result.stderr
    assert "twoblocks.vision.Block" in result.stderr and "twoblocks.text.Block" in result.stderr
    assert result.stdout == ""


def test_extract_unknown_name(cli: Cli, zoo_db_copy: Path) -> None:
    result = check(cli("extract", "NoSuch[/]Thing", "--db", zoo_db_copy), 2)
    assert "NoSuch[/]Thing" in result.stderr  # printed verbatim, not eaten as markup
    assert "nnrag blocks" in result.stderr  # says how to find the right name


def test_export(cli: Cli, zoo_db_copy: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "export"
    outdir.mkdir()
    (outdir / "stale.py").write_text("# from an earlier export\n")  # replaced, not merged
    result = check(cli("export", outdir, "--db", zoo_db_copy, "--format", "json"), 0)
    assert json.loads(result.stdout)["count"] == 10
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["count"] == len(manifest["blocks"]) == 10
    files = sorted(p.name for p in outdir.glob("*.py"))
    assert files == sorted(b["file"] for b in manifest["blocks"])
    for entry in manifest["blocks"]:
        assert {"name", "qualname", "source", "hash", "rung", "dependencies"} <= set(entry)
        assert entry["rung"] == "unvalidated"
        code = (outdir / entry["file"]).read_text()
        ast.parse(code)
        assert f"class {entry['name']}" in code
    vit = next(b for b in manifest["blocks"] if b["qualname"] == "zoo.models.vit.TinyViT")
    assert "zoo.models.vit.PatchEmbed" in vit["dependencies"]
    assert vit["source"]["path"].endswith(os.path.join("models", "vit.py"))
    assert not (outdir / "stale.py").exists()
    assert not [p for p in outdir.parent.iterdir() if p.name.startswith(".export")]


def test_export_skips_broken_blocks_unless_asked(cli: Cli, zoo_db_copy: Path,
                                                 tmp_path: Path) -> None:
    # Recorded validations (no sandbox needed): one block failed at import, one reached
    # instantiate and then hit a resolver gap, one needs arguments (not broken).
    failures = {
        "zoo.layers.conv.SqueezeExcite": (2, "import", "resolver_gap", "ImportError"),
        "zoo.models.vit.TinyViT": (4, "forward", "resolver_gap", "NameError"),
        "zoo.layers.conv.ConvNormAct": (3, "instantiate", "needs_arguments", "TypeError"),
    }
    with Store(zoo_db_copy) as store:
        for qualname, (rung, failed, cause, error) in failures.items():
            row = store.definitions_named(qualname, qualified=True)[0]
            store.save_validation(qualname, row["hash"], f"key-{qualname}", {
                "rung": rung, "failed_rung": failed, "cause": cause, "error_type": error,
                "error_message": "attempted relative import with no known parent package"})
    outdir = tmp_path / "out"
    result = check(cli("export", outdir, "--db", zoo_db_copy), 0)
    assert "exported 8 blocks" in result.stdout
    assert "skipped 2 broken blocks" in result.stdout and "--include-broken" in result.stdout
    assert "zoo.layers.conv.SqueezeExcite: failed at import (resolver_gap; ImportError: " \
           "attempted relative import" in result.stderr
    assert "zoo.models.vit.TinyViT: failed at forward (resolver_gap; NameError" in result.stderr
    assert not (outdir / "zoo.layers.conv.SqueezeExcite.py").exists()
    assert (outdir / "zoo.layers.conv.ConvNormAct.py").exists()
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert [s["qualname"] for s in manifest["skipped"]] == [
        "zoo.layers.conv.SqueezeExcite", "zoo.models.vit.TinyViT"]
    result = check(cli("export", outdir, "--db", zoo_db_copy, "--include-broken",
                       "--format", "json"), 0)
    assert json.loads(result.stdout) == {"outdir": str(outdir), "count": 10, "skipped": []}
    entries = {b["qualname"]: b for b in json.loads((outdir / "manifest.json").read_text())
               ["blocks"]}
    assert entries["zoo.layers.conv.SqueezeExcite"]["broken"].startswith("failed at import")
    assert entries["zoo.layers.conv.ConvNormAct"]["broken"] is None


# -- sandbox-backed commands ----------------------------------------------------------------


@pytest.mark.skipif(not HAS_SANDBOX, reason="nnrag.sandbox is not available yet")
def test_validate_one_block_json(cli: Cli, zoo_db_copy: Path) -> None:
    result = check(
        cli("validate", "zoo.layers.mlp.Mlp", "--db", zoo_db_copy, "--format", "json", timeout=300),
        0,
    )
    outcomes = json.loads(result.stdout)
    assert [o["qualname"] for o in outcomes] == ["zoo.layers.mlp.Mlp"]
    assert outcomes[0]["rung_name"] == "backward", outcomes[0]
    rows = json.loads(
        check(
            cli("blocks", "--min-rung", "backward", "--format", "json", "--db", zoo_db_copy), 0
        ).stdout
    )
    assert [r["qualname"] for r in rows] == ["zoo.layers.mlp.Mlp"]


def test_validate_needs_names(cli: Cli, zoo_db_copy: Path) -> None:
    if not HAS_SANDBOX:
        pytest.skip("nnrag.sandbox is not available yet")
    result = check(cli("validate", "--db", zoo_db_copy), 2)
    assert "--all" in result.stderr
