"""Test labels out of the trained code's reach: where they live, and mnist1d's private split."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnrag.exceptions import NnragError
from nnrag.train import _secret
from nnrag.train import datasets as D

Split = list[np.ndarray]  # x, y, x_test, y_test


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "_REGISTRY", dict(D._REGISTRY))


# --- label_sources ----------------------------------------------------------------------


def test_label_sources_lists_package_data_not_whole_packages(
    tmp_path: Path, nnrag_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", (system, tmp_path / "absent"))
    monkeypatch.setenv("NNRAG_DATA", str(tmp_path / "user-data"))  # absent: not listed
    sources = D.label_sources()

    sklearn = package_dir("sklearn")
    assert str(sklearn / "datasets" / "data") in sources
    assert (sklearn / "datasets" / "data" / "digits.csv.gz").is_file()
    assert not any(Path(s) in {sklearn, sklearn / "datasets"} for s in sources)
    assert str(package_dir("animal_shape_mnist") / "data") in sources
    assert str(package_dir("mnist1d")) in sources
    assert str(system) in sources
    assert str(tmp_path / "absent") not in sources and str(tmp_path / "user-data") not in sources
    assert str(nnrag_home / "data") not in sources  # not created yet
    assert all(Path(s).is_absolute() and os.path.lexists(s) for s in sources)

    (nnrag_home / "data").mkdir()
    (tmp_path / "user-data").mkdir()
    _secret.home_secret()
    again = D.label_sources()
    assert {str(nnrag_home / "data"), str(tmp_path / "user-data")} <= set(again)
    assert str(nnrag_home / "secret") in again  # the key to mnist1d's test labels


def test_label_sources_follows_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_registry: None
) -> None:
    real = tmp_path / "real-labels"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setattr(D, "SYSTEM_DATA_DIRS", ())
    info = D.DatasetInfo("linked", "signal", (1, 2), 2, None, None, 0.5, "test", "linked")
    D.register(info, lambda *, seed, root: (np.zeros(0),) * 4, sources=lambda: [link])
    assert {str(link), str(real)} <= set(D.label_sources())


def test_registered_sources_show_up_and_failures_fail_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_registry: None
) -> None:
    labels = tmp_path / "toy-labels.npy"
    labels.write_bytes(b"")
    info = D.DatasetInfo("toy", "signal", (1, 2), 2, None, None, 0.5, "test", "toy")

    @D.register(info, sources=lambda: [labels, tmp_path / "not-there"])
    def load_toy(*, seed: int, root: Path | None) -> D.Split:
        return np.zeros((2, 2)), np.array([0, 1]), np.zeros((2, 2)), np.array([0, 1])

    sources = D.label_sources()
    assert str(labels) in sources and str(tmp_path / "not-there") not in sources
    assert D.load_dataset("toy").info.n_test == 2  # sources do not change loading

    def broken() -> list[Path]:
        raise RuntimeError("no idea where")

    D.register(D.DatasetInfo("bad", "signal", (1, 2), 2, None, None, 0.5, "t", "d"),
               load_toy, sources=broken)  # fmt: skip
    with pytest.raises(NnragError, match="dataset 'bad': its sources\\(\\) failed: no idea"):
        D.label_sources()


def test_label_sources_imports_no_dataset_package() -> None:
    code = (
        "import sys; import nnrag.train.datasets as D; s = D.label_sources(); "
        "assert any(p.endswith('datasets/data') for p in s), s; "
        "print(sorted(m for m in ('sklearn', 'mnist1d', 'animal_shape_mnist', 'matplotlib') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- the home's secret ------------------------------------------------------------------


def test_secret_created_once_private_and_reused(nnrag_home: Path) -> None:
    assert not (nnrag_home / "secret").exists()
    first = _secret.home_secret()
    path = nnrag_home / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and int(first, 16) >= 0
    assert _secret.home_secret() == first
    assert [p.name for p in nnrag_home.iterdir()] == ["secret"]  # no temp file left
    path.write_text("not hex\n")
    with pytest.raises(NnragError, match="delete it"):
        _secret.home_secret()


def test_concurrent_first_use_keeps_the_first_writers_secret(
    nnrag_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = "ab" * 32
    real_token_hex = _secret.secrets.token_hex

    def token_hex_after_a_rival_wrote(n: int) -> str:  # another process finishes first
        (nnrag_home / "secret").write_text(winner + "\n")
        return real_token_hex(n)

    monkeypatch.setattr(_secret.secrets, "token_hex", token_hex_after_a_rival_wrote)
    assert _secret.home_secret() == winner.encode()
    assert (nnrag_home / "secret").read_text() == winner + "\n"
    assert [p.name for p in nnrag_home.iterdir()] == ["secret"]


def test_threads_racing_on_first_use_agree(nnrag_home: Path) -> None:
    results: list[bytes] = []
    start = threading.Barrier(6)

    def use() -> None:
        start.wait()
        results.append(_secret.home_secret())

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1


def test_derived_keys_are_256_bits_for_numpy_and_depend_on_secret_and_purpose() -> None:
    a, b = b"1" * 64, b"2" * 64
    keys = {_secret.derive_key(s, p) for s in (a, b) for p in ("x", "y")}
    assert len(keys) == 4
    assert all(len(k) == 8 and all(0 <= w < 2**32 for w in k) for k in keys)
    assert _secret.derive_key(a, "x") == _secret.derive_key(a, "x")
    np.random.RandomState(list(_secret.derive_key(a, "x")))  # numpy takes it as a seed


def test_private_generation_seeds_numpy_with_the_whole_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mnist1d.data

    def fake(args: Any) -> dict[str, np.ndarray]:  # seeds through set_seed, like the real one
        mnist1d.data.set_seed(args.seed)
        return {"x": np.random.rand(3)}

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake)
    key = _secret.derive_key(b"k" * 64, "t")
    np.random.seed(7)
    drawn = D._mnist1d._make(key)["x"]
    assert np.array_equal(drawn, np.random.RandomState(list(key)).rand(3))
    assert not np.array_equal(drawn, np.random.RandomState(key[0]).rand(3))
    assert np.array_equal(D._mnist1d._make()["x"], np.random.RandomState(42).rand(3))
    assert np.random.rand() == np.random.RandomState(7).rand()  # the caller's state kept
    assert mnist1d.data.set_seed is mnist1d.utils.set_seed  # put back

    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: {"x": np.zeros(3)})
    with pytest.raises(RuntimeError, match="without mnist1d.data.set_seed"):
        D._mnist1d._make(key)  # a generator that would ignore the key is refused


# --- mnist1d: public train split, private test split ------------------------------------


def load_in_home(home: Path) -> Split:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NNRAG_HOME", str(home))
        data = D.load_dataset("mnist1d")
    return [t.numpy() for t in (*data.train.tensors, *data.test.tensors)]


@pytest.fixture(scope="module")
def mnist1d_sets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Split]]:
    """mnist1d in two homes, and the public split generated the published way."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()
    public = make_dataset(get_dataset_args())  # seed 42, as published
    np.random.set_state(state)
    yield {
        "a": load_in_home(tmp_path_factory.mktemp("home_a")),
        "b": load_in_home(tmp_path_factory.mktemp("home_b")),
        "public": [np.asarray(public[k]) for k in ("x", "y", "x_test", "y_test")],
    }


