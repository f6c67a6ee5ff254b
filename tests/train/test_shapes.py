"""Shape adapters and transform lists: CIFAR-shaped models on small datasets (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nnrag.cli import main
from nnrag.train._loader import train_loader
from nnrag.train.engine import Engine
from nnrag.train.executors import LocalExecutor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import SpecError, parse_spec
from nnrag.train.transforms import TRANSFORMS, apply_transforms, plan

# LEMUR-style: built for 32x32; three 2x2 poolings then a 3x3 kernel need >= 24 pixels (on
# 8x8 digits the pooling collapses to 1x1 and the last convolution fails), and the
# BatchNorm1d head cannot train on a batch of one sample.
CIFAR_NET = '''
import torch
from torch import nn


def supported_hyperparameters():
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        c = in_shape[1]
        self.features = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(16), nn.Linear(16, out_shape[0]))

    def forward(self, x):
        return self.head(self.features(x))

    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"],
                                         momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            self.criteria[0](self(x), y).backward()
            self.optimizer.step()
'''


def cifar_spec(**kw: object) -> dict[str, object]:
    # limit 129 with batch 64: the last batch holds one sample
    data: dict[str, object] = {
        "model": {"code": CIFAR_NET, "name": "cifarnet"}, "dataset": "digits", "limit": 129,
        "budget": {"epochs": 1, "wall_s": 60, "memory_mb": 2048},
        "hyperparameters": {"lr": 0.05, "batch_size": 64}}
    data.update(kw)
    return data


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[RunStore]:
    store = RunStore(tmp_path / "runs.db")
    yield store
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


@pytest.mark.sandbox
def test_cifar_shaped_model_trains_on_digits_only_with_shape(runs: RunStore) -> None:
    engine = Engine(runs, LocalExecutor(1))
    report = engine.train([parse_spec(cifar_spec(shape=[3, 32, 32])),
                           parse_spec(cifar_spec())])
    adapted, plain = (runs.get(i) for i in report.run_ids)
    assert adapted.outcome == "ok", adapted.traceback
    assert adapted.adapters == json.dumps(["resize_32", "to_rgb"])
    assert adapted.to_dict()["adapters"] == ["resize_32", "to_rgb"]
    assert adapted.params is not None and adapted.flops is not None
    # the same model on the raw 1x8x8 digits: its pooling collapses
    assert plain.outcome == "error" and plain.adapters is None
    assert "Kernel size can't be greater than actual input size" in (plain.error or "")
    listed = CliRunner().invoke(main, ["runs", "--runs", str(runs.path), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    by_id = {r["id"]: r for r in json.loads(listed.output)}
    assert by_id[adapted.id]["adapters"] == ["resize_32", "to_rgb"]
    assert by_id[plain.id]["adapters"] is None


def test_last_batch_of_one_sample_is_dropped() -> None:
    x130, y130 = torch.arange(130.0)[:, None], torch.zeros(130, dtype=torch.int64)
    x, y = x130[:129], y130[:129]
    loader = train_loader(x, y, 64, seed=0)
    sizes = [len(b[0]) for b in loader]
    assert sizes == [64, 64] and len(loader) == 2
    assert [len(b[0]) for b in train_loader(x130, y130, 64, 0)] == [64, 64, 2]
    assert len(train_loader(x130, y130, 64, 0)) == 3
    assert [len(b[0]) for b in train_loader(x[:3], y[:3], 1, 0)] == [1, 1, 1]  # batch_size 1
    # the order is DataLoader(shuffle=True)'s with the same seed: runs stay comparable
    reference = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True,
        generator=torch.Generator().manual_seed(0))
    ours = [b[0].tolist() for b in train_loader(x, y, 64, seed=0)]
    assert ours == [b[0].tolist() for b in reference][:2]


def test_adapters_follow_the_dataset_and_the_shape() -> None:
    def adapters(dataset: str, shape: list[int], transform: object = "none") -> tuple[str, ...]:
        spec = parse_spec({"model": {"code": "class Net: pass"}, "dataset": dataset,
                           "shape": shape, "transform": transform})
        assert spec.plan().in_shape == tuple(shape)
        return spec.plan().adapters

    assert adapters("digits", [3, 32, 32]) == ("resize_32", "to_rgb")
    assert adapters("fashion-mnist", [3, 64, 64]) == ("resize_64", "to_rgb")
    assert adapters("digits", [1, 28, 28]) == ("resize_28",)
    assert adapters("digits", [3, 8, 8]) == ("to_rgb",)
    assert adapters("digits", [1, 8, 8]) == ()
    assert adapters("cifar10", [1, 32, 32]) == ("to_gray",)
    assert adapters("cifar10", [1, 16, 16]) == ("to_gray", "resize_16")
    # the spec's own transforms already make the shape: nothing is added
    assert adapters("digits", [3, 32, 32], ["to_rgb", "resize_32", "standardize"]) == ()
    # adapters come first, the spec's transforms after them
    spec = parse_spec({"model": {"code": "class Net: pass"}, "shape": [3, 32, 32],
                       "transform": ["standardize", "flip"]})
    assert spec.plan().names == ("resize_32", "to_rgb", "standardize", "flip")


@pytest.mark.parametrize(("data", "message"), [
    ({"dataset": "mnist1d", "shape": [3, 32, 32]},
     "applies to image datasets; 'mnist1d' is a signal dataset with inputs 1x40"),
    ({"dataset": "cifar10", "shape": [2, 32, 32]}, "cannot adapt 3-channel inputs to 2 channels"),
    ({"shape": [3, 32, 48]}, "square NxN"),
    ({"shape": [3, 0, 32]}, "shape.1: Input should be greater than 0"),
    ({"shape": [3, 32]}, "shape"),
    ({"shape": [3, 32, 32], "transform": ["resize_64"]}, "into 3x64x64, not shape 3x32x32"),
    ({"dataset": "mnist1d", "transform": ["resize_32"]}, "resizes images (C, H, W)"),
    ({"transform": ["to_rgb", "standardise"]}, "did you mean 'standardize'?"),
    ({"transform": []}, "at least one transform"),
])  # fmt: skip
def test_unusable_shapes_and_transforms_fail_up_front(data: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(SpecError, match="spec") as info:
        parse_spec({"model": {"code": "class Net: pass"}, **data})
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["resize_0", "resize_x", "resize_032", "resize_-1",
                                  "resize_4097", "resize_", "resize_3.5"])
def test_resize_family_takes_whole_sizes_only(name: str) -> None:
    with pytest.raises(SpecError, match=r"resize_<N> takes a whole number N from 1 to 4096"):
        parse_spec({"model": {"code": "class Net: pass"}, "transform": [name]})


def test_resize_family_members() -> None:
    spec = parse_spec({"model": {"code": "class Net: pass"}, "transform": "resize_64"})
    assert spec.plan().in_shape == (1, 64, 64)
    x = torch.rand(5, 1, 8, 8)
    (big, small) = apply_transforms(["resize_64"], x, x[:2])
    assert big.shape == (5, 1, 64, 64) and small.shape == (2, 1, 64, 64)
    constant = torch.full((2, 1, 8, 8), 0.25)
    shrunk, _ = apply_transforms(["resize_3"], constant, constant)
    assert torch.allclose(shrunk, constant[..., :3, :3])
    with pytest.raises(SpecError, match="did you mean 'resize_<N>'"):
        parse_spec({"model": {"code": "class Net: pass"}, "transform": "resize"})


def test_transform_list_runs_in_order() -> None:
    rgb = torch.rand(4, 3, 8, 8)
    gray_first, _ = apply_transforms(["to_gray", "to_rgb"], rgb, rgb)
    assert gray_first.shape == (4, 3, 8, 8)
    assert torch.equal(gray_first[:, 0], gray_first[:, 2])  # one channel, replicated
    rgb_first, _ = apply_transforms(["to_rgb", "to_gray"], rgb, rgb)
    assert rgb_first.shape == (4, 1, 8, 8)
    assert torch.allclose(rgb_first[:, 0], rgb.mean(1))
    assert plan("d", "image", (3, 8, 8), ["to_gray", "to_rgb"]).in_shape == (3, 8, 8)
    assert plan("d", "image", (3, 8, 8), ["to_rgb", "to_gray"]).in_shape == (1, 8, 8)
    # standardize then flip != flip then resize: order is data, not a set
    x = torch.rand(6, 1, 8, 8)
    a, _ = apply_transforms(["resize_4", "standardize"], x, x)
    b, _ = apply_transforms(["standardize", "resize_4"], x, x)
    assert not torch.allclose(a, b)


def test_standardize_uses_training_statistics_only() -> None:
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(200, 3, 4, 4, generator=gen) * 2 + 5
    test = train[:20] + 100  # a very different split: its own statistics would hide that
    new_train, new_test = apply_transforms(["standardize"], train, test)
    dims = (0, 2, 3)
    mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True)
    assert torch.allclose(new_test, (test - mean) / std, atol=1e-5)
    assert new_test.mean() > 40  # not re-centred on its own mean
    assert torch.allclose(new_train.mean(dims), torch.zeros(3), atol=1e-5)


def test_spec_key_accounts_for_transform_list_and_shape() -> None:
    def key(**kw: object) -> str:
        return parse_spec({"model": {"code": "class Net: pass"}, **kw}).key()

    # specs written before lists and shape keep their keys (hashes from the previous release)
    assert key() == "47ca1ffa74e75c8489d07b4f35c763251aca39cb"
    assert key(transform="flip", limit=100) == "08b3c1836d7d76bd0a1553354bae96810f02764d"
    assert key(transform=["flip"], limit=100) == key(transform="flip", limit=100)
    assert key(transform=["none"]) == key()
    assert key(shape=[3, 32, 32]) != key()
    assert key(shape=[3, 32, 32]) != key(shape=[3, 64, 64])
    assert key(transform=["flip", "standardize"]) != key(transform=["standardize", "flip"])


def test_lemur_prm_transform_names_the_list() -> None:
    spec = parse_spec({"model": {"code": "class Net: pass"}, "transform": ["to_rgb", "flip"]})
    assert spec.prm(frozenset())["transform"] == "to_rgb,flip"
    assert parse_spec({"model": {"code": "class Net: pass"}}).prm(None)["transform"] == "none"


def test_transforms_command_lists_families() -> None:
    result = CliRunner().invoke(main, ["transforms", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert {"none", "standardize", "flip", "to_rgb", "to_gray", "resize_<N>"} <= set(rows)
    assert rows["resize_<N>"]["family"] and not rows["to_rgb"]["family"]
    assert rows["resize_<N>"]["provenance"] == "nnrag.train.transforms.resize"
    table = CliRunner().invoke(main, ["transforms", "to_*"])
    assert "to_rgb" in table.output and "resize" not in table.output
    assert [e.name for e in TRANSFORMS.list("resize*")] == ["resize_<N>"]


def test_forward_probe_says_where_a_model_stops(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry benchmarks/lemur_shapes.py runs in the sandbox (called here directly, on
    trusted code, in a scratch folder: it writes the module there)."""
    from nnrag.train._probe import forward

    monkeypatch.chdir(tmp_path)
    ok = forward({"code": CIFAR_NET, "shape": [3, 32, 32], "classes": 10})
    assert (ok["stage"], ok["error"], ok["out_shape"]) == ("ok", None, [2, 10])
    small = forward({"code": CIFAR_NET, "shape": [3, 8, 8], "classes": 10})
    assert small["stage"] == "forward" and "Kernel size" in small["error"]
    missing = forward({"code": "import no_such_package\n", "shape": [3, 32, 32], "classes": 10})
    assert missing["stage"] == "load" and missing["error"].startswith("ModuleNotFoundError")
    undeclared = CIFAR_NET.replace('{"lr", "momentum"}', '{"lr", "momentum", "odd_name"}')
    assert forward({"code": undeclared, "shape": [3, 32, 32], "classes": 10})["stage"] == "prm"
