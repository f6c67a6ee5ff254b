"""Splicing: a model importing from a package that is not installed gets the definitions it
uses from an index of that package's source (here ``tests/fixtures/fakevision``, laid out
like torchvision: ``ops/__init__`` re-exports ``misc`` by a star import, ``misc``
star-imports ``_permute``, ``models`` re-exports ``tiny``)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnrag import open_workspace
from nnrag.exceptions import NnragError, SpliceError
from nnrag.extract import SpliceResult, splice, splice_all
from nnrag.index import Store, SymbolTable, index_path

MODEL = '''"""A model that uses a package that is not installed, in every import form."""
import torch
import torch.nn as nn
import fakevision
import fakevision.models as fm
from fakevision.ops import StochasticDepth as SD, Permute
from fakevision.ops.misc import ConvNormAct

DEFAULT_P = 0.25  # the spliced StochasticDepth's default is fakevision's DEFAULT_P (0.5)


def stochastic_depth(x):  # a name the spliced code also defines
    return x


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.stem = ConvNormAct(in_shape[1], 8)
        self.drop = SD(DEFAULT_P)
        self.perm = Permute([0, 1, 2, 3])
        self.body = fm.tiny_net(num_classes=out_shape[0], in_channels=8)
        self.extra = fakevision.ops.misc.StochasticDepth()

    def forward(self, x):
        return self.body(self.extra(self.drop(stochastic_depth(self.perm(self.stem(x))))))
'''

LOAD = '''
import importlib.util, json, sys
import torch
spec = importlib.util.spec_from_file_location("model", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
net = m.Net((2, 1, 8, 8), (10,), {}, "cpu").eval()
out = {"shape": list(net(torch.zeros(2, 1, 8, 8)).shape),
       "fakevision_importable": importlib.util.find_spec("fakevision") is not None}
'''
PROBE = '''
out.update(model_p=net.drop.p, extra_p=net.extra.p, model_helper=m.stochastic_depth(3))
'''


def run_model(code: str, tmp_path: Path, probe: str = "") -> dict[str, object]:
    """Import the module in a fresh interpreter (isolated: no test paths), build ``Net``,
    run a batch through it, and report ``out`` (with what ``probe`` adds)."""
    path = tmp_path / "spliced_model.py"
    path.write_text(code, encoding="utf-8")
    script = LOAD + probe + "print(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-I", "-c", script, str(path)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def imported_modules(code: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def do_splice(db: Path, code: str, **kw: bool) -> SpliceResult:
    with Store(db, create=False) as store:
        return splice(code, store, **kw)


def test_fakevision_is_not_installed() -> None:
    assert importlib.util.find_spec("fakevision") is None


def test_names_reexported_through_nested_star_imports_resolve(fakevision_db: Path) -> None:
    """``ops/__init__``: ``from .misc import *``; ``misc`` (no ``__all__``):
    ``from ._permute import *``: Permute is a name of ``fakevision.ops``."""
    with Store(fakevision_db, create=False) as store:
        table = SymbolTable(store)
    binding = table.resolve("fakevision.ops", "Permute")
    assert (binding.kind, binding.qualname) == ("definition", "fakevision.ops._permute.Permute")
    assert table.resolve("fakevision.ops.misc", "Permute").kind == "definition"
    assert table.resolve("fakevision.models", "tiny_net").qualname == \
        "fakevision.models.tiny.tiny_net"


def test_every_import_form_is_spliced_and_the_model_runs(fakevision_db: Path,
                                                         tmp_path: Path) -> None:
    result = do_splice(fakevision_db, MODEL)
    assert result.complete and result.changed
    assert result.spliced == {
        "ConvNormAct": "fakevision.ops.misc.ConvNormAct",
        "Permute": "fakevision.ops._permute.Permute",
        "SD": "fakevision.ops.misc.StochasticDepth",
        "fakevision.ops.misc.StochasticDepth": "fakevision.ops.misc.StochasticDepth",
        "fm.tiny_net": "fakevision.models.tiny.tiny_net",
    }
    # the closure came along: helpers, the module constant, the model's dependencies
    assert {"fakevision.ops.misc.stochastic_depth", "fakevision.ops.misc._survival_rate",
            "fakevision.ops.misc.DEFAULT_P", "fakevision.models._utils._make_divisible",
            "fakevision.models.tiny.TinyNet"} <= set(result.definitions)
    assert len(result.removed_imports) == 5
    assert not any(m.split(".")[0] == "fakevision" for m in imported_modules(result.code))
    # the docstring stays first; the header says what came from where
    assert ast.get_docstring(ast.parse(result.code)) is not None
    assert "#   fm.tiny_net <- fakevision.models.tiny.tiny_net" in result.code
    # the model's own DEFAULT_P and stochastic_depth are untouched; fakevision's are renamed
    tree = ast.parse(result.code)
    top = [n.name if isinstance(n, ast.FunctionDef | ast.ClassDef) else
           ast.unparse(n.targets[0]) for n in tree.body if isinstance(
               n, ast.FunctionDef | ast.ClassDef | ast.Assign)]
    assert top.count("DEFAULT_P") == 1 and top.count("stochastic_depth") == 1
    assert len(top) == len(set(top))
    out = run_model(result.code, tmp_path, PROBE)
    assert out == {"shape": [2, 10], "model_p": 0.25, "extra_p": 0.5, "model_helper": 3,
                   "fakevision_importable": False}


def test_a_model_without_missing_imports_is_left_alone(fakevision_db: Path) -> None:
    code = "import torch\nfrom torch import nn\n\nX = nn.Linear(1, 1)\n"
    result = do_splice(fakevision_db, code)
    assert result.code == code and not result.changed and result.complete


def test_an_unused_import_is_removed(fakevision_db: Path) -> None:
    code = "import torch\nimport fakevision\n\n\nX = torch.zeros(1)\n"
    result = do_splice(fakevision_db, code)
    assert result.removed_imports == ("import fakevision",)
    assert "fakevision" not in result.code
    compile(result.code, "m", "exec")


def test_star_import_from_a_missing_package(fakevision_db: Path, tmp_path: Path) -> None:
    code = textwrap.dedent('''
        import torch.nn as nn
        from fakevision.ops import *


        class Net(nn.Module):
            def __init__(self, in_shape, out_shape, prm, device):
                super().__init__()
                self.drop = StochasticDepth(0.3)
                self.extra = StochasticDepth()
                self.head = nn.Sequential(ConvNormAct(in_shape[1], 4), nn.Flatten(),
                                          nn.LazyLinear(out_shape[0]))
                self.perm = Permute([0, 1, 2, 3])

            def forward(self, x):
                return self.head(self.extra(self.drop(stochastic_depth(self.perm(x), 0.0))))
        ''')
    result = do_splice(fakevision_db, code)
    assert result.removed_imports == ("from fakevision.ops import *",)
    assert set(result.spliced) == {"StochasticDepth", "ConvNormAct", "Permute",
                                   "stochastic_depth"}
    assert "class StochasticDepth(nn.Module):" in result.code  # its own name, not renamed
    assert run_model(result.code, tmp_path) == {"shape": [2, 10],
                                                 "fakevision_importable": False}


def test_attribute_chain_through_the_package_root(fakevision_db: Path) -> None:
    code = "import fakevision\n\nm = fakevision.models.TinyNet(num_classes=3)\n"
    result = do_splice(fakevision_db, code)
    assert result.spliced == {"fakevision.models.TinyNet": "fakevision.models.tiny.TinyNet"}
    assert "m = TinyNet(num_classes=3)" in result.code


def test_a_clash_with_the_models_own_names_renames_the_spliced_definition(
        fakevision_db: Path) -> None:
    code = textwrap.dedent('''
        from fakevision.ops import StochasticDepth as Drop


        class StochasticDepth:  # the model's own class of that name
            pass


        layer = Drop(0.1)
        own = StochasticDepth()
        ''')
    result = do_splice(fakevision_db, code)
    assert "class StochasticDepth_misc(nn.Module):" in result.code
    assert "layer = StochasticDepth_misc(0.1)" in result.code
    assert "own = StochasticDepth()" in result.code


def test_an_unknown_name_is_a_clear_error(fakevision_db: Path) -> None:
    code = "from fakevision.ops import Nope\n\nx = Nope()\n"
    with pytest.raises(SpliceError) as info:
        do_splice(fakevision_db, code)
    message = str(info.value)
    assert "fakevision" in message and "Nope" in message
    assert info.value.unresolved[0][:2] == ("fakevision", "Nope")
    assert isinstance(info.value, NnragError)


def test_a_package_neither_installed_nor_indexed_is_named(fakevision_db: Path) -> None:
    code = "import notapkg_xyz.layers as L\n\nx = L.Block()\n"
    with pytest.raises(SpliceError, match=r"'L\.Block' from package 'notapkg_xyz': package "
                                          r"'notapkg_xyz' is neither installed nor indexed"):
        do_splice(fakevision_db, code)


def test_not_strict_keeps_the_unresolved_import_and_splices_the_rest(
        fakevision_db: Path) -> None:
    code = ("from fakevision.ops import Nope, StochasticDepth\n\n"
            "x = Nope()\ny = StochasticDepth()\n")
    result = do_splice(fakevision_db, code, strict=False)
    assert not result.complete
    assert [(u.package, u.name) for u in result.unresolved] == [("fakevision", "Nope")]
    assert "from fakevision.ops import Nope\n" in result.code
    assert result.spliced == {"StochasticDepth": "fakevision.ops.misc.StochasticDepth"}
    assert "# not spliced: Nope (fakevision)" in result.code


def test_a_module_used_as_a_value_is_not_spliced(fakevision_db: Path) -> None:
    code = "import fakevision.models as fm\n\nnet = getattr(fm, 'tiny_net')()\n"
    result = do_splice(fakevision_db, code, strict=False)
    assert [u.name for u in result.unresolved] == ["fm"]
    assert "module used as a value" in result.unresolved[0].reason


def test_future_annotations_come_along(tmp_path: Path) -> None:
    """Spliced code written for ``from __future__ import annotations`` keeps working:
    the future import is added after the model's docstring."""
    tree = tmp_path / "src" / "lazyann"
    tree.mkdir(parents=True)
    (tree / "__init__.py").write_text("from .heads import Head\n")
    (tree / "heads.py").write_text(textwrap.dedent('''
        from __future__ import annotations


        class Head:
            def spec(self) -> Spec:
                return Spec()


        class Spec:
            pass
        '''))
    db = tmp_path / "lazy.db"
    with Store(db) as store:
        index_path(store, tree, prefix="lazyann", package="lazyann")
    result = do_splice(db, '"""Doc."""\nimport lazyann\n\nh = lazyann.Head().spec()\n')
    lines = result.code.splitlines()
    assert lines[0] == '"""Doc."""' and lines[1] == "from __future__ import annotations"
    namespace: dict[str, object] = {}
    exec(compile(result.code, "spliced", "exec"), namespace)  # noqa: S102 - our own fixture
    assert type(namespace["h"]).__name__ == "Spec"


