"""Literal sites: numbering shared by instrumentation and rewriting, and their context."""

from __future__ import annotations

import pytest

from nnrag.mutate import MutationSourceError, collect_sites, instrument, rewrite_sites

SOURCE = '''HIDDEN, LAYERS = 64, 2
def make(width=32):
    return [range(3), Conv2d(1, width, kernel_size=5), int(width * 0.5)]
'''


def test_sites_know_their_names_and_calls() -> None:
    got = [(s.text, s.call, s.name) for s in collect_sites(SOURCE)]
    assert got == [("64", "", "HIDDEN"), ("2", "", "LAYERS"), ("32", "", "width"),
                   ("3", "range", ""), ("1", "Conv2d", ""), ("5", "Conv2d", "kernel_size"),
                   ("0.5", "int", "")]


def test_instrumentation_keeps_lines_and_numbers_sites_alike() -> None:
    inst = instrument(SOURCE)
    assert len(inst.splitlines()) == len(SOURCE.splitlines())
    assert "__nnrag_site__(64, 0)" in inst and "__nnrag_site__(0.5, 6)" in inst
    assert "__nnrag_int__(width" in inst  # int() keeps the tag


@pytest.mark.parametrize(("values", "expected_line"), [
    ({0: 96}, "HIDDEN, LAYERS = 96, 2"),
    ({1: 3}, "HIDDEN, LAYERS = 64, 3"),
    ({6: 0.25}, "    return [range(3), Conv2d(1, width, kernel_size=5), int(width * 0.25)]"),
])
def test_rewrite_changes_only_the_named_literal(values: dict[int, float],
                                                expected_line: str) -> None:
    after = rewrite_sites(SOURCE, values)
    assert expected_line in after.splitlines()
    assert sum(a != b for a, b in zip(after.splitlines(), SOURCE.splitlines(), strict=True)) == 1


def test_rewrite_errors_are_clear() -> None:
    with pytest.raises(MutationSourceError, match="no literal site numbered"):
        rewrite_sites(SOURCE, {99: 1})
    with pytest.raises(MutationSourceError, match="does not parse: line 1"):
        rewrite_sites("def (:\n", {0: 1})
