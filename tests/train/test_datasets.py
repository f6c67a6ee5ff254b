"""Tests of the offline dataset registry: real data where it is installed, IDX files we write."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
import random
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nnrag.exceptions import NnragError
from nnrag.train import datasets as D
from nnrag.train._idx import IdxFormatError, idx_length, read_idx

ALL = [
    "animal-shape-mnist", "cifar10", "cifar100", "digits", "fashion-mnist", "mnist",
    "mnist1d", "svhn",
]  # fmt: skip
TORCHVISION = ["cifar10", "cifar100", "svhn"]
REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def no_system_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide /usr/share/datasets and $NNRAG_DATA, so only what a test writes is found."""
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", (tmp_path / "no-system-data",))
    monkeypatch.delenv("NNRAG_DATA", raising=False)


def write_idx(path: Path, array: np.ndarray, code: int, gz: bool) -> None:
    """An IDX file written independently of the reader under test."""
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist_like(folder: Path, n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for i, (name, arr) in enumerate(arrays.items()):  # mix gzipped and plain files
        write_idx(folder / (name + (".gz" if i % 2 == 0 else "")), arr, 0x08, gz=i % 2 == 0)
    return arrays


# --- registry ---------------------------------------------------------------------------


def test_list_datasets_with_wildcards() -> None:
    assert [i.name for i in D.list_datasets()] == ALL
    assert [i.name for i in D.list_datasets("*mnist*")] == [
        "animal-shape-mnist", "fashion-mnist", "mnist", "mnist1d",
    ]  # fmt: skip
    assert [i.name for i in D.list_datasets("cifar1?")] == ["cifar10"]
    assert [i.name for i in D.list_datasets("cifar*")] == ["cifar10", "cifar100"]
    assert D.list_datasets("imagenet*") == []


def test_info_fields() -> None:
    for info in D.list_datasets():
        assert info.kind in {"image", "signal"}
        assert len(info.in_shape) == (3 if info.kind == "image" else 2)
        assert info.chance == pytest.approx(1 / info.num_classes)
        assert info.source and info.description
    digits = D.dataset_info("digits")
    assert (digits.kind, digits.in_shape, digits.num_classes) == ("image", (1, 8, 8), 10)
    assert (digits.n_train, digits.n_test) == (1437, 360)
    assert "load_digits" in digits.source
    assert D.dataset_info("mnist1d").in_shape == (1, 40)
    assert D.dataset_info("cifar100").num_classes == 100
    assert D.dataset_info("Fashion_MNIST").name == "fashion-mnist"  # forgiving spelling
    with pytest.raises(ValueError, match="kind"):
        D.DatasetInfo("x", "video", (1, 2, 3), 2, None, None, 0.5, "s", "d")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(D.UnknownDatasetError) as err:
        D.dataset_info("digit")
    msg = str(err.value)
    assert msg.startswith("unknown dataset 'digit'; did you mean 'digits'?")
    assert "? Known: animal-shape-mnist, cifar10" in msg and msg.endswith("svhn.")
    assert isinstance(err.value, NnragError)
    with pytest.raises(D.UnknownDatasetError, match="'cifar10'"):
        D.load_dataset("cifar-10")
    with pytest.raises(D.UnknownDatasetError) as err:
        D.available("zzzz")
    assert "did you mean" not in str(err.value)
    assert str(err.value).startswith("unknown dataset 'zzzz'; known: animal-shape-mnist")


def test_register_custom_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "_REGISTRY", dict(D._REGISTRY))
    info = D.DatasetInfo("toy", "signal", (2, 3), 3, None, None, 1 / 3, "test", "toy data")

    @D.register(info, check=lambda root: "toy is fine")
    def load_toy(*, seed: int, root: Path | None) -> D.Split:
        x = np.arange(12 * 6, dtype=np.float64).reshape(12, 6)
        y = np.array([0, 1, 2, 2] * 3)
        return x[:8], y[:8], x[8:], y[8:]

    assert callable(load_toy)
    assert D.available("toy") == (True, "toy is fine")
    data = D.load_dataset("toy")
    assert data.train.tensors[0].shape == (8, 2, 3)
    assert (data.info.n_train, data.info.n_test, data.info.chance) == (8, 4, 0.5)
    with pytest.raises(ValueError, match="already registered"):
        D.register(info, load_toy)

    bad = D.DatasetInfo("bad", "signal", (1, 5), 2, None, None, 0.5, "test", "wrong shape")
    D.register(bad, lambda *, seed, root: (np.zeros((4, 3)), np.zeros(4), np.zeros((2, 3)), [0, 1]))
    with pytest.raises(ValueError, match="bad"):
        D.load_dataset("bad")
    with pytest.raises(ValueError, match="limit"):
        D.load_dataset("toy", limit=0)


# --- digits -----------------------------------------------------------------------------