def test_splice_all_and_the_workspace(fakevision_db: Path, tmp_path: Path) -> None:
    codes = ["from fakevision.ops import box_area\n\nf = box_area\n",
             "from fakevision.ops import Nope\n\nx = Nope()\n"]
    with Store(fakevision_db, create=False) as store:
        first, second = splice_all(codes, store)
    assert first.spliced == {"box_area": "fakevision.ops.boxes.box_area"}
    assert second.unresolved and second.unresolved[0].name == "Nope"
    ws = open_workspace(tmp_path / "home")
    assert ws.splice(codes[0], index=fakevision_db).code == first.code
    with pytest.raises(SpliceError):
        ws.splice(codes[1], index=fakevision_db)


def test_a_future_import_without_a_final_newline_stays_on_its_own_line(
        fakevision_db: Path) -> None:
    """LEMUR has models whose file ends without a newline; the part before the splice must
    still end its last line (``from __future__ import absolute_import`` + ``import torch``
    was once glued into one line)."""
    code = ("from __future__ import absolute_import\nimport torch\n"
            "from fakevision.ops import box_area\n\nf = box_area")
    result = do_splice(fakevision_db, code)
    assert result.code.startswith("from __future__ import absolute_import\n\n# Spliced by")
    compile(result.code, "m", "exec")


