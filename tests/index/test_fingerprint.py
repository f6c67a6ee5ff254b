"""Structural fingerprints: renamed/retuned/reformatted copies collide, real changes do not."""

from __future__ import annotations

import io
import keyword
import os
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnrag.index._fingerprint import fingerprint

BASE = textwrap.dedent(
    """
    class Mlp(nn.Module):
        expansion = 2

        def __init__(self, dim, hidden=None, drop=0.1):
            super().__init__()
            hidden = hidden or dim * self.expansion
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)
            self.drop = nn.Dropout(drop)
            self.register_buffer("scale", torch.ones(1))

        def forward(self, x):
            if x.ndim != 3:
                raise ValueError(f"expected 3-d input, got {x.ndim}")
            y = F.relu(self.fc1(x))
            y = self.drop(y)
            return self.fc2(y) * self.scale + self._skip(x, factor=0.5)

        def _skip(self, t, factor=1.0):
            return t * factor
    """
)

SAME = {
    "renamed class, params, locals and attributes": """
        class FeedForward(nn.Module):
            ratio = 2

            def __init__(self, d, h=None, p=0.1):
                super().__init__()
                h = h or d * self.ratio
                self.lin_in = nn.Linear(d, h)
                self.lin_out = nn.Linear(h, d)
                self.dropout = nn.Dropout(p)
                self.register_buffer("gain", torch.ones(1))

            def forward(self, inp):
                if inp.ndim != 3:
                    raise ValueError(f"expected 3-d input, got {inp.ndim}")
                z = F.relu(self.lin_in(inp))
                z = self.dropout(z)
                return self.lin_out(z) * self.gain + self._skip(inp, mult=0.5)

            def _skip(self, u, mult=1.0):
                return u * mult
        """,
    "changed numbers and messages": BASE.replace("expansion = 2", "expansion = 4")
    .replace("drop=0.1", "drop=0.0")
    .replace("torch.ones(1)", "torch.ones(7)")
    .replace("factor=0.5", "factor=2.0")
    .replace("expected 3-d input, got", "need a (B, N, C) tensor; got"),
    "reformatted, commented, documented and annotated": '''
        class Mlp(nn.Module):
            """An MLP, now with a docstring."""

            expansion: int = 2  # annotated class attribute

            def __init__(self, dim: int, hidden: int | None = None, drop: float = 0.1) -> None:
                super().__init__()
                hidden = hidden or dim * self.expansion   # odd spacing
                self.fc1 = nn.Linear(
                    dim,
                    hidden,
                )
                self.fc2 = nn.Linear(hidden, dim)
                self.drop = nn.Dropout(drop)
                self.register_buffer('scale', torch.ones(1))
                "a stray string statement"

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                # validate
                if x.ndim != 3:
                    raise ValueError(f"expected 3-d input, got {x.ndim}")
                y = F.relu(self.fc1(x))
                y = self.drop(y)
                return (self.fc2(y) * self.scale + self._skip(x, factor=0.5))

            def _skip(self, t: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
                return t * factor
        ''',
    "indented source": textwrap.indent(BASE, "    "),
}

DIFFERENT = {
    "F.relu -> F.gelu": BASE.replace("F.relu", "F.gelu"),
    "an extra layer": BASE.replace(
        "self.drop = nn.Dropout(drop)",
        "self.drop = nn.Dropout(drop)\n        self.norm = nn.LayerNorm(dim)"
    ).replace("y = self.drop(y)", "y = self.norm(self.drop(y))"),
    "no input check (control flow)": BASE.replace("if x.ndim != 3:", "while x.ndim != 3:"),
    "+ -> - between branches": BASE.replace("self.scale + self._skip", "self.scale - self._skip"),
    "another external class": BASE.replace("nn.Dropout(drop)", "nn.AlphaDropout(drop)"),
    "another base class": BASE.replace("class Mlp(nn.Module)", "class Mlp(nn.Sequential)"),
    "a renamed method (the interface)": BASE.replace("def forward(", "def forward_features("),
    "an external keyword": BASE.replace("nn.Linear(hidden, dim)",
                                        "nn.Linear(hidden, dim, bias=False)"),
    "an option string": BASE.replace("F.relu(self.fc1(x))", 'ACT2FN["relu"](self.fc1(x))')
    .replace("self.fc2(y) * self.scale", 'ACT2FN["relu"](self.fc2(y)) * self.scale'),
    "swapped operands": BASE.replace("nn.Linear(dim, hidden)", "nn.Linear(hidden, dim)"),
}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(SAME))
def test_copies_share_a_fingerprint(variant: str) -> None:
    assert fingerprint(textwrap.dedent(SAME[variant])) == fingerprint(BASE)


@pytest.mark.parametrize("variant", sorted(DIFFERENT))
def test_real_changes_change_the_fingerprint(variant: str) -> None:
    changed = DIFFERENT[variant]
    assert changed != BASE, "the replacement did not apply"
    assert fingerprint(changed) != fingerprint(BASE)


def test_option_strings_matter() -> None:
    a = 'class G(nn.Module):\n    def forward(self, x):\n        return ACT2FN["silu"](x)\n'
    assert fingerprint(a) != fingerprint(a.replace("silu", "sigmoid"))


