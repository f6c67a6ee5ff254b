"""The ladder orchestration: caching by closure hash, shared-import preloading."""

from __future__ import annotations

from pathlib import Path

from nnrag.extract._emit import Emitted
from nnrag.index import Store, index_path
from nnrag.ladder import validate
from nnrag.ladder._validate import _shared_imports
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
