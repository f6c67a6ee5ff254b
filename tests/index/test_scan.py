"""Unit tests of the single-file scanner (pure: no store, no torch)."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from nnrag.index import normalised_hash, scan_source
from nnrag.index._model import Definition, FileScan
from nnrag.index._scan import resolve_relative

SOURCE = textwrap.dedent(
    '''\
    """Module docstring."""
    from __future__ import annotations

    import os.path
    import torch.nn as tnn
    from torch.nn import Module as M
    from ..x import y as z
    from . import sibling
    from .sub.deep import *

    try:
        from .fast import thing
    except ImportError:
        thing = None

    if TYPE_CHECKING:
        from typing import Any

    __all__ = ["A", "f"]

    DIM: int = 3
    ANNOTATED_ONLY: int


    # a comment that belongs to A
    @decorator
    class A(tnn.Module):
        """A block."""

        def forward(self, x):
            return x  # identity


    def f(a, b):
        """Add."""
        return a + b
    '''
)


@pytest.fixture(scope="module")
def scan() -> FileScan:
    return scan_source(SOURCE, "pkg.sub.mod", is_package=False)


def by_name(scan: FileScan) -> dict[str, Definition]:
    return {d.name: d for d in scan.definitions}


def test_module_level_facts(scan: FileScan) -> None:
    assert scan.module == "pkg.sub.mod"
    assert scan.is_package is False
    assert scan.future_annotations is True
    assert scan.all_names == ("A", "f")
    assert scan.docstring == "Module docstring."
    assert scan.line_count == SOURCE.count("\n") + 1


def test_definitions_kinds_and_guards(scan: FileScan) -> None:
    defs = by_name(scan)
    assert set(defs) == {"thing", "__all__", "DIM", "A", "f"}  # a bare annotation binds nothing
    assert defs["A"].kind == "class"
    assert defs["f"].kind == "function"
    assert defs["DIM"].kind == "assign"
    assert defs["thing"].guard == "except"
    assert defs["A"].guard == ""
    assert defs["A"].bases == ("tnn.Module",)
    assert defs["A"].has_forward is True
    assert defs["A"].is_abstract is False
    assert defs["A"].docstring == "A block."
    assert defs["f"].docstring == "Add."
    order = [d.stmt_index for d in scan.definitions]
    assert order == sorted(order)


@pytest.mark.parametrize("name", ["A", "f", "DIM", "thing"])
def test_source_is_exact_and_spans_match(scan: FileScan, name: str) -> None:
    """The stored source is the file's own text: the span's lines, byte for byte.

    Blank lines and comment lines directly above a statement belong to it in LibCST and
    are kept in ``source`` (comments travel with the code); the span starts at the
    statement itself (its first decorator). A statement nested in ``try``/``if`` is stored
    dedented, as LibCST renders it.
    """
    d = by_name(scan)[name]
    lines = SOURCE.splitlines(keepends=True)
    span = textwrap.dedent("".join(lines[d.lineno - 1 : d.end_lineno]))
    assert d.source.endswith(span)
    prefix = d.source[: len(d.source) - len(span)]
    assert all(not line.strip() or line.lstrip().startswith("#") for line in prefix.splitlines())
    assert d.source in SOURCE


def test_class_span_includes_decorator_and_comment(scan: FileScan) -> None:
    a = by_name(scan)["A"]
    lines = SOURCE.splitlines()
    assert lines[a.lineno - 1] == "@decorator"
    assert lines[a.end_lineno - 1].strip() == "return x  # identity"
    assert "# a comment that belongs to A" in a.source
    assert "# identity" in a.source


def test_imports_with_aliases_and_relative_targets(scan: FileScan) -> None:
    got = {(i.local_name, i.target_module, i.target_name, i.level, i.guard) for i in scan.imports}
    assert got == {
        ("os", "os.path", None, 0, ""),  # ``import a.b`` binds ``a`` but keeps the full path
        ("tnn", "torch.nn", None, 0, ""),
        ("M", "torch.nn", "Module", 0, ""),
        ("z", "pkg.x", "y", 2, ""),
        ("sibling", "pkg.sub", "sibling", 1, ""),
        ("*", "pkg.sub.sub.deep", "*", 1, ""),
        ("thing", "pkg.sub.fast", "thing", 1, "try"),
        ("Any", "typing", "Any", 0, "type_checking"),
    }
    lines = SOURCE.splitlines()
    for imp in scan.imports:
        assert "import" in lines[imp.lineno - 1]


def test_self_contained_try_and_if_are_kept_whole() -> None:
    source = textwrap.dedent(
        """\
        import os
        try:
            from apex import fused
            HAS_APEX = True
        except ImportError:
            HAS_APEX = False
        if "X" in os.environ:
            X = int(os.environ["X"])
        else:
            X = 1
        """
    )
    scan = scan_source(source, "pkg.mod")
    defs = [(d.name, d.kind, d.guard, d.lineno, d.end_lineno) for d in scan.definitions]
    assert defs == [
        ("fused", "import", "", 2, 6),
        ("HAS_APEX", "assign", "", 2, 6),
        ("HAS_APEX", "assign", "", 2, 6),
        ("X", "assign", "", 7, 10),
        ("X", "assign", "", 7, 10),
    ]
    assert (scan.definitions[0].source.startswith("try:")
            and "except ImportError" in scan.definitions[0].source)
    assert [i.local_name for i in scan.imports] == ["os"]  # the guarded import lives in the unit


def test_relative_imports_in_a_package_init() -> None:
    scan = scan_source(
        "from ..x import y as z\nfrom . import sibling\n", "pkg.sub", is_package=True
    )
    got = {(i.local_name, i.target_module, i.target_name) for i in scan.imports}
    assert got == {("z", "pkg.x", "y"), ("sibling", "pkg.sub", "sibling")}


@pytest.mark.parametrize(
    ("module", "is_package", "level", "target", "expected"),
    [
        ("a.b.c", False, 0, "torch.nn", "torch.nn"),
        ("a.b.c", False, 1, None, "a.b"),
        ("a.b.c", False, 1, "d", "a.b.d"),
        ("a.b.c", False, 2, "x", "a.x"),
        ("a.b", True, 1, "c", "a.b.c"),
        ("a.b", True, 2, "x", "a.x"),
        ("a.b.c", False, 3, "x", "x"),
        ("a", False, 3, "x", ""),  # climbs above the indexed root
    ],
)
def test_resolve_relative(
    module: str, is_package: bool, level: int, target: str | None, expected: str
) -> None:
    assert resolve_relative(module, is_package, level, target) == expected


def test_abstract_and_forward_detection() -> None:
    src = textwrap.dedent(
        """\
        import abc
        from abc import ABC, abstractmethod

        class WithAbstractMethod(nn.Module):
            @abstractmethod
            def forward(self, x): ...

        class FromABC(nn.Module, ABC):
            def forward(self, x):
                return x

        class WithMeta(nn.Module, metaclass=abc.ABCMeta):
            def forward(self, x):
                return x

        class ForwardAssigned(nn.Module):
            forward = other_forward

        class NoForward(nn.Module):
            def __init__(self):
                super().__init__()
        """
    )
    defs = by_name(scan_source(src, "m"))
    assert defs["WithAbstractMethod"].is_abstract
    assert defs["FromABC"].is_abstract
    assert defs["WithMeta"].is_abstract
    assert defs["ForwardAssigned"].has_forward and not defs["ForwardAssigned"].is_abstract
    assert not defs["NoForward"].has_forward


FORMATTED = textwrap.dedent(
    '''\
    class Gate(nn.Module):
        """Doc."""

        def forward(self, x):
            # squash
            return torch.sigmoid(x) * x
    '''
)
REFORMATTED = textwrap.dedent(
    """\
    # a different leading comment
    class Gate( nn.Module ) :
        'Doc.'
        def forward(self,x) :   # trailing comment
            return (torch.sigmoid( x )*x)
    """
)


def test_normalised_hash_ignores_comments_and_formatting() -> None:
    a = by_name(scan_source(FORMATTED, "one"))["Gate"]
    b = by_name(scan_source(REFORMATTED, "two"))["Gate"]
    assert a.source != b.source
    assert a.hash == b.hash
    assert a.hash == normalised_hash(FORMATTED)
    assert len(a.hash) == 40 and int(a.hash, 16) >= 0


def test_normalised_hash_differs_for_different_code() -> None:
    a = by_name(scan_source(FORMATTED, "one"))["Gate"]
    changed = FORMATTED.replace("sigmoid(x) * x", "sigmoid(x) + x")
    b = by_name(scan_source(changed, "two"))["Gate"]
    renamed = by_name(scan_source(FORMATTED.replace("Gate", "Gate2"), "two"))["Gate2"]
    assert len({a.hash, b.hash, renamed.hash}) == 3


def test_syntax_error_raises_libcst_error() -> None:
    with pytest.raises(cst.ParserSyntaxError):
        scan_source("def f(:\n    pass\n", "m")


def test_empty_and_bom_sources() -> None:
    assert scan_source("", "m").definitions == ()
    assert by_name(scan_source("\ufeffx = 1\n", "m"))["x"].kind == "assign"
