"""Auto-fixes, spec validation with clipping, structural checks, and splicing of indexed blocks."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnrag.generate.fixes import (
    Splice,
    fix_code,
    splice_blocks,
    structural_problem,
    supported_names,
)
from nnrag.generate.spec_fixes import build_spec, clip_value, spec_schema
from nnrag.train.spec import SpecError

GOOD = """import torch
from torch import nn


def supported_hyperparameters():
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc = nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], out_shape[0])

    def forward(self, x):
        return self.fc(x.flatten(1))
"""


def test_fix_code_adds_missing_imports_and_supported_hyperparameters() -> None:
    code = ("class Net(nn.Module):\n    def forward(self, x):\n"
            "        return F.relu(torch.flatten(x, 1)) * prm['alpha']\n")
    fixed, notes = fix_code(code)
    tree = ast.parse(fixed)
    assert ("import torch" in fixed and "from torch import nn" in fixed
            and "import torch.nn.functional as F" in fixed)
    assert supported_names(fixed) == {"alpha", "lr", "momentum"}
    assert any("added missing `import torch`" in n for n in notes)
    assert any("supported_hyperparameters" in n for n in notes)
    assert isinstance(tree.body[0], ast.Import)


def test_fix_code_is_deterministic_and_leaves_good_code_alone() -> None:
    assert fix_code(GOOD) == (GOOD, [])
    bad = "class Net(nn.Module):\n    pass\n"
    assert fix_code(bad) == fix_code(bad)  # same text every time: dedup hashes depend on it


def test_fix_code_keeps_future_imports_first() -> None:
    fixed, _ = fix_code("from __future__ import annotations\nx = torch.zeros(1)\n")
    assert fixed.splitlines()[0] == "from __future__ import annotations"
    ast.parse(fixed)


@pytest.mark.parametrize(("code", "problem"), [
    ("x = 1\n", "defines no top-level 'Net'"),
    ("class Net(:\n", "does not parse"),
    ("class Net:\n    def __init__(self, a, b, c, d): pass\n", "must subclass nn.Module"),
    ("class Net(nn.Module):\n    def forward(self, x): return x\n", "has no __init__"),
    ("class Net(nn.Module):\n    def __init__(self, num_classes): pass\n"
     "    def forward(self, x): return x\n",
     "the contract calls Net(in_shape, out_shape, prm, device)"),
    ("class Net(nn.Module):\n    def __init__(self, a, b, c, d): pass\n", "defines no forward"),
])
def test_structural_problems_are_diagnosed(code: str, problem: str) -> None:
    assert problem in (structural_problem(code) or "")


def test_structural_check_accepts_the_contract() -> None:
    assert structural_problem(GOOD) is None
    assert structural_problem("class Net(Base):\n    def __init__(self, *args): pass\n") is None


@pytest.mark.parametrize(("name", "value", "expected", "clipped"), [
    ("lr", 0.05, 0.05, False), ("lr", 0, 0.0001, True), ("lr", -3, 0.0001, True),
    ("lr", 50, 10, True),
    ("momentum", 1.0, 0.99, True), ("momentum", 0.5, 0.5, False), ("batch_size", 0, 1, True),
    ("batch_size", "32", 32, False), ("dropout", 1.2, 0.99, True), ("weight_decay", -1, 0, True),
])
def test_clip_value(name: str, value: object, expected: float, clipped: bool) -> None:
    got, note = clip_value(name, value)
    assert got == pytest.approx(expected)
    assert (note is not None) == clipped


def test_build_spec_fixes_aliases_clips_and_overrides_the_task() -> None:
    data = {"hyperparameters": {"learning_rate": 20, "batch_size": "16", "optimizer": "Adam",
                                "alpha": 3, "unknown": 1},
            "dataset": "mnist", "epochs": 9}
    spec, notes = build_spec(data, code=GOOD, name="g", dataset="digits", epochs=1, seed=3,
                             supported={"alpha", "lr"})
    hp = spec.hyperparameters
    assert (hp.lr, hp.batch_size, hp.optimizer, hp.extra) == (10, 16, "adam", {"alpha": 3})
    assert spec.dataset == "digits" and spec.budget.epochs == 1 and spec.seed == 3
    joined = "\n".join(notes)
    for fragment in ("'learning_rate' renamed to 'lr'", "lr 20 out of range: clipped to 10",
                     "'dataset' ignored", "'epochs' ignored", "'unknown' dropped"):
        assert fragment in joined


def test_build_spec_accepts_a_flat_mapping() -> None:
    spec, _ = build_spec({"lr": 0.1, "momentum": 0.8}, code=GOOD, name="g", dataset="digits",
                         epochs=2, seed=0)
    assert (spec.hyperparameters.lr, spec.hyperparameters.momentum,
            spec.budget.epochs) == (0.1, 0.8, 2)


@pytest.mark.parametrize(("data", "message"), [
    ({"hyperparameters": {"lr": "fast"}}, "hyperparameters.lr"),
    ({"hyperparameters": {"lr": 0.1, "optimizer": "lion"}}, "hyperparameters.optimizer"),
    ({"hyperparameters": [1, 2]}, "must be a mapping"),
    ({"hyperparameters": {"lr": 0.1}, "colour": "red"}, "unknown spec fields: colour"),
    (None, "no spec"),
])
def test_build_spec_rejects_what_cannot_be_fixed(data: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_spec(data, code=GOOD, name="g", dataset="digits", epochs=1, seed=0)  # type: ignore[arg-type]


def test_spec_schema_is_json_schema_with_bounds() -> None:
    schema = spec_schema()
    json.dumps(schema)
    hp = schema["properties"]["hyperparameters"]
    assert hp["additionalProperties"] is False
    assert hp["properties"]["lr"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 10}
    assert hp["properties"]["optimizer"]["enum"] == ["sgd", "adam", "adamw"]
    assert hp["properties"]["batch_size"]["type"] == "integer"


def test_splice_prepends_scope_closed_blocks_used_by_name(zoo_db: Path) -> None:
    from nnrag.extract import extract
    from nnrag.index import Store

    with Store(zoo_db, create=False) as store:
        emitted = extract(store, "zoo.layers.conv.SqueezeExcite")
    blocks = {"SqueezeExcite": Splice("SqueezeExcite", emitted.qualname, emitted.code)}
    code = ("from zoo.layers.conv import SqueezeExcite\n" + GOOD.replace(
        "self.fc = nn.Linear", "self.se = SqueezeExcite(in_shape[1])\n        self.fc = nn.Linear"))
    spliced, names = splice_blocks(code, blocks)
    assert names == ["zoo.layers.conv.SqueezeExcite"]
    assert "from zoo.layers.conv import" not in spliced  # the hallucinated import is gone
    tree = ast.parse(spliced)
    defined = [n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)]
    assert defined.index("SqueezeExcite") < defined.index("Net")
    assert "make_divisible" in defined  # the block's own dependency came with it
    assert splice_blocks(GOOD, blocks) == (GOOD, [])  # not used: nothing spliced


@pytest.mark.parametrize(("signature", "expected"), [
    ("self, in_shape, out_shape, prm", "self, in_shape, out_shape, prm, device=None"),
    ("self, in_shape: tuple, out_shape: tuple",
     "self, in_shape: tuple, out_shape: tuple, prm=None, device=None"),
    ("self, in_shape, out_shape=(10,)", "self, in_shape, out_shape=(10,), prm=None, device=None"),
])
def test_a_prefix_of_the_contract_signature_is_completed(signature: str, expected: str) -> None:
    code = (f"class Net(nn.Module):\n    def __init__({signature}):\n        pass\n"
            "    def forward(self, x):\n        return x\n")
    fixed, notes = fix_code(code)
    assert f"def __init__({expected}):" in fixed and structural_problem(fixed) is None
    assert any("Net.__init__ lacked" in n for n in notes)


@pytest.mark.parametrize("signature", ["self, num_classes",
                                       "self, in_shape, out_shape, prm, device", "self, *args"])
def test_other_signatures_are_left_to_the_structural_check(signature: str) -> None:
    code = (f"class Net(nn.Module):\n    def __init__({signature}):\n        pass\n"
            "    def forward(self, x):\n        return x\n")
    fixed, notes = fix_code(code)
    assert f"def __init__({signature}):" in fixed and not any("lacked" in n for n in notes)


# -- copying a reference's module-level definitions ------------------------------------

REF_A = '''import math

import torch
from torch import nn

INPUT_KINDS = {"image", "signal"}
HIDDEN = (256, 128)
WIDTH: int = 32


def scaled(c):
    return int(math.ceil(c * WIDTH / 32))


def supported_hyperparameters():
    return {"lr"}


class Net(nn.Module):
    pass
'''
REF_B = "HIDDEN = 64\nLAYERS, BIDIRECTIONAL = 1, True\n"
USES = ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        {body}\n")


@pytest.mark.parametrize(("body", "copied", "lines"), [
    # the first reference that defines a name wins (on a tie)
    ("self.h = HIDDEN", ["copied HIDDEN from reference a"], ["HIDDEN = (256, 128)"]),
    # constants that belong together come from the reference defining most of them
    ("self.h = (HIDDEN, LAYERS)", ["copied HIDDEN, LAYERS from reference b"],
     ["HIDDEN = 64", "LAYERS, BIDIRECTIONAL = 1, True"]),
    # names from two references, one note each
    ("self.h = (WIDTH, LAYERS)",
     ["copied WIDTH from reference a", "copied LAYERS from reference b"],
     ["WIDTH: int = 32", "LAYERS, BIDIRECTIONAL = 1, True"]),
    # a helper comes with what it needs from its own module (constant and import)
    ("self.c = scaled(16)", ["copied scaled, WIDTH, math from reference a"],
     ["import math", "WIDTH: int = 32", "def scaled(c):"]),
    # names the code binds itself, and Net / supported_hyperparameters, are never copied
    ("HIDDEN = 3; self.h = HIDDEN + supported_hyperparameters()", [], []),
    # a name no reference defines stays unbound (the sandbox will say so)
    ("self.h = UNKNOWN", [], []),
])
def test_reference_definitions_are_copied(body: str, copied: list[str], lines: list[str]) -> None:
    from nnrag.generate.fixes import copy_reference_definitions, unbound_names

    code = USES.format(body=body)
    fixed, notes = copy_reference_definitions(code, [("a", REF_A), ("b", REF_B)])
    assert notes == copied
    for line in lines:
        assert line in fixed.splitlines()
    if not copied:
        assert fixed == code
        return
    assert fixed.index("class Net") > max(fixed.index(line) for line in lines)  # defined before use
    assert unbound_names(fixed) == set()
    # idempotent
    assert copy_reference_definitions(fixed, [("a", REF_A), ("b", REF_B)]) == (fixed, [])


_CONSTANTS = {"HIDDEN": "(256, 128)", "WIDTH": "32", "DEPTH": "4", "KINDS": '{"image"}',
              "RATE": "0.5"}


@settings(max_examples=60, deadline=None)
@given(defined=st.sets(st.sampled_from(sorted(_CONSTANTS))),
       used=st.sets(st.sampled_from(sorted(_CONSTANTS)), min_size=1),
       own=st.sets(st.sampled_from(sorted(_CONSTANTS))))
def test_copying_binds_exactly_the_defined_missing_names(defined: set[str], used: set[str],
                                                         own: set[str]) -> None:
    """Whatever the references define and the code uses or binds itself: the result parses,
    every used name a reference defines is bound, nothing else is added, and a second pass
    changes nothing."""
    from nnrag.generate.fixes import copy_reference_definitions, unbound_names

    ref = "".join(f"{n} = {_CONSTANTS[n]}\n" for n in sorted(defined))
    own_lines = "".join(f"{n} = 1\n" for n in sorted(own))
    code = ("import torch\n" + own_lines + "\n\nclass Net:\n    x = (" + ", ".join(sorted(used))
            + ",)\n")
    fixed, notes = copy_reference_definitions(code, [("ref", ref)])
    ast.parse(fixed)
    assert unbound_names(fixed) == used - own - defined
    copied = (used - own) & defined
    assert bool(notes) == bool(copied)
    for name in copied:
        assert f"{name} = {_CONSTANTS[name]}" in fixed
    for name in defined - copied:
        assert f"{name} = {_CONSTANTS[name]}" not in fixed
    assert copy_reference_definitions(fixed, [("ref", ref)]) == (fixed, [])


_CNN = '''class CNN(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super(CNN, self).__init__()
        self.name = "CNN"
        self.fc = nn.Linear(in_shape[1], out_shape[0])

    def forward(self, x):
        return self.fc(x)


def build():
    return CNN((1, 8), (10,), {}, None)  # CNN
'''


@pytest.mark.parametrize(("code", "renamed"), [
    # the one class built like the contract: every use renamed, strings, comments and attributes not
    (_CNN + "x = other.CNN\n", True),
    # a signature prefix counts too (the next fix completes it)
    ("class SimpleNet(nn.Module):\n    def __init__(self, in_shape, out_shape):\n        pass\n"
     "    def forward(self, x):\n        return x\n", True),
    # a Net already exists: helpers with the same signature stay as they are
    (_CNN + "\n\nclass Net(CNN):\n    pass\n", False),
    # two candidates: ambiguous, left for the re-prompt
    (_CNN + "\n\nclass Other(nn.Module):\n"
     "    def __init__(self, in_shape, out_shape, prm, device):\n        pass\n", False),
    # a helper block is not the model
    ("class Block(nn.Module):\n    def __init__(self, channels, reduction):\n        pass\n",
     False),
])
def test_the_model_class_is_renamed_net(code: str, renamed: bool) -> None:
    from nnrag.generate.fixes import rename_model_class

    fixed, note = rename_model_class(code)
    if not renamed:
        assert (fixed, note) == (code, None)
        return
    old = code.split("class ", 1)[1].split("(", 1)[0]
    assert note == f"model class {old} renamed to Net (the contract builds Net)"
    tree = ast.parse(fixed)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert old not in names and "Net" in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    if old == "CNN":
        assert 'self.name = "CNN"' in fixed and "# CNN" in fixed and "other.CNN" in fixed
        assert "super(Net, self)" in fixed and "return Net((1, 8)" in fixed
    assert structural_problem(fix_code(code)[0]) is None


@pytest.mark.parametrize(("code", "problem"), [
    ("class Net(nn.Module):\n    def __init__(self, in_shape, out_shape, prm, device):\n"
     "        continue\n"
     "    def forward(self, x):\n        return x\n", "line 3: 'continue' not properly in loop"),
    ("class Net(nn.Module):\n    def __init__(self, in_shape, out_shape, prm, device):\n"
     "        pass\n"
     "    def forward(self, x):\n        return x\nreturn 1\n",
     "line 6: 'return' outside function"),
])
def test_what_only_the_compiler_rejects_is_structural(code: str, problem: str) -> None:
    """``ast.parse`` accepts these; without the compile step they reached the sandbox."""
    ast.parse(code)
    assert structural_problem(code) == problem


@settings(max_examples=60, deadline=None)
@given(name=st.from_regex(r"[A-Z][A-Za-z0-9_]{0,12}", fullmatch=True).filter(lambda n: n != "Net"),
       uses=st.integers(min_value=0, max_value=3))
def test_renaming_touches_only_the_model_class_name(name: str, uses: int) -> None:
    """Whatever the class is called and however often it is used: afterwards no name node
    spells it, every other name is unchanged, strings keep it, and a second pass is a no-op."""
    import keyword

    from nnrag.generate.fixes import rename_model_class

    if keyword.iskeyword(name):
        return
    code = _CNN.replace("CNN", name) + "".join(f"y{i} = {name}\n" for i in range(uses))
    fixed, note = rename_model_class(code)
    assert note is not None

    def names(src: str) -> list[str]:
        return [n.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Name)]

    assert [("Net" if n == name else n) for n in names(code)] == names(fixed)
    assert f'self.name = "{name}"' in fixed
    assert rename_model_class(fixed) == (fixed, None)
