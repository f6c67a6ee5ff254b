"""Property: an extracted block builds the same parameters as the original it came from.

The original is the bundled example zoo (our own code, importable in-process); the
extracted module is loaded from the emitted text. For random constructor widths both must
produce identical ``state_dict`` keys and shapes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnrag.examples import ZOO
from nnrag.extract import extract
from nnrag.index import Store, index_path


@pytest.fixture(scope="module")
def zoo_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("zoo") / "index.db")
    index_path(store, ZOO)
    return store


@pytest.fixture(scope="module")
def original() -> Iterator[ModuleType]:
    """The zoo imported for real; unloaded afterwards, so later tests see that ``zoo`` is
    not an installed package (the splice test relies on it)."""
    sys.path.insert(0, str(ZOO.parent))
    try:
        yield importlib.import_module("zoo")
    finally:
        sys.path.remove(str(ZOO.parent))
        for name in [n for n in sys.modules if n == "zoo" or n.startswith("zoo.")]:
            del sys.modules[name]


_LOADED: dict[str, object] = {}


def load_emitted(store: Store, qualname: str, tmp: Path) -> object:
    if qualname in _LOADED:
        return _LOADED[qualname]
    emitted = extract(store, qualname)
    path = tmp / f"emitted_{emitted.closure_hash[:10]}.py"
    path.write_text(emitted.code)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _LOADED[qualname] = getattr(module, emitted.name)
    return _LOADED[qualname]


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


BUILDERS = {
    "zoo.layers.conv.ConvNormAct": lambda d: dict(in_chs=d["a"], out_chs=d["b"],
                                                  kernel_size=d["k"]),
    "zoo.layers.conv.SqueezeExcite": lambda d: dict(channels=d["a"]),
    "zoo.layers.mlp.Mlp": lambda d: dict(in_features=d["a"], hidden_features=d["b"]),
    "zoo.layers.attention.Attention": lambda d: dict(dim=d["heads"] * d["k"], num_heads=d["heads"]),
    "zoo.models.resnet.BasicBlock": lambda d: dict(inplanes=d["a"], planes=d["b"],
                                                   use_se=d["flag"]),
    "zoo.models.resnet.ResNetTiny": lambda d: dict(in_chans=d["k"], num_classes=d["b"],
                                                   widths=(d["a"], d["b"])),
    "zoo.models.vit.TinyViT": lambda d: dict(in_chans=d["k"], embed_dim=d["heads"] * 8,
                                             num_heads=d["heads"], depth=1),
}


@pytest.mark.parametrize("qualname", sorted(BUILDERS))
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a=st.integers(1, 48), b=st.integers(1, 48), k=st.sampled_from([1, 3, 5]),
    heads=st.integers(1, 4), flag=st.booleans(),
)
def test_extracted_state_dict_matches_original(
    zoo_store: Store, original: ModuleType, tmp_path_factory: pytest.TempPathFactory,
    qualname: str, a: int, b: int, k: int, heads: int, flag: bool,
) -> None:
    module_name, _, cls_name = qualname.rpartition(".")
    orig_cls = getattr(importlib.import_module(module_name), cls_name)
    emitted_cls = load_emitted(zoo_store, qualname, tmp_path_factory.getbasetemp())
    kwargs = BUILDERS[qualname](dict(a=a, b=b, k=k, heads=heads, flag=flag))
    torch.manual_seed(0)
    expected = shapes(orig_cls(**kwargs))
    torch.manual_seed(0)
    got = shapes(emitted_cls(**kwargs))  # type: ignore[operator]
    assert got == expected


def test_every_zoo_block_is_covered(zoo_store: Store) -> None:
    blocks = {r["qualname"] for r in zoo_store.block_definitions()}
    # Blocks without width arguments (HardSwish, PatchEmbed, vit.Block) are covered by the
    # ladder tests.
    assert set(BUILDERS) <= blocks
