"""A registry of real, offline classification datasets for the execution engine.

Nothing here ever downloads: every dataset is bundled with an installed package, generated
locally, or read from files the user (or an OS package) put on disk. A dataset that cannot
load here raises :class:`DatasetUnavailableError` saying what to install or where to put
the files, and :func:`available` answers the same question without loading anything.

Datasets without an official split (digits, animal-shape-mnist) get a stratified 80/20
split seeded by ``seed``; the others keep their canonical split and ignore ``seed``.
Files are searched in ``root``, ``$NNRAG_DATA``, ``$NNRAG_HOME/data`` and then
:data:`SYSTEM_DATA_DIRS` (where Debian's ``dataset-*`` packages install).

Scores must not be forgeable by the trained code, so the sandbox hides every place that holds
labels: :func:`label_sources` names them (package data, the search folders, each registered
dataset's ``sources``). mnist1d is generated from a public seed, so hiding files is not enough
there: its test split is drawn with a key derived from a secret private to ``$NNRAG_HOME``
(:mod:`nnrag.train._secret`). Its figures are therefore comparable with published mnist1d
results statistically (same generator, arguments and sizes), not sample for sample.
"""

from __future__ import annotations

import fnmatch
import gzip
import importlib
import importlib.util
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nnrag.config import data_dir, nnrag_home
from nnrag.exceptions import NnragError, unknown_name
from nnrag.logging import get_logger
from nnrag.train import _mnist1d
from nnrag.train._idx import IdxFormatError, idx_length, read_idx
from nnrag.train._secret import secret_path

__all__ = [
    "SYSTEM_DATA_DIRS", "Dataset", "DatasetInfo", "DatasetUnavailableError",
    "IdxFormatError", "UnknownDatasetError", "available", "dataset_info", "label_sources",
    "list_datasets", "load_dataset", "read_idx", "register", "train_size",
]  # fmt: skip

log = get_logger(__name__)

#: Searched last for dataset files; a module constant so tests can point it elsewhere.
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


class DatasetUnavailableError(NnragError):
    """The dataset is known but cannot load here; the message says how to fix that."""


class UnknownDatasetError(NnragError):
    """No dataset of this name is registered; the message lists close matches."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, known before loading it (``n_*`` may be None until loaded)."""

    name: str
    kind: str  # "image" (in_shape C, H, W) or "signal" (in_shape C, L)
    in_shape: tuple[int, ...]
    num_classes: int
    n_train: int | None
    n_test: int | None
    chance: float  # accuracy of always predicting the most frequent test class
    source: str
    description: str

    def __post_init__(self) -> None:
        rank = {"image": 3, "signal": 2}.get(self.kind)
        if rank is None or len(self.in_shape) != rank:
            raise ValueError(f"{self.name}: kind {self.kind!r} with in_shape {self.in_shape}")


@dataclass(frozen=True)
class Dataset:
    """Loaded tensors: float32 inputs of shape ``(N, *info.in_shape)``, int64 labels."""

    info: DatasetInfo
    train: TensorDataset
    test: TensorDataset


Array = np.ndarray | torch.Tensor
Split = tuple[Array, Array, Array, Array]  # x_train, y_train, x_test, y_test
Loader = Callable[..., Split]
#: ``check(root)`` returns why the dataset can load here, or raises DatasetUnavailableError.
Check = Callable[[Path | None], str]
#: ``sources()`` lists the files or folders that hold a dataset's labels (see label_sources).
Sources = Callable[[], list[Path]]
#: ``size(root)`` counts the training samples on disk without loading them (see train_size).
Size = Callable[[Path | None], int]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    loader: Loader
    check: Check
    sources: Sources | None
    size: Size | None = None


_REGISTRY: dict[str, _Entry] = {}


def _always(root: Path | None) -> str:
    return "always available"


