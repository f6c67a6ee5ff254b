"""Indexing source trees: module names, definitions, block marking, incremental updates,
interruption safety and bad files (in-process; the CLI versions live in tests/test_cli.py)."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import nnrag.index._indexer as indexer
from nnrag.exceptions import ScanError
from nnrag.index import Store, index_path, locate_package
from nnrag.index._indexer import module_name, package_version

WriteTree = Callable[..., Path]


def modules(store: Store) -> dict[str, dict]:
    return {m["name"]: m for m in store._rows("SELECT * FROM modules")}


def definitions(store: Store) -> dict[str, dict]:
    return {d["qualname"]: d for d in store._rows("SELECT * FROM definitions")}


def blocks(store: Store) -> set[str]:
    return {r["qualname"] for r in store._rows("SELECT qualname FROM definitions WHERE is_block=1")}


def assert_consistent(store: Store) -> None:
    """No half-written files: ok files <-> modules, and nothing hangs off a missing module."""
    ok = {
        (r["path"], r["module"])
        for r in store._rows("SELECT path, module FROM files WHERE status='ok'")
    }
    mods = {(r["path"], r["name"]) for r in store._rows("SELECT path, name FROM modules")}
    assert ok == mods
    assert store._rows("SELECT path FROM files WHERE status != 'ok' AND module IS NOT NULL") == []
    for table in ("definitions", "imports"):
        orphans = store._rows(
            f"SELECT t.module FROM {table} t LEFT JOIN modules m ON m.name = t.module "
            "WHERE m.name IS NULL"
        )
        assert orphans == [], table


# -- module names ---------------------------------------------------------------------------


def test_module_names_of_a_package(store: Store, write_tree: WriteTree) -> None:
    root = write_tree(
        {"__init__.py": "", "core.py": "A = 1\n", "sub/__init__.py": "", "sub/leaf.py": "B = 2\n"},
        root="mypkg",
    )
    report = index_path(store, root)
    assert report.package == "mypkg"
    assert report.root == str(root.resolve())
    mods = modules(store)
    assert set(mods) == {"mypkg", "mypkg.core", "mypkg.sub", "mypkg.sub.leaf"}
    assert mods["mypkg"]["is_package"] == 1 and mods["mypkg.core"]["is_package"] == 0
    assert mods["mypkg.sub.leaf"]["path"] == str(root.resolve() / "sub" / "leaf.py")
    assert {"mypkg.core.A", "mypkg.sub.leaf.B"} <= set(definitions(store))
    assert [p["name"] for p in store.packages()] == ["mypkg"]


def test_module_names_of_a_repository_checkout(store: Store, write_tree: WriteTree) -> None:
    root = write_tree(
        {
            "train.py": "X = 1\n",
            "models/__init__.py": "",
            "models/net.py": "Y = 2\n",
            "scripts/run.py": "Z = 3\n",
        },
        root="checkout",
    )
    report = index_path(store, root)
    assert report.package == "checkout"
    assert set(modules(store)) == {"train", "models", "models.net", "scripts.run"}
    assert {"train.X", "models.net.Y", "scripts.run.Z"} <= set(definitions(store))


def test_module_name_helper() -> None:
    root = Path("/r")
    assert module_name(root, Path("/r/__init__.py"), "pkg") == ("pkg", True)
    assert module_name(root, Path("/r/a/b.py"), "pkg") == ("pkg.a.b", False)
    assert module_name(root, Path("/r/a/__init__.py"), "") == ("a", True)
    assert module_name(root, Path("/r/x.py"), "") == ("x", False)


def test_hidden_and_cache_folders_are_skipped(store: Store, write_tree: WriteTree) -> None:
    root = write_tree(
        {
            "a.py": "A = 1\n",
            ".venv/x.py": "X = 1\n",
            "__pycache__/y.py": "Y = 1\n",
            "node_modules/z.py": "Z = 1\n",
            "notes.txt": "text",
        }
    )
    report = index_path(store, root)
    assert set(modules(store)) == {"a"}
    assert report.scanned == 1 and report.failed == 0


def test_missing_path_and_file_path_are_scan_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="does not exist"):
        index_path(store, tmp_path / "missing")
    (tmp_path / "f.py").write_text("A = 1\n")
    with pytest.raises(ScanError, match="is a file"):
        index_path(store, tmp_path / "f.py")


# -- definitions ----------------------------------------------------------------------------


def test_definitions_keep_exact_source_spans_and_hashes(
    store: Store, write_tree: WriteTree
) -> None:
    text = "import torch\n\n\nclass A:\n    x = 1  # keep me\n\n\ndef f():\n    return 2\n"
    copy = "import torch\n\nclass A :\n    x=1\n\ndef f():\n    return (2)\n"
    root = write_tree({"one.py": text, "two.py": copy, "three.py": "def f():\n    return 3\n"})
    index_path(store, root)
    defs = definitions(store)
    a = defs["one.A"]
    assert (a["kind"], a["lineno"], a["end_lineno"]) == ("class", 4, 5)
    assert a["source"].lstrip("\n") == "class A:\n    x = 1  # keep me\n"
    f = defs["one.f"]
    assert (f["kind"], f["lineno"], f["end_lineno"]) == ("function", 8, 9)
    assert f["source"].lstrip("\n") == "def f():\n    return 2\n"
    assert defs["one.A"]["hash"] == defs["two.A"]["hash"]
    assert defs["one.f"]["hash"] == defs["two.f"]["hash"]
    assert defs["one.f"]["hash"] != defs["three.f"]["hash"]


def test_imports_are_stored_with_resolved_targets(store: Store, write_tree: WriteTree) -> None:
    root = write_tree(
        {
            "__init__.py": "",
            "x.py": "y = 1\n",
            "sub/__init__.py": "from ..x import y as z\n",
            "sub/mod.py": "from ..x import y as z\nfrom . import sibling\n"
                          "import torch.nn.functional as F\n",
            "sub/sibling.py": "",
        },
        root="pkg",
    )
    index_path(store, root)
    rows = store._rows("SELECT module, local_name, target_module, target_name, level FROM imports")
    got = {
        (r["module"], r["local_name"], r["target_module"], r["target_name"], r["level"])
        for r in rows
    }
    assert got == {
        ("pkg.sub", "z", "pkg.x", "y", 2),
        ("pkg.sub.mod", "z", "pkg.x", "y", 2),
        ("pkg.sub.mod", "sibling", "pkg.sub", "sibling", 1),
        ("pkg.sub.mod", "F", "torch.nn.functional", None, 0),
    }


# -- blocks ---------------------------------------------------------------------------------

SPELLINGS = {
    "__init__.py": "",
    "a.py": textwrap.dedent(
        """\
        from abc import ABC, abstractmethod

        import torch
        import torch.nn as tnn
        from torch import nn
        from torch.nn import Module as M


        class ViaNn(nn.Module):
            def forward(self, x):
                return x


        class ViaTorch(torch.nn.Module):
            def forward(self, x):
                return x


        class ViaAlias(M):
            def forward(self, x):
                return x


        class ViaTnn(tnn.Module):
            def forward(self, x):
                return x


        class Stack(nn.Sequential):
            def __init__(self, dim):
                super().__init__(nn.Linear(dim, dim), nn.ReLU())


        class NoForward(nn.Module):
            def __init__(self):
                super().__init__()


        class Abstract(nn.Module, ABC):
            @abstractmethod
            def forward(self, x): ...


        class AbstractMethodOnly(nn.Module):
            @abstractmethod
            def forward(self, x): ...


        class Base(nn.Module):
            def forward(self, x):
                return x


        class Plain:
            def forward(self, x):
                return x


        def forward(x):
            return x
        """
    ),
    "b.py": textwrap.dedent(
        """\
        from pkg.a import NoForward

        from .a import Abstract, Base


        class Child(Base):
            pass


        class GrandChild(Child):
            pass


        class FilledIn(NoForward):
            def forward(self, x):
                return x


        class Concrete(Abstract):
            def forward(self, x):
                return x
        """
    ),
    "c.py": textwrap.dedent(
        """\
        from . import a
        from .b import GrandChild as GC


        class ViaModuleAttribute(a.Base):
            pass


        class ViaAliasedChild(GC):
            pass


        class StillNoForward(a.NoForward):
            pass
        """
    ),
}


def test_block_marking_for_every_spelling(store: Store, write_tree: WriteTree) -> None:
    root = write_tree(SPELLINGS, root="pkg")
    report = index_path(store, root)
    expected = {
        "pkg.a.ViaNn",
        "pkg.a.ViaTorch",
        "pkg.a.ViaAlias",
        "pkg.a.ViaTnn",
        "pkg.a.Stack",
        "pkg.a.Base",
        "pkg.b.Child",
        "pkg.b.GrandChild",
        "pkg.b.FilledIn",
        "pkg.b.Concrete",
        "pkg.c.ViaModuleAttribute",
        "pkg.c.ViaAliasedChild",
    }
    assert blocks(store) == expected
    assert report.blocks == len(expected)
    not_blocks = {
        "pkg.a.NoForward",
        "pkg.a.Abstract",
        "pkg.a.AbstractMethodOnly",
        "pkg.a.Plain",
        "pkg.a.forward",
        "pkg.c.StillNoForward",
    }
    assert not_blocks <= set(definitions(store))


def test_zoo_blocks(zoo_db: Path) -> None:
    with Store(zoo_db, create=False) as store:
        assert blocks(store) == {
            "zoo.layers.activations.HardSwish",
            "zoo.layers.attention.Attention",
            "zoo.layers.conv.ConvNormAct",
            "zoo.layers.conv.SqueezeExcite",
            "zoo.layers.mlp.Mlp",
            "zoo.models.resnet.BasicBlock",
            "zoo.models.resnet.ResNetTiny",
            "zoo.models.vit.Block",
            "zoo.models.vit.PatchEmbed",
            "zoo.models.vit.TinyViT",
        }
        assert store.packages()[0]["version"] == "0.1.0"
        assert_consistent(store)


def test_blocks_follow_a_base_class_that_changes(store: Store, write_tree: WriteTree) -> None:
    """Block flags are recomputed over the whole store when any file changes."""
    root = write_tree(
        {
            "base.py": "from torch import nn\n\nclass Base(nn.Module):\n    pass\n",
            "user.py": "from base import Base\n\nclass User(Base):\n    pass\n",
        }
    )
    index_path(store, root)
    assert blocks(store) == set()
    (root / "base.py").write_text(
        "from torch import nn\n\nclass Base(nn.Module):\n"
        "    def forward(self, x):\n        return x\n"
    )
    report = index_path(store, root)
    assert report.scanned == 1 and report.unchanged == 1
    assert blocks(store) == {"base.Base", "user.User"}


# -- incremental ----------------------------------------------------------------------------


@pytest.fixture
def scan_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Modules the scanner parsed (jobs=1 scans in this process)."""
    calls: list[str] = []
    real = indexer.scan_source

    def spy(text: str, module: str, is_package: bool = False):  # type: ignore[no-untyped-def]
        calls.append(module)
        return real(text, module, is_package)

    monkeypatch.setattr(indexer, "scan_source", spy)
    return calls