def test_digits_load_split_and_determinism() -> None:
    assert D.available("digits")[0]
    data = D.load_dataset("digits", seed=0)
    x, y = data.train.tensors
    assert x.shape == (1437, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1437,) and y.dtype == torch.int64
    assert data.test.tensors[0].shape == (360, 1, 8, 8)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(y.tolist()) == set(range(10))
    assert data.info.chance < 0.2 and data.info.n_test == 360
    # stratified: every class keeps its share in both parts
    assert torch.bincount(data.test.tensors[1]).min() >= 35

    again = D.load_dataset("digits", seed=0)
    for a, b in zip(data.train.tensors + data.test.tensors,
                    again.train.tensors + again.test.tensors, strict=True):  # fmt: skip
        assert torch.equal(a, b)
    other = D.load_dataset("digits", seed=1)
    assert not torch.equal(other.train.tensors[0], x)
    assert other.info.n_train == 1437

    small = D.load_dataset("digits", limit=50)
    assert small.info.n_train == 50 and len(small.train) == 50 and len(small.test) == 360
    assert torch.equal(small.train.tensors[0], x[:50])


# --- mnist1d ----------------------------------------------------------------------------


def test_mnist1d_generates_caches_and_keeps_global_rng(
    nnrag_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np.random.seed(1234)
    random.seed(1234)
    np_before, py_before = np.random.get_state(), random.getstate()

    t0 = time.perf_counter()
    first = D.load_dataset("mnist1d")
    t_first = time.perf_counter() - t0

    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before

    x, y = first.train.tensors
    assert x.shape == (4000, 1, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert first.test.tensors[0].shape == (1000, 1, 40)
    assert first.info.chance < 0.2
    assert abs(float(x.mean())) < 0.1  # mnist1d standardises the signals
    caches = list((nnrag_home / "data").glob("mnist1d-*.npz"))
    assert len(caches) == 1 and not list((nnrag_home / "data").glob(".mnist1d-*"))
    assert "cached at" in D.available("mnist1d")[1]

    t0 = time.perf_counter()
    second = D.load_dataset("mnist1d", seed=7)  # canonical split: the seed does not matter
    t_second = time.perf_counter() - t0
    assert t_second < t_first / 5, (t_first, t_second)
    assert (torch.equal(second.train.tensors[0], x)
            and torch.equal(second.test.tensors[1], first.test.tensors[1]))  # fmt: skip

    # a damaged cache is regenerated, not fatal (a fake generator keeps this fast)
    def fake_make_dataset(args: object) -> dict[str, np.ndarray]:
        import mnist1d.data

        mnist1d.data.set_seed(0)  # reseeds globally, like the real one
        return {"x": np.ones((8, 40)), "y": np.arange(8) % 10, "x_test": np.zeros((2, 40)),
                "y_test": np.array([3, 3])}  # fmt: skip

    monkeypatch.setattr("mnist1d.data.make_dataset", fake_make_dataset)
    caches[0].write_bytes(caches[0].read_bytes()[:5000])  # truncated zip
    state = np.random.get_state()
    third = D.load_dataset("mnist1d")
    assert (third.info.n_train, third.info.chance) == (8, 1.0)
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert np.load(caches[0])["x"].shape == (8, 40)  # the cache was rewritten


def test_missing_optional_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # find_spec now reports it missing
    ok, why = D.available("mnist1d")
    assert not ok and "pip install 'nnrag[data]' -c constraints.txt" in why
    with pytest.raises(D.DatasetUnavailableError, match=r"nnrag\[data\]"):
        D.load_dataset("mnist1d")


# --- animal-shape-mnist -----------------------------------------------------------------


def test_animal_shape_mnist() -> None:
    assert D.available("animal-shape-mnist")[0]
    data = D.load_dataset("animal-shape-mnist", seed=0)
    x, y = data.train.tensors
    assert x.shape == (8000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert data.test.tensors[0].shape == (2000, 1, 28, 28)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [800] * 10  # the package is 1,000 per class
    assert data.info.chance == pytest.approx(0.1)
    assert len(set(y[:100].tolist())) > 5  # the split shuffles the class-sorted source
    assert torch.equal(D.load_dataset("animal-shape-mnist", seed=0).test.tensors[0],
                       data.test.tensors[0])  # fmt: skip
    assert not torch.equal(D.load_dataset("animal-shape-mnist", seed=1).test.tensors[1],
                           data.test.tensors[1])  # fmt: skip


def test_numpy_only_unpickler_refuses_code() -> None:
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(D._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arr))).load(), arr)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(os.getcwd))).load()


# --- IDX: fashion-mnist, mnist ----------------------------------------------------------