@overload
def register(
    info: DatasetInfo, loader: Loader, *, check: Check | None = ..., sources: Sources | None = ...,
    size: Size | None = ...,
) -> None: ...
@overload
def register(
    info: DatasetInfo, loader: None = ..., *, check: Check | None = ...,
    sources: Sources | None = ..., size: Size | None = ...,
) -> Callable[[Loader], Loader]: ...  # fmt: skip
def register(
    info: DatasetInfo,
    loader: Loader | None = None,
    *,
    check: Check | None = None,
    sources: Sources | None = None,
    size: Size | None = None,
) -> Callable[[Loader], Loader] | None:
    """Register ``loader(*, seed, root) -> (x_train, y_train, x_test, y_test)``.

    Usable directly or as ``@register(info)``. ``check`` is the cheap test behind
    :func:`available` (default: always available). ``sources()`` names the files or folders
    holding the dataset's labels outside the search folders, so that the sandbox can hide
    them from trained code (see :func:`label_sources`). ``size(root)`` counts the training
    samples on disk cheaply, for files whose size may differ from ``info.n_train`` (see
    :func:`train_size`). Names must be unique, so a plugin
    cannot silently replace a built-in dataset.
    """

    def add(fn: Loader) -> Loader:
        if info.name in _REGISTRY:
            raise ValueError(f"dataset {info.name!r} is already registered")
        _REGISTRY[info.name] = _Entry(info, fn, check or _always, sources, size)
        return fn

    if loader is None:
        return add
    add(loader)
    return None


def list_datasets(pattern: str = "*") -> list[DatasetInfo]:
    """Registered datasets whose name matches the ``fnmatch`` pattern, sorted by name."""
    return [_REGISTRY[n].info for n in sorted(_REGISTRY) if fnmatch.fnmatchcase(n, pattern)]


def _entry(name: str) -> _Entry:
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise UnknownDatasetError(unknown_name("dataset", name, _REGISTRY, key=key))


def dataset_info(name: str) -> DatasetInfo:
    """The registry's description of ``name`` (case and ``_``/``-`` insensitive)."""
    return _entry(name).info


def train_size(name: str, root: str | Path | None = None) -> int | None:
    """How many training samples ``name`` has here: counted on disk where the dataset can
    (IDX files hold their count in the header, and a user's files may be a subsample), else
    the registry's ``n_train`` (None when unknown before loading)."""
    entry = _entry(name)
    if entry.size is not None:
        try:
            return entry.size(None if root is None else Path(root).expanduser())
        except (DatasetUnavailableError, IdxFormatError, OSError):
            pass
    return entry.info.n_train


def available(name: str, root: str | Path | None = None) -> tuple[bool, str]:
    """Whether ``name`` can load here and why (or why not), without loading the data."""
    entry = _entry(name)
    try:
        return True, entry.check(None if root is None else Path(root).expanduser())
    except DatasetUnavailableError as exc:
        return False, str(exc)