def test_an_installed_object_reached_through_the_package_is_imported_from_its_source(
        fakevision_db: Path) -> None:
    """``M.torch`` and ``M.nn`` name torch's objects: the model's own ``import torch`` is
    reused, ``nn`` gets an import of its own."""
    code = ("import fakevision.ops.misc as M\nimport torch\n\n"
            "x = M.torch.zeros(1)\ny = M.nn.Linear\n")
    result = do_splice(fakevision_db, code)
    assert result.spliced == {"M.torch": "torch", "M.nn": "torch.nn"}
    assert result.code.count("import torch\n") == 1 and "from torch import nn\n" in result.code
    assert result.code.endswith("x = torch.zeros(1)\ny = nn.Linear\n")


def test_a_local_name_of_the_model_is_not_shadowed_by_a_rewritten_use(
        fakevision_db: Path) -> None:
    """``ops.StochasticDepth`` inside a function with a local ``StochasticDepth`` must not
    become that local."""
    code = textwrap.dedent('''
        import fakevision.ops as ops


        def build():
            StochasticDepth = "local"
            return ops.StochasticDepth(0.2), StochasticDepth
        ''')
    result = do_splice(fakevision_db, code)
    assert "return StochasticDepth_misc(0.2), StochasticDepth" in result.code
    namespace: dict[str, object] = {}
    exec(compile(result.code, "spliced", "exec"), namespace)  # noqa: S102 - our own fixture
    layer, local = namespace["build"]()  # type: ignore[operator]
    assert type(layer).__name__ == "StochasticDepth_misc" and local == "local"