def test_read_idx_round_trip_and_errors(tmp_path: Path) -> None:
    for code, dtype in [(0x08, np.uint8), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)]:
        arr = (np.arange(24) - 5).reshape(2, 3, 4).astype(dtype)
        for gz in (False, True):
            path = tmp_path / f"a{code}{gz}"
            write_idx(path, arr, code, gz)
            out = read_idx(path)
            assert out.dtype == dtype and out.dtype.isnative and np.array_equal(out, arr)
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(IdxFormatError, match="not an IDX"):
        read_idx(tmp_path / "junk")
    write_idx(tmp_path / "ok", np.zeros((4, 4), np.uint8), 0x08, gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-3])
    with pytest.raises(IdxFormatError, match="needs 16 data bytes, found 13"):
        read_idx(tmp_path / "short")
    assert idx_length(tmp_path / "ok") == 4 and idx_length(tmp_path / "a12True") == 2  # gz
    with pytest.raises(IdxFormatError, match="not an IDX"):
        idx_length(tmp_path / "junk")


@pytest.mark.usefixtures("no_system_data")
def test_fashion_mnist_from_written_idx_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, why = D.available("fashion-mnist", root=tmp_path)
    assert not ok and "apt-get install dataset-fashion-mnist" in why
    with pytest.raises(D.DatasetUnavailableError, match="fashion-mnist"):
        D.load_dataset("fashion-mnist", root=tmp_path)

    arrays = write_mnist_like(tmp_path / "fashion-mnist", 30, 20, seed=0)
    ok, why = D.available("fashion-mnist", root=tmp_path)
    assert ok and str(tmp_path / "fashion-mnist") in why
    data = D.load_dataset("fashion-mnist", root=tmp_path)
    x, y = data.train.tensors
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.equal(x[:, 0], expected)
    assert y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert (data.info.n_train, data.info.n_test, data.info.chance) == (30, 20, 0.1)
    assert D.load_dataset("fashion-mnist", root=tmp_path, limit=7).info.n_train == 7
    # the prior sizes its batches by the files on disk (a subsample here), not the registry
    assert D.dataset_info("fashion-mnist").n_train == 60000
    assert D.train_size("fashion-mnist", root=tmp_path) == 30
    assert D.train_size("fashion-mnist", root=tmp_path / "nowhere") == 60000  # not there

    # $NNRAG_DATA is searched too, and a corrupt file is reported, not crashed on
    monkeypatch.setenv("NNRAG_DATA", str(tmp_path))
    assert D.available("fashion-mnist")[0]
    (tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0"))
    with pytest.raises(D.DatasetUnavailableError, match="too short"):
        D.load_dataset("fashion-mnist")


@pytest.mark.usefixtures("no_system_data")
def test_mnist_reads_torchvision_raw_layout_without_torchvision(tmp_path: Path) -> None:
    ok, why = D.available("mnist", root=tmp_path)
    assert not ok and "<root>/mnist/" in why
    write_mnist_like(tmp_path / "MNIST" / "raw", 10, 10, seed=1)
    data = D.load_dataset("mnist", root=tmp_path)
    assert data.train.tensors[0].shape == (10, 1, 28, 28)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="apt package dataset-fashion-mnist absent")
def test_real_fashion_mnist() -> None:
    ok, why = D.available("fashion-mnist")
    assert ok, why
    data = D.load_dataset("fashion-mnist", limit=1000)
    assert data.info.n_train == 1000 and data.info.n_test == 10000
    assert data.test.tensors[0].shape == (10000, 1, 28, 28)
    assert torch.bincount(data.test.tensors[1]).tolist() == [1000] * 10
    assert data.info.chance == pytest.approx(0.1)
    assert 0.2 < float(data.test.tensors[0].mean()) < 0.4


# --- torchvision-backed -----------------------------------------------------------------


@pytest.mark.usefixtures("no_system_data")
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_datasets_unavailable_with_actionable_message(
    name: str, tmp_path: Path
) -> None:
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    ok, why = D.available(name, root=tmp_path)
    assert not ok
    assert "torchvision is not installed" in why and "download=True" in why
    assert str(tmp_path / name) in why and f"<root>/{name}/" in why
    with pytest.raises(D.DatasetUnavailableError) as err:
        D.load_dataset(name, root=tmp_path)
    assert str(err.value) == why


@pytest.mark.usefixtures("no_system_data")
def test_torchvision_that_does_not_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision built for another torch is installed but raises on import."""
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    for marker in ("data_batch_1", "test_batch"):
        (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "cifar-10-batches-py" / marker).write_bytes(b"")
    ok, why = D.available("cifar10", root=tmp_path / "data")
    assert not ok and "does not import (RuntimeError: operator torchvision::nms" in why
    assert "no cifar-10" not in why  # the files were found
    with pytest.raises(D.DatasetUnavailableError, match="paired with your torch"):
        D.load_dataset("cifar10", root=tmp_path / "data")