def load_dataset(
    name: str, *, seed: int = 0, root: str | Path | None = None, limit: int | None = None
) -> Dataset:
    """Load ``name`` as tensors; ``limit`` keeps only the first N training samples.

    The returned ``info`` describes what was loaded: real sizes and the test-set chance.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    entry, path = _entry(name), None if root is None else Path(root).expanduser()
    entry.check(path)  # the actionable message, before any slow import
    x_tr, y_tr, x_te, y_te = entry.loader(seed=seed, root=path)
    if limit is not None:
        x_tr, y_tr = x_tr[:limit], y_tr[:limit]
    train, test = _tensors(entry.info, x_tr, y_tr), _tensors(entry.info, x_te, y_te)
    counts = torch.bincount(test.tensors[1], minlength=entry.info.num_classes)
    chance = counts.max().item() / len(test) if len(test) else 1.0 / entry.info.num_classes
    info = replace(entry.info, n_train=len(train), n_test=len(test), chance=chance)
    log.debug("loaded %s: %d train, %d test", info.name, len(train), len(test))
    return Dataset(info=info, train=train, test=test)


def _tensors(info: DatasetInfo, x: Array, y: Array) -> TensorDataset:
    """Convert and validate, so a bad loader fails here and not deep inside training."""
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64).reshape(-1)
    if xt.shape[0] != yt.shape[0] or xt[0:1].numel() != int(np.prod(info.in_shape)):
        raise ValueError(f"{info.name}: inputs {tuple(xt.shape)} vs {len(yt)} labels")
    if len(yt) and (yt.min() < 0 or yt.max() >= info.num_classes):
        raise ValueError(f"{info.name}: labels outside 0..{info.num_classes - 1}")
    return TensorDataset(xt.reshape(-1, *info.in_shape).contiguous(), yt)


def _search_dirs(root: Path | None) -> list[Path]:
    """Where dataset files may live, most specific first."""
    dirs = [root, data_dir(), nnrag_home() / "data"]
    return [d for d in dirs if d is not None] + list(SYSTEM_DATA_DIRS)


def label_sources() -> list[str]:
    """Absolute paths of the existing files and folders that hold labels of any dataset.

    The sandbox hides them all, so trained code cannot read the test labels and forge its
    score: the search folders and every registered dataset's ``sources()``. Packages are
    located without importing them (the caller may be about to fork a sandbox). A symbolic
    link is listed with its target, as hiding a link does not hide what it points to.
    """
    found = list(_search_dirs(None))
    for name in sorted(_REGISTRY):
        if (sources := _REGISTRY[name].sources) is None:
            continue
        try:
            found += sources()
        except Exception as exc:  # fail closed: no sandbox with unknown labels left visible
            raise NnragError(f"dataset {name!r}: its sources() failed: {exc}") from exc
    paths: set[str] = set()
    for p in found:
        path = Path(p).expanduser().absolute()
        if os.path.lexists(path):
            paths |= {str(path), os.path.realpath(path)}
    return sorted(paths)


def _package_dirs(module: str, *parts: str) -> list[Path]:
    """``<package folder>/<parts>`` for each folder of the top-level package ``module``,
    found without importing it (an absent package has none)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a broken install or a module without a spec
        return []
    if spec is None:
        return []
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin and spec.has_location:
        roots = [str(Path(spec.origin).parent)]
    return [Path(r, *parts) for r in roots]


def _split(x: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Seeded, stratified 80/20 split, for datasets that ship without one."""
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def _needs(module: str, dataset: str) -> None:
    """Raise DatasetUnavailableError naming the extra when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise DatasetUnavailableError(
            f"dataset {dataset!r} needs the '{module}' package, which is not installed: "
            "pip install 'nnrag[data]' -c constraints.txt"
        )


# --- digits: bundled with scikit-learn ------------------------------------------------


@register(
    DatasetInfo(
        "digits", "image", (1, 8, 8), 10, 1437, 360, 0.1, "scikit-learn load_digits (bundled)",
        "1,797 8x8 handwritten digits (UCI), 17 grey levels scaled to [0, 1]",
    ),
    sources=lambda: _package_dirs("sklearn", "datasets", "data"),  # the rest stays visible
)  # fmt: skip
def _load_digits(*, seed: int, root: Path | None) -> Split:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _split(bunch.images.astype(np.float32) / 16.0, bunch.target, seed)


# --- mnist1d: generated locally, cached -----------------------------------------------

def _check_mnist1d(root: Path | None) -> str:
    _needs("mnist1d", "mnist1d")
    cache = _mnist1d.cached()
    return f"cached at {cache}" if cache else "mnist1d installed (generated locally)"


@register(
    DatasetInfo(
        "mnist1d", "signal", (1, 40), 10, 4000, 1000, 0.1,
        "mnist1d make_dataset (generated locally, cached; test split from a private key)",
        "1-D signals drawn from digit templates with noise, shear and shifts; standardised. "
        "The train split is mnist1d's public one (seed 42); the test split is drawn with a "
        "key derived from $NNRAG_HOME/secret, so trained code cannot regenerate its labels: "
        "scores compare with published mnist1d figures statistically, not sample for sample",
    ),
    check=_check_mnist1d,
    sources=lambda: [*_package_dirs("mnist1d"), secret_path()],
)  # fmt: skip
def _load_mnist1d(*, seed: int, root: Path | None) -> Split:
    return _mnist1d.load()


# --- animal-shape-mnist: pickles bundled with its package ----------------------------

_ANIMAL_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}  # fmt: skip


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays only, so a tampered data file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _check_animal(root: Path | None) -> str:
    _needs("animal_shape_mnist", "animal-shape-mnist")
    folder = resources.files("animal_shape_mnist") / "data" / "Animal Shape"
    if missing := [f for f in _ANIMAL_FILES if not (folder / f).is_file()]:
        raise DatasetUnavailableError(
            f"dataset 'animal-shape-mnist': {', '.join(missing)} missing from its package; "
            "reinstall it: pip install --force-reinstall animal-shape-mnist"
        )
    return "bundled with the animal-shape-mnist package"


