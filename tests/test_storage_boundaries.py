"""No SQL outside the stores: the index's and the run store's connections stay private.

Modules outside the store classes ask :class:`nnrag.index.Store` (or, for runs,
:class:`nnrag.train.RunStore`) a question by name; none touches a store's connection or its
raw-row helper. A module may still run SQL on a connection it opened itself (the concept
matcher's in-memory FTS5 table).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nnrag

PACKAGE = Path(nnrag.__file__).parent
# The store classes themselves: the only modules that may run SQL on a store's connection.
# ``_sqlite.py`` opens their connections (kind checks, error translation, ``nnrag doctor``).
STORES = {"index/_store.py", "index/_queries.py", "index/_search_tables.py", "train/runstore.py",
          "_sqlite.py"}
RAW = {"rows", "_rows", "conn", "_conn", "execute", "executemany"}


def raw_uses(source: str, name: str) -> list[str]:
    """``x.rows(...)``, ``x.conn``, ``x.execute(...)`` ... in ``source``, except on
    a connection the module opened itself (assigned from ``sqlite3.connect(...)``) and a
    class's own attributes (``self._rows`` of a cache is not the store's)."""
    tree = ast.parse(source)
    own = {ast.unparse(t) for node in ast.walk(tree) if isinstance(node, ast.Assign)
           and isinstance(node.value, ast.Call)
           and ast.unparse(node.value.func) == "sqlite3.connect"
           for t in node.targets}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in RAW:
            base = ast.unparse(node.value)
            if (base == "self" or ast.unparse(node) in own or base in own
                    or base.startswith("sqlite3.connect(")):
                continue
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_outside_the_stores_runs_sql_on_a_store() -> None:
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name not in STORES:
            uses += raw_uses(path.read_text(encoding="utf-8"), name)
    assert uses == [], "SQL on a store outside nnrag/index/_store* and nnrag/train/runstore.py"


def test_the_checker_sees_violations_and_allows_own_connections() -> None:
    bad = ("def f(store, runs):\n    return store.rows('SELECT 1'), runs.conn.execute('x')\n"
           "class C:\n    def g(self):\n        return self.store._rows('SELECT 1')\n")
    assert len(raw_uses(bad, "bad.py")) == 4  # .rows, .conn, .execute on it, store._rows
    own = ("import sqlite3\nclass M:\n    def __init__(self):\n"
           "        self.conn = sqlite3.connect(':memory:')\n        self.conn.execute('x')\n")
    assert raw_uses(own, "own.py") == []