def test_mnist1d_train_is_public_and_test_is_private(mnist1d_sets: dict[str, Split]) -> None:
    a, b, public = mnist1d_sets["a"], mnist1d_sets["b"], mnist1d_sets["public"]
    for split in (a, b):
        assert np.allclose(split[0][:, 0], public[0], atol=1e-6)  # the published train split
        assert np.array_equal(split[1], public[1])
        assert split[2].shape == (1000, 1, 40) and split[3].shape == (1000,)
        assert not np.allclose(split[2][:, 0], public[2], atol=1e-3)
        assert np.mean(split[3] == public[3]) < 0.3  # about chance, not the public labels
        assert set(split[3].tolist()) == set(range(10))
        assert abs(float(split[2].mean())) < 0.1  # standardised like the train split
    assert not np.allclose(a[2], b[2], atol=1e-3)  # each home its own test set
    assert np.mean(a[3] == b[3]) < 0.3


def test_mnist1d_check_writes_nothing_and_cache_follows_the_secret(nnrag_home: Path) -> None:
    assert D.available("mnist1d") == (True, "mnist1d installed (generated locally)")
    assert not (nnrag_home / "secret").exists()  # a check creates no secret
    assert D._mnist1d._cache(b"cd" * 32) != D._mnist1d._cache(b"ef" * 32)
    (nnrag_home / "secret").write_text("cd" * 32 + "\n")
    cache = D._mnist1d._cache(b"cd" * 32)
    cache.parent.mkdir()
    cache.write_bytes(b"")
    assert D.available("mnist1d") == (True, f"cached at {cache}")
    (nnrag_home / "secret").write_text("ef" * 32 + "\n")  # another secret, another cache
    assert D._mnist1d.cached() is None