@register(
    DatasetInfo(
        "animal-shape-mnist", "image", (1, 28, 28), 10, 8000, 2000, 0.1,
        "animal-shape-mnist package (bundled pickles)",
        "10,000 28x28 grey animal silhouettes, 1,000 per class, scaled to [0, 1]",
    ),
    check=_check_animal,
    sources=lambda: _package_dirs("animal_shape_mnist", "data"),
)  # fmt: skip
def _load_animal(*, seed: int, root: Path | None) -> Split:
    # importlib.resources, not the package's own loader: that one imports tensorflow
    folder = resources.files("animal_shape_mnist") / "data" / "Animal Shape"
    arrays = []
    for name in _ANIMAL_FILES:
        with (folder / name).open("rb") as fh, gzip.GzipFile(fileobj=fh) as gz:
            arrays.append(np.asarray(_NumpyOnlyUnpickler(gz).load()))
    return _split(arrays[0].astype(np.float32) / 255.0, arrays[1], seed)


# --- IDX files: fashion-mnist (Debian package), mnist ---------------------------------

_IDX_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip


def _idx_source(name: str, subdirs: tuple[str, ...],
                hint: str) -> tuple[Loader, Check, Size]:
    """Loader and check for the four MNIST-style IDX files (gzipped or not)."""

    def locate(root: Path | None) -> list[Path]:
        dirs = [base / sub for base in _search_dirs(root) for sub in subdirs]
        for d in dirs:
            found = [next((p for p in (d / f, d / f"{f}.gz") if p.is_file()), None)
                     for f in _IDX_FILES]  # fmt: skip
            if all(found):
                return [p for p in found if p is not None]
        raise DatasetUnavailableError(
            f"dataset {name!r}: no IDX files ({', '.join(f + '[.gz]' for f in _IDX_FILES)}) "
            f"in any of: {', '.join(map(str, dirs))}. {hint}"
        )

    def loader(*, seed: int, root: Path | None) -> Split:
        try:
            x_tr, y_tr, x_te, y_te = (read_idx(p) for p in locate(root))
        except IdxFormatError as exc:
            raise DatasetUnavailableError(f"dataset {name!r}: {exc}") from exc
        return x_tr.astype(np.float32) / 255.0, y_tr, x_te.astype(np.float32) / 255.0, y_te

    def size(root: Path | None) -> int:
        return idx_length(locate(root)[1])  # the training labels

    return loader, lambda root: f"IDX files in {locate(root)[0].parent}", size


