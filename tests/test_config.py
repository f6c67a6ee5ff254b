"""``NNRAG_*`` variables: read in ``nnrag/config.py`` only, each documented in
``docs/configuration.md``, and the sandbox's own copy of the path defaults agrees."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from nnrag import config
from nnrag.sandbox._fsview import private_paths

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nnrag"
DOCS = ROOT / "docs" / "configuration.md"
VARIABLE = re.compile(r"NNRAG_[A-Z0-9_]+")
#: Reads ``NNRAG_*`` from an environment mapping without importing nnrag.config: sandbox
#: modules deliberately import nothing of nnrag (``test_private_paths_agree_with_config``
#: keeps its defaults honest).
EXCEPTIONS = {"nnrag/sandbox/_fsview.py"}


def _variables_named_in(path: Path) -> set[str]:
    """String constants that are exactly a variable name (what any environment read needs:
    ``os.environ["X"]``, ``os.getenv("X")``, ``env.get("X")``), not prose or markers."""
    tree = ast.parse(path.read_text("utf-8"))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and VARIABLE.fullmatch(node.value)}


def _documented() -> list[str]:
    """The first column of the table in docs/configuration.md."""
    return re.findall(r"^\| `(NNRAG_[A-Z0-9_]+)` \|", DOCS.read_text("utf-8"), re.M)


def test_only_config_names_an_nnrag_variable() -> None:
    readers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel != "nnrag/config.py" and (names := _variables_named_in(path)):
            readers[rel] = names
    assert set(readers) == EXCEPTIONS, f"read NNRAG_* through nnrag.config instead: {readers}"
    assert set().union(*readers.values()) <= set(config.ENV_VARS)


def test_config_reads_exactly_the_documented_variables() -> None:
    assert _variables_named_in(PACKAGE / "config.py") == set(config.ENV_VARS)
    assert _documented() == list(config.ENV_VARS)


def test_each_variable_has_a_documented_reader() -> None:
    docs = [f.__doc__ or "" for name, f in vars(config).items()
            if callable(f) and not name.startswith("_") and f.__module__ == config.__name__]
    for variable in config.ENV_VARS:
        assert any(f"${variable}" in doc for doc in docs), variable


def test_empty_counts_as_unset_and_values_are_read_at_call_time(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for variable in config.ENV_VARS:
        monkeypatch.setenv(variable, "")
    assert config.nnrag_home() == tmp_path / ".nnrag"
    assert config.default_db_path() == tmp_path / ".nnrag" / "index.db"
    assert config.data_dir() is None and config.embed_model() is None
    assert config.cache_dir() == tmp_path / ".cache" / "nnrag"
    monkeypatch.setenv("NNRAG_HOME", "~/elsewhere")
    monkeypatch.setenv("NNRAG_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("NNRAG_EMBED_MODEL", "hashing-64")
    assert config.default_db_path() == tmp_path / "elsewhere" / "index.db"
    assert config.cache_dir() == tmp_path / "c" and config.embed_model() == "hashing-64"


def test_readers_use_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nnrag.search import get_embedder
    from nnrag.train.datasets import _search_dirs

    monkeypatch.setenv("NNRAG_EMBED_MODEL", "hashing-64")
    monkeypatch.setenv("NNRAG_DATA", str(tmp_path / "data"))
    assert get_embedder().dim == 64
    assert _search_dirs(None)[0] == tmp_path / "data"


@pytest.mark.parametrize("set_all", [False, True])
def test_private_paths_agree_with_config(set_all: bool, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """What the sandbox hides includes every place config says nnrag keeps state in."""
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    for variable in ("NNRAG_HOME", "NNRAG_DATA", "NNRAG_DB"):
        if set_all:
            monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
        else:
            monkeypatch.setenv(variable, "")
    covered = set(private_paths(os.environ))
    state = [config.nnrag_home(), config.data_dir(), config.default_db_path()]
    expected = {os.path.realpath(p) for p in state if p is not None}
    # An unset NNRAG_DB lives in NNRAG_HOME, which is covered.
    if not set_all:
        expected.discard(os.path.realpath(config.default_db_path()))
    assert expected and expected <= covered
