"""mnist1d generated locally and cached: the public train split, a private test split.

mnist1d's published split comes from ``make_dataset`` with seed 42, so any code holding the
generator (or a copy of it) can rebuild its test labels and forge a score. The train split
here is that public one; the test split is the test part of a second run seeded from the
home's secret (:mod:`nnrag.train._secret`), same arguments and sizes. Scores are comparable
with published mnist1d figures statistically, not sample for sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from nnrag.config import nnrag_home
from nnrag.train._secret import derive_key, home_secret, secret_path

__all__ = ["ARGS", "cached", "load"]

#: mnist1d's default generation arguments, pinned here so that the cache key is known
#: without importing mnist1d (it imports matplotlib: ~1.5 s, the whole cost of a cache hit).
ARGS: dict[str, Any] = {
    "num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2, "shear_scale": 0.75, "shuffle_seq": False,
    "final_seq_length": 40, "seed": 42,
}  # fmt: skip
_TEST_PURPOSE = "mnist1d-test"


def _cache(secret: bytes) -> Path:
    """Keyed by the generation arguments and the secret (which fixes the test split)."""
    key = json.dumps(
        {"version": metadata.version("mnist1d"), **ARGS,
         "test_secret": hashlib.sha256(secret).hexdigest()},
        sort_keys=True,
    )  # fmt: skip
    return nnrag_home() / "data" / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def cached() -> Path | None:
    """The cache file if one exists; writes nothing (no secret is made for a mere check)."""
    if not secret_path().exists():
        return None
    cache = _cache(home_secret())
    return cache if cache.exists() else None


def _make(key: tuple[int, ...] | None = None) -> dict[str, Any]:
    """mnist1d's own ``make_dataset`` with the pinned arguments, seeded by ``key`` if given.

    ``make_dataset`` seeds numpy with ``args.seed``, one 32-bit integer: too few bits for a
    private split, since trained code holding the test inputs could try every seed. With a
    key, mnist1d's ``set_seed`` is swapped for one seeding numpy with all of the key's words,
    and a generator that no longer calls it is refused rather than silently seeded publicly.
    """
    import mnist1d.data as m1d  # never get_dataset: downloads

    args = m1d.get_dataset_args()
    args.__dict__.update(ARGS)
    seeded: list[bool] = []

    def seed_with_key(seed: int) -> None:
        random.seed(seed)
        np.random.seed(key)
        seeded.append(True)

    np_state, py_state, set_seed = np.random.get_state(), random.getstate(), m1d.set_seed
    if key is not None:
        args.seed, m1d.set_seed = key[0], seed_with_key
    try:  # make_dataset reseeds both global generators; do not leak that to the caller
        data = dict(m1d.make_dataset(args))
    finally:
        m1d.set_seed = set_seed
        np.random.set_state(np_state)
        random.setstate(py_state)
    if key is not None and not seeded:
        raise RuntimeError(
            f"mnist1d {metadata.version('mnist1d')} generates without mnist1d.data.set_seed; "
            "nnrag cannot seed its private mnist1d test split with it"
        )
    return data


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, x_test, y_test)`` from the cache, generated (twice) and cached on a miss."""
    secret = home_secret()
    cache = _cache(secret)
    try:
        with np.load(cache, allow_pickle=False) as z:
            return z["x"], z["y"], z["x_test"], z["y_test"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing/damaged
        pass
    public, private = _make(), _make(derive_key(secret, _TEST_PURPOSE))
    x, y = np.asarray(public["x"]), np.asarray(public["y"])
    x_test, y_test = np.asarray(private["x_test"]), np.asarray(private["y_test"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".mnist1d-", suffix=".npz")
    try:  # temp file + rename: a concurrent loader never sees a half-written cache
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=x, y=y, x_test=x_test, y_test=y_test)
        os.replace(tmp, cache)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return x, y, x_test, y_test
