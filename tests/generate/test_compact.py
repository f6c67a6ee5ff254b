"""References are compacted for the prompt: same model, fewer tokens, forward right after
__init__."""

from __future__ import annotations

import ast

import pytest

from nnrag.examples import CORPUS
from nnrag.generate.compact import (
    TRUNCATION_MARK,
    cap_lines,
    compact_code,
    drop_methods,
    forward_first,
)
from nnrag.generate.references import corpus_references

REFERENCE = '''"""A module docstring that a small model would copy."""

import torch
from torch import nn  # the usual


def supported_hyperparameters():
    """Names read from prm."""
    return {"lr", "momentum"}


class Block(nn.Module):
    """Only a docstring."""


class Net(nn.Module):
    """The model."""

    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        # a comment line
        self.device = device
        self.fc = nn.Linear(in_shape[1], out_shape[0])
        self.tag = "# not a comment"

    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"])

    def learn(self, train_data):
        for x, y in train_data:
            pass

    @torch.no_grad()
    def describe(self):
        return "net"

    def forward(self, x):
        """Logits."""
        return self.fc(x)
'''


def _methods(code: str, cls: str = "Net") -> list[str]:
    tree = ast.parse(code)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return [n.name for n in node.body if isinstance(n, ast.FunctionDef)]


def test_compact_drops_docstrings_comments_harness_methods_and_moves_forward() -> None:
    out = compact_code(REFERENCE)
    assert '"""' not in out and "# the usual" not in out and "# a comment line" not in out
    assert 'self.tag = "# not a comment"' in out  # strings are not comments
    # train_setup/learn: the harness has them
    assert _methods(out) == ["__init__", "forward", "describe"]
    assert "@torch.no_grad()\n    def describe" in out  # decorators move with their method
    assert "class Block(nn.Module):\n    pass" in out  # a docstring-only body stays valid
    assert "\n\n\n" not in out and "\n\nclass Net" in out
    assert len(out) < len(REFERENCE)


def test_forward_first_keeps_everything_else() -> None:
    out = forward_first(REFERENCE)
    assert _methods(out) == ["__init__", "forward", "train_setup", "learn", "describe"]
    assert sorted(out.splitlines()) == sorted(REFERENCE.rstrip("\n").splitlines())


def test_drop_methods_keeps_a_class_that_would_be_empty() -> None:
    only = "class Net:\n    def learn(self):\n        pass\n"
    assert drop_methods(only) == only
    assert ("learn" not in drop_methods(REFERENCE)
            and "def learn" in drop_methods(REFERENCE, owner="Other"))


def test_unparseable_code_is_returned_unchanged() -> None:
    broken = "class Net(:\n    # comment\n"
    assert compact_code(broken) == broken and forward_first(broken) == broken


def test_cap_lines_marks_the_cut() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(10)) + "\n"
    assert cap_lines(code, 20) == code
    capped = cap_lines(code, 4)
    assert capped.splitlines()[:4] == code.splitlines()[:4] and TRUNCATION_MARK in capped


@pytest.mark.parametrize("kind", ["image", "signal"])
def test_every_corpus_reference_compacts_to_valid_shorter_code(kind: str) -> None:
    refs = corpus_references(kind, CORPUS)
    assert refs
    for ref in refs:
        assert ref.full_code is not None and len(ref.code) < len(ref.full_code)
        ast.parse(ref.code)
        assert "forward" in _methods(ref.code) and "learn" not in _methods(ref.code), ref.name
