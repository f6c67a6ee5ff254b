"""Before/after tables for imports inside function bodies (issue 15).

An emitted module has no parent package: a function-local ``from .consts import f`` must
become the emitted ``f`` (the import dropped), an import reaching an external object through
the tree must import it from its real source, and a direct import of an installed package
must stay a working import. Every emitted body is executed, and the target called, to prove
the function-local code runs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnrag.extract import extract
from tests.extract.test_resolver import body, build

HELPERS = "def double(x):\n    return 2 * x\n"

# (id, files, target, expected emitted body, value of the target called with 3)
CASES: list[tuple[str, dict[str, str], str, str, object]] = [
    (
        "relative_local_import_is_inlined",
        {"helpers.py": HELPERS,
         "user.py": "def f(x):\n    from .helpers import double\n    return double(x)\n"},
        "pkg.user.f",
        """
        def double(x):
            return 2 * x


        def f(x):
            return double(x)
        """,
        6,
    ),
    (
        "alias_renamed_to_the_emitted_name",
        {"helpers.py": HELPERS,
         "user.py": "def f(x):\n    from .helpers import double as dbl\n    return dbl(x)\n"},
        "pkg.user.f",
        """
        def double(x):
            return 2 * x


        def f(x):
            return double(x)
        """,
        6,
    ),
    (
        "name_already_in_the_closure_is_emitted_once",
        {"helpers.py": HELPERS,
         "user.py": """
             from .helpers import double

             def g(x):
                 return double(x)

             def f(x):
                 from .helpers import double
                 return double(g(x))
         """},
        "pkg.user.f",
        """
        def double(x):
            return 2 * x


        def g(x):
            return double(x)


        def f(x):
            return double(g(x))
        """,
        12,
    ),
    (
        "module_import_and_attribute_chain",
        {"helpers.py": HELPERS,
         "user.py": "def f(x):\n    from . import helpers\n    return helpers.double(x)\n"},
        "pkg.user.f",
        """
        def double(x):
            return 2 * x


        def f(x):
            return double(x)
        """,
        6,
    ),
    (
        "absolute_in_tree_import_in_a_method_and_a_nested_function",
        {"helpers.py": HELPERS,
         "user.py": """
             class F:
                 def __call__(self, x):
                     import pkg.helpers

                     def inner(y):
                         return pkg.helpers.double(y)
                     return inner(x)
         """},
        "pkg.user.F",
        """
        def double(x):
            return 2 * x


        class F:
            def __call__(self, x):

                def inner(y):
                    return double(y)
                return inner(x)
        """,
        6,
    ),
    (
        "local_import_colliding_with_a_module_level_name",
        {"a.py": "def helper(x):\n    return x + 1\n",
         "b.py": "def helper(x):\n    return x * 10\n",
         "user.py": """
             from .a import helper

             def f(x):
                 from .b import helper as h2

                 def g(y):
                     from .b import helper
                     return helper(y)
                 return helper(x) + h2(x) + g(x)
         """},
        "pkg.user.f",
        """
        def helper_a(x):
            return x + 1


        def helper(x):
            return x * 10


        def f(x):

            def g(y):
                return helper(y)
            return helper_a(x) + helper(x) + g(x)
        """,
        64,
    ),
    (
        "installed_packages_stay_local_imports",
        {"user.py": """
             def f(x):
                 import os.path as osp
                 from json import dumps
                 return len(dumps(osp.basename("a/bc"))) + x
         """},
        "pkg.user.f",
        """
        def f(x):
            import os.path as osp
            from json import dumps
            return len(dumps(osp.basename("a/bc"))) + x
        """,
        7,
    ),
    (
        "external_reached_through_the_tree_is_imported_from_its_source",
        {"helpers.py": "import math as m\n" + HELPERS,
         "user.py": """
             def f(x):
                 from .helpers import double, m
                 return double(m.floor(x + 0.5))
         """},
        "pkg.user.f",
        """
        import math as m


        def double(x):
            return 2 * x


        def f(x):
            return double(m.floor(x + 0.5))
        """,
        6,
    ),
    (
        "only_inlined_aliases_leave_a_mixed_import",
        {"helpers.py": "import math\n" + HELPERS,
         "user.py": """
             def f(x):
                 from math import floor, pi
                 from .helpers import double
                 return double(floor(x + pi - pi))
         """},
        "pkg.user.f",
        """
        def double(x):
            return 2 * x


        def f(x):
            from math import floor, pi
            return double(floor(x + pi - pi))
        """,
        6,
    ),
]


@pytest.mark.parametrize(("files", "target", "expected", "value"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_before_after(tmp_path: Path, files: dict[str, str], target: str, expected: str,
                      value: object) -> None:
    store = build(tmp_path, files)
    emitted = extract(store, target)
    assert body(emitted.code) == textwrap.dedent(expected).strip() + "\n"
    assert emitted.gaps == ()
    namespace: dict[str, object] = {"__name__": "standalone"}  # no parent package
    exec(compile(emitted.code, "<emitted>", "exec"), namespace)  # our own fixture code
    made = namespace[emitted.name]
    result = made()(3) if isinstance(made, type) else made(3)  # type: ignore[operator]
    assert result == value


def test_import_with_a_fallback_binding_is_kept_absolute_and_reported(tmp_path: Path) -> None:
    # ``except ImportError: double = None`` also binds the name: dropping the import would
    # change what the function does, so it stays, made absolute, and is listed as a gap.
    store = build(tmp_path, {
        "helpers.py": HELPERS,
        "user.py": "def f(x):\n    try:\n        from .helpers import double\n"
                   "    except ImportError:\n        double = None\n    return double(x)\n",
    })
    emitted = extract(store, "pkg.user.f")
    assert "from pkg.helpers import double" in emitted.code
    assert "from .helpers" not in emitted.code
    assert emitted.gaps == ("pkg.user.f: local import from 'pkg.helpers' is not inlined",)


def test_relative_import_above_the_indexed_root_is_reported(tmp_path: Path) -> None:
    store = build(tmp_path, {"user.py": "def f():\n    from ... import far\n    return far\n"})
    emitted = extract(store, "pkg.user.f")
    assert "from ... import far" in emitted.code
    assert emitted.gaps == ("pkg.user.f: local import from '.' is not inlined",)


def test_one_import_per_name_and_object(tmp_path: Path) -> None:
    # Two modules bind ``nn`` to torch.nn in two spellings: the emitted module needs one.
    store = build(tmp_path, {
        "a.py": "import torch.nn as nn\n\ndef width():\n    return nn.Identity\n",
        "b.py": "from torch import nn\nfrom .a import width\n\n"
                "class B(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.inner = width()()\n",
    })
    emitted = extract(store, "pkg.b.B")
    assert emitted.imports == ("from torch import nn",)
    assert body(emitted.code).count("nn\n") == 1


def test_submodule_imports_binding_one_name_are_all_kept(tmp_path: Path) -> None:
    # ``import os.path`` and ``import os`` both bind ``os``; the former also loads a
    # submodule, so it is the one kept (and suffices).
    store = build(tmp_path, {
        "a.py": "import os.path\n\ndef g():\n    return os.path.sep\n",
        "b.py": "import os\nfrom .a import g\n\ndef f():\n    return os.sep + g()\n",
    })
    assert extract(store, "pkg.b.f").imports == ("import os.path",)


LIB_NAMES = ("double", "half", "scale")  # lib.<name>(x) returns x + its index here


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(imported=st.lists(st.sampled_from(LIB_NAMES), min_size=1, max_size=3, unique=True),
       alias=st.booleans(), level=st.sampled_from([0, 1]), nested=st.booleans())
def test_emitted_module_runs_standalone(tmp_path_factory: pytest.TempPathFactory,
                                        imported: list[str], alias: bool, level: int,
                                        nested: bool) -> None:
    """Property: whatever mix of local imports (aliases, relative or absolute, in a nested
    function), the emitted module compiles, runs without its package, and has no gaps."""
    tmp = tmp_path_factory.mktemp("prop")
    source = "".join(f"def {n}(x):\n    return x + {i}\n\n" for i, n in enumerate(LIB_NAMES))
    local = {n: f"{n}_{i}" if alias else n for i, n in enumerate(imported)}
    names = ", ".join(f"{n} as {local[n]}" if alias else n for n in imported)
    module = ".lib" if level else "pkg.lib"
    calls = " + ".join(f"{local[n]}(x)" for n in imported)
    inner = f"    def inner(x):\n        return {calls}\n    return inner(x)\n" if nested \
        else f"    return {calls}\n"
    store = build(tmp, {"lib.py": source, "user.py": f"def f(x):\n    from {module} import "
                                                     f"{names}\n{inner}"})
    emitted = extract(store, "pkg.user.f")
    assert emitted.gaps == ()
    namespace: dict[str, object] = {"__name__": "standalone"}
    exec(compile(emitted.code, "<emitted>", "exec"), namespace)
    assert namespace["f"](10) == sum(10 + LIB_NAMES.index(n) for n in imported)  # type: ignore[operator]