for _name, _subdirs, _hint, _source, _what in (
    ("fashion-mnist", ("fashion-mnist",),
     "Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or copy "
     "them into <root>/fashion-mnist/.",
     "IDX files (Debian dataset-fashion-mnist or user-provided)",
     "Zalando's 28x28 grey clothing images"),
    ("mnist", ("mnist", "MNIST/raw"),
     "Copy the four files (from an MNIST mirror or a torchvision download) into "
     "<root>/mnist/; torchvision itself is not needed.",
     "IDX files (user-provided; torchvision's MNIST/raw layout works too)",
     "LeCun's 28x28 grey handwritten digits"),
):  # fmt: skip
    _loader, _check, _size = _idx_source(_name, _subdirs, _hint)
    register(
        DatasetInfo(
            _name, "image", (1, 28, 28), 10, 60000, 10000, 0.1, _source,
            f"{_what} in 10 classes, scaled to [0, 1]",
        ),
        _loader, check=_check, size=_size,
    )  # fmt: skip


# --- through torchvision.datasets (download=False): cifar10, cifar100, svhn -----------


def _torchvision_source(name: str, cls: str, markers: tuple[str, ...]) -> tuple[Loader, Check]:
    """Loader and check for user-provided files read by ``torchvision.datasets.<cls>``."""

    def check(root: Path | None) -> str:
        dirs = [d for base in _search_dirs(root) for d in (base / name, base)]
        found = next((d for d in dirs if all((d / m).exists() for m in markers)), None)
        problems = [] if found else [
            f"no {' + '.join(markers)} in any of: {', '.join(map(str, dirs))}; fetch them "
            f"elsewhere with torchvision.datasets.{cls}(root, download=True) and copy that "
            f"root's contents into <root>/{name}/"
        ]  # fmt: skip
        hint = "pip install the torchvision release paired with your torch release"
        try:
            if importlib.util.find_spec("torchvision") is None:
                problems.append(f"torchvision is not installed; {hint}")
            elif found is not None:  # the import costs seconds: only once the files exist
                importlib.import_module("torchvision")
        except Exception as exc:  # a build for another torch raises RuntimeError
            problems.append(f"torchvision does not import ({type(exc).__name__}: {exc}); {hint}")
        if problems:
            raise DatasetUnavailableError(f"dataset {name!r} unavailable: {'; '.join(problems)}")
        return str(found)

    def loader(*, seed: int, root: Path | None) -> Split:
        found = check(root)
        import torchvision.datasets as tvd

        parts: list[np.ndarray] = []
        for split in ("train", "test"):
            kw = {"split": split} if cls == "SVHN" else {"train": split == "train"}
            try:
                ds = getattr(tvd, cls)(found, download=False, **kw)
            except RuntimeError as exc:  # torchvision's "not found or corrupted"
                raise DatasetUnavailableError(f"dataset {name!r}: {exc}") from exc
            x = np.asarray(ds.data)  # SVHN is stored NCHW, CIFAR NHWC
            x = x if cls == "SVHN" else x.transpose(0, 3, 1, 2)
            y = ds.labels if cls == "SVHN" else ds.targets
            parts += [x.astype(np.float32) / 255.0, np.asarray(y)]
        return parts[0], parts[1], parts[2], parts[3]

    return loader, check


for _name, _cls, _markers, _classes, _sizes, _what in (
    ("cifar10", "CIFAR10", ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),
     10, (50000, 10000), "32x32 colour photos in 10 classes"),
    ("cifar100", "CIFAR100", ("cifar-100-python/train", "cifar-100-python/test"),
     100, (50000, 10000), "32x32 colour photos in 100 fine classes"),
    ("svhn", "SVHN", ("train_32x32.mat", "test_32x32.mat"),
     10, (73257, 26032), "32x32 colour house-number digits (cropped)"),
):  # fmt: skip
    _loader, _check = _torchvision_source(_name, _cls, _markers)
    register(
        DatasetInfo(
            _name, "image", (3, 32, 32), _classes, *_sizes, 1.0 / _classes,
            f"torchvision.datasets.{_cls} (user-provided files, download=False)",
            f"{_what}, scaled to [0, 1]",
        ),
        _loader, check=_check,
    )  # fmt: skip