def test_einsum_patterns_matter_but_prose_does_not() -> None:
    a = 'def f(q, k):\n    return torch.einsum("bhqd,bhkd->bhqk", q, k)\n'
    assert fingerprint(a) != fingerprint(a.replace("bhkd->bhqk", "bhkd->bhkq"))
    b = 'def g(x):\n    raise ValueError("something went wrong")\n'
    assert fingerprint(b) == fingerprint(b.replace("something went wrong", "bad input"))


def test_scopes_are_respected() -> None:
    """``g`` reads a global ``x`` that merely shares its name with ``f``'s local ``x``."""
    a = ("class A:\n    def f(self):\n        x = 1\n        return x\n\n"
         "    def g(self):\n        return x\n")
    renamed_local = a.replace("x = 1\n        return x", "y = 1\n        return y")
    assert fingerprint(renamed_local) == fingerprint(a)
    other_global = a.replace("def g(self):\n        return x", "def g(self):\n        return w")
    assert fingerprint(other_global) != fingerprint(a)  # external references are kept


def test_functions_and_assignments_are_fingerprinted_too() -> None:
    f = "def act(x, alpha=0.1):\n    return torch.where(x > 0, x, alpha * x)\n"
    assert fingerprint(f) == fingerprint(f.replace("act", "leaky").replace("alpha", "a"))
    assert fingerprint("Foo = partial(Bar, dim=3)\n") == fingerprint("Baz = partial(Bar, dim=4)\n")
    assert fingerprint("Foo = partial(Bar, dim=3)\n") != fingerprint("Foo = partial(Qux, dim=3)\n")


def test_unparsable_source_is_hashed_verbatim() -> None:
    assert fingerprint("class X(:") == fingerprint("class X(:")
    assert fingerprint("class X(:") != fingerprint("class Y(:")


HEX40 = re.compile(r"[0-9a-f]{40}")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_stable_sha1(source: str) -> None:
    first = fingerprint(source)
    assert HEX40.fullmatch(first)
    assert fingerprint(source) == first


# -- consistent renaming of local identifiers, property-tested
FIXTURES: list[tuple[str, tuple[str, ...]]] = [
    (BASE, ("Mlp", "dim", "hidden", "drop", "x", "y", "t", "factor", "fc1", "fc2", "expansion",
           "self")),
    (
        textwrap.dedent(
            """
            class WindowAttention(nn.Module):
                def __init__(self, dim, heads, window=7):
                    super().__init__()
                    self.heads = heads
                    self.qkv = nn.Linear(dim, dim * 3)
                    self.proj = nn.Linear(dim, dim)

                def forward(self, x, mask=None):
                    b, n, c = x.shape
                    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).unbind(2)
                    attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
                    if mask is not None:
                        attn = attn.masked_fill(mask, float("-inf"))
                    out = torch.stack([row.softmax(-1) for row in attn.unbind(0)])
                    helper = lambda z: z.flatten(2)
                    return self.proj(helper(out @ v))
            """
        ),
        ("WindowAttention", "dim", "heads", "window", "x", "mask", "b", "n", "c", "q", "k",
         "v", "attn", "out", "row", "helper", "z", "qkv", "proj"),
    ),
    (
        textwrap.dedent(
            """
            def drop_path(x, drop_prob=0.0, training=False):
                if drop_prob == 0.0 or not training:
                    return x
                keep = 1 - drop_prob
                dims = (x.shape[0],) + (1,) * (x.ndim - 1)
                try:
                    mask = x.new_empty(dims).bernoulli_(keep)
                except RuntimeError as err:
                    raise ValueError("cannot sample") from err
                return x * mask / keep
            """
        ),
        ("drop_path", "x", "drop_prob", "training", "keep", "dims", "mask", "err"),
    ),
]  # fmt: skip


def _rename_tokens(source: str, mapping: dict[str, str]) -> str:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    out = [
        (tok.type, mapping.get(tok.string, tok.string) if tok.type == tokenize.NAME else tok.string)
        for tok in tokens
    ]
    return tokenize.untokenize(out)


@st.composite
def _renaming(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    source, renamable = draw(st.sampled_from(FIXTURES))
    taken = {tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)}
    old = draw(st.lists(st.sampled_from(renamable), min_size=1, unique=True))
    fresh = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True).filter(
        lambda s: not keyword.iskeyword(s) and s not in taken
    )
    new = draw(st.lists(fresh, min_size=len(old), max_size=len(old), unique=True))
    return source, dict(zip(old, new, strict=True))


@settings(max_examples=120, deadline=None)
@given(_renaming())
def test_consistent_renaming_of_locals_keeps_the_fingerprint(
    case: tuple[str, dict[str, str]],
) -> None:
    source, mapping = case
    renamed = _rename_tokens(source, mapping)
    assert renamed != source
    assert fingerprint(renamed) == fingerprint(source)


def test_same_fingerprint_in_other_processes_and_hash_seeds() -> None:
    """Nothing run-dependent (``hash()``, ``id()``, set order) may reach the digest."""
    module = Path(__file__).parents[2] / "nnrag" / "index" / "_fingerprint.py"
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('fp', {str(module)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "print(mod.fingerprint(sys.stdin.read()))\n"
    )
    expected = fingerprint(BASE)
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], input=BASE, capture_output=True, text=True,
            env=env, check=True, timeout=60,
        )  # fmt: skip
        assert result.stdout.strip() == expected