def test_incremental_reindex(store: Store, zoo_tree: Path, scan_calls: list[str]) -> None:
    first = index_path(store, zoo_tree)
    assert (first.scanned, first.unchanged, first.removed, first.failed) == (10, 0, 0, 0)
    assert len(scan_calls) == 10
    before = definitions(store)

    scan_calls.clear()
    again = index_path(store, zoo_tree)
    assert (again.scanned, again.unchanged, again.removed, again.failed) == (0, 10, 0, 0)
    assert scan_calls == []
    assert definitions(store).keys() == before.keys()
    assert (again.definitions, again.blocks) == (first.definitions, first.blocks)

    helpers = zoo_tree / "helpers.py"
    helpers.write_text(
        helpers.read_text().replace("def make_divisible", "def make_divisible_v2")
        + "\n\nNEW_CONSTANT = 3\n"
    )
    modified = index_path(store, zoo_tree)
    assert (modified.scanned, modified.unchanged, modified.removed) == (1, 9, 0)
    assert scan_calls == ["zoo.helpers"]
    defs = definitions(store)
    assert "zoo.helpers.make_divisible" not in defs
    assert {"zoo.helpers.make_divisible_v2", "zoo.helpers.NEW_CONSTANT"} <= set(defs)
    assert defs["zoo.models.vit.Block"]["id"] == before["zoo.models.vit.Block"]["id"]  # untouched

    (zoo_tree / "layers" / "mlp.py").unlink()
    deleted = index_path(store, zoo_tree)
    assert (deleted.scanned, deleted.unchanged, deleted.removed) == (0, 9, 1)
    assert "zoo.layers.mlp" not in modules(store)
    assert not [q for q in definitions(store) if q.startswith("zoo.layers.mlp.")]
    assert store._rows("SELECT * FROM files WHERE path LIKE '%mlp.py'") == []

    scan_calls.clear()
    (zoo_tree / "layers" / "gate.py").write_text(
        "from torch import nn\n\n\nclass Gate(nn.Module):\n"
        "    def forward(self, x):\n        return x.sigmoid() * x\n"
    )
    added = index_path(store, zoo_tree)
    assert (added.scanned, added.unchanged, added.removed) == (1, 9, 0)
    assert scan_calls == ["zoo.layers.gate"]
    assert "zoo.layers.gate.Gate" in blocks(store)
    assert_consistent(store)


