"""The ladder orchestration: caching by closure hash, shared-import preloading."""

from __future__ import annotations

from pathlib import Path

from nnrag.extract import export
from nnrag.extract._emit import Emitted
from nnrag.index import Store, index_path
from nnrag.ladder import validate
from nnrag.ladder._validate import _shared_imports, refine_cause
from nnrag.sandbox import Limits, run_function


def _emitted(*imports: str) -> Emitted:
    return Emitted("q", "n", "", "h", (), imports, (), "d")


def test_shared_imports_are_the_common_external_modules() -> None:
    blocks = [_emitted("import torch", "from transformers.utils import x",
                       "import numpy as np")] * 4
    blocks += [_emitted("import rare_pkg")]
    assert _shared_imports(blocks) == ["?numpy", "?transformers.utils"]


def test_optional_preload_that_fails_does_not_stop_the_worker() -> None:
    result = run_function(
        "tests.sandbox._sandbox_entries:echo", {"value": 7},
        limits=Limits(wall_s=20), preload=("?no_such_module_xyz",),
    )
    assert result.status == "ok", result


def test_results_are_cached_by_closure_and_rerun_when_code_changes(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    layer = root / "layer.py"
    layer.write_text(
        "import torch.nn as nn\n\n\nclass Scale(nn.Module):\n"
        "    def __init__(self, dim):\n        super().__init__()\n"
        "        self.lin = nn.Linear(dim, dim)\n\n"
        "    def forward(self, x):\n        return self.lin(x) * 2\n"
    )
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    first = validate(store, ["Scale"])
    assert first[0].rung == 6 and not first[0].cached
    assert validate(store, ["Scale"])[0].cached
    layer.write_text(layer.read_text().replace("* 2", "* 3"))
    index_path(store, root)
    again = validate(store, ["Scale"])
    assert again[0].rung == 6 and not again[0].cached


def test_a_block_that_hangs_keeps_the_rungs_it_reached(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "slow.py").write_text(
        "import time\nimport torch.nn as nn\n\n\nclass Hang(nn.Module):\n"
        "    def forward(self, x):\n        while True:\n            time.sleep(0.1)\n"
    )
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    (outcome,) = validate(store, ["Hang"], limits=Limits(wall_s=8))
    assert outcome.rung == 4  # instantiated, then killed during forward
    assert outcome.failed_rung == "forward"
    assert outcome.error_type == "Timeout"


REPRO = {  # issue 15: a helper with a function-local relative import, used by a block
    "__init__.py": "",
    "consts.py": "def round_channels(c, divisor=8):\n"
                 "    return max(divisor, int(c + divisor / 2) // divisor * divisor)\n",
    "blocks.py": (
        "import torch.nn as nn\nfrom torch import nn\nfrom .consts import round_channels\n\n\n"
        "def make_width(c, mult):\n    from .consts import round_channels\n"
        "    return round_channels(c * mult)\n\n\n"
        "def act(x):\n    import torch.nn.functional as F\n    from torch import nn\n"
        "    return F.relu(x) + nn.Identity()(x) * 0\n\n\n"
        "class Block(nn.Module):\n    def __init__(self, in_ch: int = 16, mult: float = 1.5):\n"
        "        super().__init__()\n        width = make_width(in_ch, mult)\n"
        "        self.conv = nn.Conv2d(in_ch, width, 3, padding=1)\n"
        "        self.extra = round_channels(width)\n\n"
        "    def forward(self, x):\n        return act(self.conv(x))\n\n\n"
        "class Kept(nn.Module):\n    from .consts import round_channels as rc\n\n"
        "    def forward(self, x):\n        return x * self.rc(3)\n"
    ),
}


def repro_store(tmp_path: Path) -> Store:
    root = tmp_path / "zz_issue15"
    root.mkdir()
    for name, text in REPRO.items():
        (root / name).write_text(text)
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    return store


def test_local_relative_import_repro_climbs_the_whole_ladder(tmp_path: Path) -> None:
    store = repro_store(tmp_path)
    block, kept = validate(store, ["zz_issue15.blocks.Block", "zz_issue15.blocks.Kept"])
    assert (block.rung_name, block.cause) == ("backward", None), block
    # A class-body import binds a class attribute, so it is kept (made absolute); without
    # the original package it fails, and since the index holds that package, the cause is
    # the resolver's gap, not a missing package.
    assert (kept.rung_name, kept.failed_rung, kept.cause) == ("compile", "import",
                                                              "resolver_gap"), kept
    assert "zz_issue15" in (kept.error_message or "")
    result = export(store, tmp_path / "out")  # the broken file is left out, with its reason
    assert result["count"] == 1
    assert [s["qualname"] for s in result["skipped"]] == ["zz_issue15.blocks.Kept"]
    assert "failed at import (resolver_gap; ModuleNotFoundError" in result["skipped"][0]["reason"]


def test_refine_cause_blames_the_resolver_for_indexed_modules() -> None:
    modules = {"zz.a", "zz.a.b", "other"}
    gaps = Emitted("q", "n", "", "h", (), (), ("q: cannot resolve 'x'",), "d")
    table = [  # (result, emitted, expected cause)
        ({"cause": "missing_package", "missing_module": "zz"}, _emitted(), "resolver_gap"),
        ({"cause": "missing_package", "missing_module": "zz.a.b"}, _emitted(), "resolver_gap"),
        ({"cause": "missing_package", "missing_module": "zzz"}, _emitted(), "missing_package"),
        ({"cause": "missing_package"}, _emitted(), "missing_package"),
        ({"cause": "genuine_error", "error_type": "NameError"}, gaps, "resolver_gap"),
        ({"cause": "genuine_error", "error_type": "NameError"}, _emitted(), "genuine_error"),
        ({"cause": None}, _emitted(), None),
    ]
    for value, emitted, expected in table:
        assert refine_cause(value, emitted, modules) == expected, value


def test_a_result_under_other_limits_is_not_the_default_result(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "layer.py").write_text(
        "import torch.nn as nn\n\n\nclass Twice(nn.Module):\n"
        "    def forward(self, x):\n        return x * 2\n"
    )
    store = Store(tmp_path / "index.db")
    index_path(store, root)
    starved = validate(store, ["Twice"], limits=Limits(wall_s=0.01, memory_mb=4096))
    assert starved[0].rung < 6 and starved[0].error_type == "Timeout"
    default = validate(store, ["Twice"])
    assert not default[0].cached and default[0].rung == 6  # not the starved run's result
    assert validate(store, ["Twice"])[0].cached
    assert validate(store, ["Twice"], limits=Limits(wall_s=0.01, memory_mb=4096))[0].cached
