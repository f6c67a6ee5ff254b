"""Table-driven before/after tests of scope resolution and scope-closed emission.

Each case is a small package tree (the *before*) and the exact module body nnrag must
emit for one target (the *after*, provenance header excluded). The emitted body is also
executed to prove it is self-contained.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nnrag.exceptions import AmbiguousNameError, NameNotFoundError
from nnrag.extract import extract
from nnrag.index import Store, index_path


def build(tmp_path: Path, files: dict[str, str]) -> Store:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    for folder in {p.parent for p in root.rglob("*.py")} | {root}:
        (folder / "__init__.py").touch()
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    return store


def body(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if not line.startswith("#")).strip() + "\n"


CASES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "relative_import_and_module_constant",
        {
            "consts.py": "WIDTH = 4\nUNUSED = 5\n",
            "a.py": """
                from .consts import WIDTH

                def f():
                    return WIDTH
            """,
        },
        "pkg.a.f",
        """
        WIDTH = 4


        def f():
            return WIDTH
        """,
    ),
    (
        "reexport_through_init_and_alias_chain",
        {
            "impl/core.py": "def g():\n    return 1\n",
            "impl/__init__.py": "from .core import g as h\n",
            "api.py": "from .impl import h as k\n",
            "user.py": """
                from .api import k

                def f():
                    return k()
            """,
        },
        "pkg.user.f",
        """
        def g():
            return 1


        def f():
            return g()
        """,
    ),
    (
        "star_import",
        {
            "lib.py": "__all__ = ['one']\n\ndef one():\n    return 1\n\ndef two():\n    return 2\n",
            "user.py": """
                from .lib import *

                def f():
                    return one()
            """,
        },
        "pkg.user.f",
        """
        def one():
            return 1


        def f():
            return one()
        """,
    ),
    (
        "name_collision_renamed_deterministically",
        {
            "x.py": "def helper():\n    return 'x'\n",
            "y.py": "def helper():\n    return 'y'\n",
            "user.py": """
                from . import x
                from .y import helper

                def f():
                    return helper() + x.helper()
            """,
        },
        "pkg.user.f",
        """
        def helper_x():
            return 'x'


        def helper():
            return 'y'


        def f():
            return helper() + helper_x()
        """,
    ),
    (
        "decorator_and_base_class_in_another_module",
        {
            "deco.py": "REGISTRY = {}\n\ndef register(cls):\n"
                       "    REGISTRY[cls.__name__] = cls\n    return cls\n",
            "base.py": "class Base:\n    kind = 'base'\n",
            "user.py": """
                from .base import Base
                from .deco import register

                @register
                class Child(Base):
                    pass
            """,
        },
        "pkg.user.Child",
        """
        class Base:
            kind = 'base'


        REGISTRY = {}


        def register(cls):
            REGISTRY[cls.__name__] = cls
            return cls


        @register
        class Child(Base):
            pass
        """,
    ),
    (
        "self_contained_try_and_if_statements_are_kept_whole",
        {
            "user.py": """
                import os

                try:
                    from not_installed_pkg_xyz import fast_op
                    HAS_FAST = True
                except ImportError:
                    HAS_FAST = False

                if "FAST_FLAG" in os.environ:
                    FLAG = int(os.environ["FAST_FLAG"])
                else:
                    FLAG = 1

                def f(x):
                    return fast_op(x) if HAS_FAST and FLAG else x
            """,
        },
        "pkg.user.f",
        """
        import os


        try:
            from not_installed_pkg_xyz import fast_op
            HAS_FAST = True
        except ImportError:
            HAS_FAST = False


        if "FAST_FLAG" in os.environ:
            FLAG = int(os.environ["FAST_FLAG"])
        else:
            FLAG = 1


        def f(x):
            return fast_op(x) if HAS_FAST and FLAG else x
        """,
    ),
    (
        "import_error_fallback_with_in_tree_import_picks_in_tree_code",
        {
            "fast.py": "def op(x):\n    return x * 2\n",
            "user.py": """
                try:
                    from .fast import op
                except ImportError:
                    op = None

                try:
                    from not_installed_pkg_xyz import helper
                except ImportError:
                    from .fast import op as helper

                def f(x):
                    return helper(op(x))
            """,
        },
        "pkg.user.f",
        """
        def op(x):
            return x * 2


        def f(x):
            return op(op(x))
        """,
    ),
    (
        "type_checking_import_is_guarded_not_inlined",
        {
            "cfg.py": "class Config:\n    pass\n",
            "user.py": """
                from __future__ import annotations
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .cfg import Config
                    from collections import OrderedDict

                def f(c: Config, d: OrderedDict) -> int:
                    return 1
            """,
        },
        "pkg.user.f",
        """
        from __future__ import annotations


        def f(c: Config, d: OrderedDict) -> int:
            return 1
        """,
    ),
    (
        "legb_class_body_does_not_leak_into_methods",
        {
            "user.py": """
                scale = 2

                class C:
                    scale = 10
                    doubled = [scale for _ in range(1)]

                    def get(self):
                        return scale
            """,
        },
        "pkg.user.C",
        """
        scale = 2


        class C:
            scale = 10
            doubled = [scale for _ in range(1)]

            def get(self):
                return scale
        """,
    ),
    (
        "nested_function_comprehension_lambda_and_global",
        {
            "user.py": """
                import math as m
                counter = 0
                unused = 1

                def f(xs):
                    global counter
                    counter += 1
                    def inner(y):
                        return [m.sqrt(v) for v in y]
                    key = lambda v: -v
                    return sorted(inner(xs), key=key)
            """,
        },
        "pkg.user.f",
        """
        import math as m


        counter = 0


        def f(xs):
            global counter
            counter += 1
            def inner(y):
                return [m.sqrt(v) for v in y]
            key = lambda v: -v
            return sorted(inner(xs), key=key)
        """,
    ),
    (
        "class_attribute_and_default_argument_reference",
        {
            "defaults.py": "EPS = 1e-5\n\ndef act():\n    return 'relu'\n",
            "user.py": """
                from .defaults import EPS, act

                class Norm:
                    default_act = act

                    def __init__(self, eps=EPS):
                        self.eps = eps
            """,
        },
        "pkg.user.Norm",
        """
        EPS = 1e-5


        def act():
            return 'relu'


        class Norm:
            default_act = act

            def __init__(self, eps=EPS):
                self.eps = eps
        """,
    ),
    (
        "module_alias_attribute_chain_is_flattened",
        {
            "layers/conv.py": "def conv():\n    return 'conv'\n",
            "user.py": """
                from . import layers
                import pkg.layers.conv

                def f():
                    return layers.conv.conv() + pkg.layers.conv.conv()
            """,
        },
        "pkg.user.f",
        """
        def conv():
            return 'conv'


        def f():
            return conv() + conv()
        """,
    ),
    (
        "rebinding_a_name_keeps_the_earlier_binding",
        {
            "auto.py": """
                def update(cls):
                    cls.updated = True
                    return cls


                class Factory:
                    pass


                Factory = update(Factory)
                SIZES = [1]
                SIZES += [2]
            """,
            "user.py": """
                from .auto import Factory, SIZES

                def f():
                    return Factory(), SIZES
            """,
        },
        "pkg.user.f",
        """
        def update(cls):
            cls.updated = True
            return cls


        class Factory:
            pass


        Factory = update(Factory)


        SIZES = [1]


        SIZES += [2]


        def f():
            return Factory(), SIZES
        """,
    ),
    (
        "conditional_rebinding_keeps_the_default",
        {
            "ext.py": """
                import os


                def _has_ops():
                    return False


                if os.environ.get("NO_SUCH_FLAG_XYZ"):

                    def _has_ops():
                        return True
            """,
            "user.py": """
                from .ext import _has_ops

                def f():
                    return _has_ops()
            """,
        },
        "pkg.user.f",
        """
        import os


        def _has_ops():
            return False


        if os.environ.get("NO_SUCH_FLAG_XYZ"):

            def _has_ops():
                return True


        def f():
            return _has_ops()
        """,
    ),
    (
        "builtin_shadowed_by_module_global",
        {
            "user.py": """
                def print(*args):
                    return args

                def f():
                    return print(1) + len([1])
            """,
        },
        "pkg.user.f",
        """
        def print(*args):
            return args


        def f():
            return print(1) + len([1])
        """,
    ),
]


@pytest.mark.parametrize(("files", "target", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_before_after(tmp_path: Path, files: dict[str, str], target: str, expected: str) -> None:
    store = build(tmp_path, files)
    emitted = extract(store, target)
    assert body(emitted.code) == textwrap.dedent(expected).strip() + "\n"
    assert emitted.gaps == ()
    namespace: dict[str, object] = {}
    exec(compile(emitted.code, "<emitted>", "exec"), namespace)  # our own fixture code
    assert emitted.name in namespace


def test_name_missing_from_an_installed_in_tree_package_stays_an_import(tmp_path: Path) -> None:
    # Lazy packages (transformers' _LazyModule) expose names only at run time: when the
    # indexed tree is an installed package, an unresolvable name is imported from it.
    root = tmp_path / "email"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "user.py").write_text("from . import message_from_string\n\n"
                                  "def f(s):\n    return message_from_string(s)\n")
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    emitted = extract(store, "email.user.f")
    assert "from email import message_from_string" in emitted.code
    assert emitted.gaps == ()


def test_output_is_byte_identical_across_runs(tmp_path: Path) -> None:
    files = CASES[3][1]
    first = extract(build(tmp_path / "a", files), "pkg.user.f").code
    second = extract(build(tmp_path / "b", files), "pkg.user.f").code
    assert first == second


def test_ambiguous_simple_name_lists_candidates(tmp_path: Path) -> None:
    store = build(tmp_path, {"x.py": "def helper():\n    pass\n",
                             "y.py": "def helper():\n    pass\n"})
    with pytest.raises(AmbiguousNameError) as info:
        extract(store, "helper")
    assert info.value.candidates == ["pkg.x.helper", "pkg.y.helper"]
    assert "pkg.x.helper" in str(info.value)


def test_unknown_name(tmp_path: Path) -> None:
    store = build(tmp_path, {"x.py": "def helper():\n    pass\n"})
    with pytest.raises(NameNotFoundError):
        extract(store, "nothing_like_this")


def test_unresolvable_name_is_reported_as_gap(tmp_path: Path) -> None:
    store = build(tmp_path, {"x.py": "def f():\n    return missing_name\n"})
    emitted = extract(store, "pkg.x.f")
    assert any("missing_name" in gap for gap in emitted.gaps)
    assert "# unresolved:" in emitted.code


def test_local_import_from_the_tree_is_inlined(tmp_path: Path) -> None:
    # Once reported as a gap ("local import ... is not inlined"); see test_local_imports.py.
    store = build(tmp_path, {
        "helpers.py": "def double(x):\n    return 2 * x\n",
        "user.py": "def f(x):\n    from .helpers import double\n    import json\n"
                   "    return double(x)\n",
    })
    emitted = extract(store, "pkg.user.f")
    assert emitted.gaps == ()
    assert "from .helpers" not in emitted.code and "    import json\n" in emitted.code


def test_import_time_dependencies_come_first(tmp_path: Path) -> None:
    # f uses G only at run time; G's value needs f at import time: f must come first.
    store = build(tmp_path, {"m.py": "def f():\n    return G\n\nG = f\n\nclass C:\n    attr = G\n"})
    code = body(extract(store, "pkg.m.C").code)
    assert code.index("def f") < code.index("G = f") < code.index("class C")
    exec(compile(code, "<emitted>", "exec"), {})