BLOCK = ("from torch import nn\n\n\nclass Net(nn.Module):\n"
         "    def forward(self, x):\n        return x\n")


def test_only_named_files_are_added_and_nothing_else_removed(
    store: Store, write_tree: WriteTree, scan_calls: list[str]
) -> None:
    """Two folders write into one package (a shared index): indexing one folder's new file
    with ``only`` keeps the other folder's files and the first folder's unlisted ones."""
    h1 = write_tree({"__init__.py": "", "a.py": BLOCK, "stray.py": BLOCK}, "h1/trained")
    h2 = write_tree({"__init__.py": "", "b.py": BLOCK}, "h2/trained")
    index_path(store, h1, prefix="trained", package="trained", only=[h1 / "a.py"])
    assert blocks(store) == {"trained.a.Net"}  # stray.py was not named: not indexed
    scan_calls.clear()
    report = index_path(store, h2, prefix="trained", package="trained",
                        only=[h2 / "__init__.py", h2 / "b.py"])
    assert scan_calls == ["trained", "trained.b"] and report.removed == 0
    assert blocks(store) == {"trained.a.Net", "trained.b.Net"}
    assert_consistent(store)
    with pytest.raises(ScanError, match="is not under"):
        index_path(store, h2, prefix="trained", package="trained", only=[h1 / "a.py"])


def test_a_new_scanner_version_rescans_unchanged_files(
    store: Store, zoo_tree: Path, scan_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    index_path(store, zoo_tree)
    scan_calls.clear()
    monkeypatch.setattr(indexer, "SCANNER_VERSION", "test-next")
    upgraded = index_path(store, zoo_tree)
    assert (upgraded.scanned, upgraded.unchanged) == (10, 0)
    assert len(scan_calls) == 10
    scan_calls.clear()
    assert index_path(store, zoo_tree).unchanged == 10
    assert scan_calls == []


def test_file_that_breaks_and_recovers(store: Store, write_tree: WriteTree) -> None:
    root = write_tree({"a.py": "A = 1\n", "b.py": "B = 1\n"})
    index_path(store, root)
    (root / "a.py").write_text("def broken(:\n")
    broken = index_path(store, root)
    assert broken.failed == 1 and broken.problems[0].kind == "syntax_error"
    assert "a" not in modules(store) and "a.A" not in definitions(store)
    assert_consistent(store)

    still = index_path(store, root)  # unchanged but still broken: reported again, not rescanned
    assert still.failed == 1 and still.scanned == 0
    assert still.problems[0] == broken.problems[0]

    (root / "a.py").write_text("A = 2\n")
    fixed = index_path(store, root)
    assert (fixed.failed, fixed.scanned) == (0, 1)
    assert "a.A" in definitions(store)
    assert_consistent(store)


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_interrupted_index_is_consistent_and_completed_next_run(
    store: Store, zoo_tree: Path, monkeypatch: pytest.MonkeyPatch, exc_type: type[BaseException]
) -> None:
    monkeypatch.setattr(indexer, "_BATCH", 2)
    real = indexer.scan_source
    calls = 0

    def flaky(text: str, module: str, is_package: bool = False):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 6:
            raise exc_type("stop here")
        return real(text, module, is_package)

    monkeypatch.setattr(indexer, "scan_source", flaky)
    with pytest.raises(exc_type):
        index_path(store, zoo_tree)
    assert_consistent(store)
    saved = store._rows("SELECT count(*) AS n FROM files")[0]["n"]
    assert saved == 4  # two whole batches, nothing of the third
    assert store.get_meta("blocks_dirty") == "1"

    monkeypatch.setattr(indexer, "scan_source", real)
    report = index_path(store, zoo_tree)
    assert (report.scanned, report.unchanged, report.failed) == (6, 4, 0)
    assert_consistent(store)
    assert store.get_meta("blocks_dirty") == "0"
    assert report.blocks == 10 and len(blocks(store)) == 10


def test_parallel_scan_matches_serial(tmp_path: Path, write_tree: WriteTree) -> None:
    files = {
        f"m{i:03d}.py": f"import torch\n\nclass C{i}:\n    pass\n\nV{i} = {i}\n" for i in range(70)
    }
    root = write_tree(files)
    with Store(tmp_path / "serial.db") as serial, Store(tmp_path / "parallel.db") as parallel:
        a = index_path(serial, root, jobs=1)
        b = index_path(parallel, root, jobs=2)
        assert (a.scanned, a.definitions) == (b.scanned, b.definitions) == (70, 140)
        key = "SELECT qualname, hash, lineno, end_lineno FROM definitions ORDER BY qualname"
        assert serial._rows(key) == parallel._rows(key)


# -- bad files ------------------------------------------------------------------------------


def test_bad_files_are_reported_and_the_rest_indexed(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    (root / "sub").mkdir(parents=True)
    (root / "good.py").write_text("def ok():\n    return 1\n")
    (root / "syntax.py").write_text("x = 1\ndef f(:\n    pass\n")
    (root / "latin.py").write_bytes(b"# comment\n# another\nname = 'caf\xe9'\n")
    (root / "binary.py").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    (root / "big.py").write_bytes(b"x = 1\n" * 200_000)  # 1.2 MB
    (root / "sub" / "loop").symlink_to("..", target_is_directory=True)
    (root / "self.py").symlink_to("self.py")
    os.mkfifo(root / "fifo.py")
    report = index_path(store, root, max_bytes=1_000_000)
    kinds = {Path(p.path).name: p.kind for p in report.problems}
    assert kinds == {
        "syntax.py": "syntax_error",
        "latin.py": "decode_error",
        "binary.py": "binary",
        "big.py": "too_large",
        "loop": "symlink_loop",
        "self.py": "symlink_loop",
        "fifo.py": "unreadable",
    }
    syntax = next(p for p in report.problems if p.kind == "syntax_error")
    assert (syntax.line, syntax.column) == (2, 7)
    assert report.failed == 7 and report.scanned == 1
    assert "good.ok" in definitions(store)
    statuses = {
        Path(r["path"]).name: r["status"] for r in store._rows("SELECT path, status FROM files")
    }
    assert statuses["good.py"] == "ok" and statuses["syntax.py"] == "syntax_error"
    assert_consistent(store)


def test_non_utf8_file_name_is_skipped(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "names"
    root.mkdir()
    (root / "fine.py").write_text("A = 1\n")
    try:
        with open(os.path.join(os.fsencode(root), b"caf\xe9.py"), "wb") as fh:
            fh.write(b"B = 2\n")
    except OSError:  # pragma: no cover - a file system that insists on UTF-8 names
        pytest.skip("file system rejects non-UTF-8 names")
    report = index_path(store, root)
    assert report.scanned == 1 and report.failed == 1
    assert report.problems[0].kind == "unreadable" and "UTF-8" in report.problems[0].message
    report.problems[0].path.encode("utf-8")  # printable


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "perm"
    root.mkdir()
    (root / "secret.py").write_text("A = 1\n")
    (root / "secret.py").chmod(0)
    try:
        report = index_path(store, root)
    finally:
        (root / "secret.py").chmod(0o644)
    assert [p.kind for p in report.problems] == ["unreadable"]


# -- installed packages ---------------------------------------------------------------------


def test_locate_package_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    monkeypatch.delitem(sys.modules, "sqlite_utils.cli", raising=False)
    path, name = locate_package("sqlite_utils")
    spec = importlib.util.find_spec("sqlite_utils")
    assert spec is not None and spec.submodule_search_locations
    assert path == Path(next(iter(spec.submodule_search_locations)))
    assert name == "sqlite_utils"
    assert "sqlite_utils.cli" not in sys.modules
    with pytest.raises(ScanError, match="no installed package"):
        locate_package("surely_not_an_installed_package_xyz")


def test_package_version_from_source(tmp_path: Path) -> None:
    root = tmp_path / "notinstalledpkg"
    root.mkdir()
    (root / "__init__.py").write_text('__version__ = "1.2.3"\n')
    assert package_version(root, "notinstalledpkg") == "1.2.3"
    shutil.rmtree(root)
    root.mkdir()
    assert package_version(root, "notinstalledpkg") is None
