"""The predictor's inputs: what a model's source, its hyperparameters and its dataset say.

Source features are read statically with :mod:`ast` (the code is parsed, never executed):
how often each layer type is constructed, the number of weight layers (a depth proxy),
the widths written as literals, the optimizer ``train_setup`` builds, and the code's size.
The structural fingerprint (:func:`nnrag.index.code_fingerprint`) names the architecture
independently of identifiers and formatting; it is kept beside the features for grouping and
lookup, not fed to the learner (a hash carries no order a tree can split on). All features
are floats, NaN where unknown, so one row layout serves LEMUR records, run-store records and
a single ``nnrag predict`` call.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nnrag.exceptions import PredictError, unknown_name

LAYERS = (
    "Conv1d", "Conv2d", "ConvTranspose2d", "Linear", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "GroupNorm", "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout", "Dropout2d", "MultiheadAttention",
    "Embedding", "Sequential", "ModuleList", "Identity", "Flatten",
)
_WEIGHTED = ("Conv1d", "Conv2d", "ConvTranspose2d", "Linear", "MultiheadAttention", "Embedding")
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop")
TRANSFORMS = ("norm", "echo", "none")

# The datasets LEMUR trains on: (classes, channels, image side). Chance = 1 / classes.
LEMUR_DATASETS: dict[str, tuple[int, int, int]] = {
    "cifar-10": (10, 3, 32), "cifar-100": (100, 3, 32), "svhn": (10, 3, 32),
    "mnist": (10, 1, 28), "celeba-gender": (2, 3, 178), "imagenette": (10, 3, 160),
    "places365": (365, 3, 256),
}
#: The size of each LEMUR dataset's standard training split (torchvision's), which turns a
#: recorded epoch into optimizer steps (:func:`nnrag.tune.prior.matched_epochs`).
LEMUR_TRAIN_SIZES: dict[str, int] = {
    "cifar-10": 50_000, "cifar-100": 50_000, "svhn": 73_257, "mnist": 60_000,
    "celeba-gender": 162_770, "imagenette": 9_469, "places365": 1_803_460,
}

SOURCE_FEATURES = (
    *(f"layer_{name}" for name in LAYERS), "layers_total", "weight_layers", "loops",
    "classes_defined", "lines", "width_max", "width_log_sum", "functional_calls",
    *(f"opt_{name}" for name in OPTIMIZERS), "parse_failed",
)
HP_FEATURES = ("lr_log10", "momentum", "batch_log2", "dropout", "epochs", "transform_kind",
               "transform_size", "transform_flip", "params_log10")
DATASET_FEATURES = ("ds_classes", "ds_channels", "ds_side", "ds_chance_log10")


@dataclass(frozen=True)
class DatasetFacts:
    """What the predictor knows of a dataset without loading it."""

    name: str
    classes: int
    channels: int
    side: int

    @property
    def chance(self) -> float:
        return 1.0 / self.classes


def dataset_facts(name: str) -> DatasetFacts:
    """LEMUR's datasets by name, then nnrag's registered ones (``digits``, ``mnist1d``...)."""
    if name in LEMUR_DATASETS:
        return DatasetFacts(name, *LEMUR_DATASETS[name])
    from nnrag.train.datasets import dataset_info, list_datasets

    try:
        info = dataset_info(name)
    except Exception as exc:  # UnknownDatasetError, or a registry that cannot load
        known = [*LEMUR_DATASETS, *(d.name for d in list_datasets())]
        raise PredictError(unknown_name("dataset", name, known)) from exc
    shape = info.in_shape
    return DatasetFacts(name, info.num_classes, shape[0], shape[-1])


def _leaf(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


@lru_cache(maxsize=4096)
def source_features(code: str) -> tuple[float, ...]:
    """The static features of one module's source, in :data:`SOURCE_FEATURES` order."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return (*([math.nan] * (len(SOURCE_FEATURES) - 1)), 1.0)
    counts = dict.fromkeys(LAYERS, 0)
    optimizers = dict.fromkeys(OPTIMIZERS, 0)
    total = weighted = loops = classes = functional = 0
    widths: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.While | ast.comprehension):
            loops += 1
        elif isinstance(node, ast.ClassDef):
            classes += 1
        elif isinstance(node, ast.Call):
            name = _leaf(node.func)
            owner = node.func.value if isinstance(node.func, ast.Attribute) else None
            if isinstance(owner, ast.Name) and owner.id == "F":
                functional += 1
            if name in counts:
                counts[name] += 1
                total += 1
            if name in _WEIGHTED:
                weighted += 1
                widths += [a.value for a in node.args
                           if isinstance(a, ast.Constant) and type(a.value) is int
                           and a.value > 0]
            if name in optimizers and isinstance(owner, ast.Attribute | ast.Name):
                optimizers[name] += 1
    lines = code.count("\n") + 1
    return (*map(float, counts.values()), float(total), float(weighted), float(loops),
            float(classes), float(lines), float(max(widths, default=0)),
            math.log10(1 + sum(widths)), float(functional),
            *(float(v > 0) for v in optimizers.values()), 0.0)


def parse_or_raise(code: str, where: str) -> None:
    """Refuse a model file that does not parse, naming the line (``nnrag predict show``)."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        raise PredictError(f"{where} does not parse as Python (line {exc.lineno}: "
                           f"{exc.msg}); give the model's source file") from exc
    except ValueError as exc:
        raise PredictError(f"{where} does not parse as Python ({exc})") from exc


_TRANSFORM = re.compile(r"^(?P<kind>[a-z]+)(?:_(?P<size>\d+))?(?P<flip>_flip)?$")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else math.nan
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return math.nan
        return number if math.isfinite(number) else math.nan
    return math.nan


def _log(value: float, base: float) -> float:
    return math.log(value, base) if value > 0 else math.nan


def hp_features(hp: dict[str, Any], epochs: int | None, params: int | None) -> tuple[float, ...]:
    """Hyperparameters in :data:`HP_FEATURES` order. LEMUR's transform names (``norm_32_flip``)
    become kind, resize side and flip; anything else is kind ``none``."""
    transform = str(hp.get("transform") or "none")
    match = _TRANSFORM.match(transform)
    kind, size, flip = math.nan, math.nan, 0.0
    if match and match["kind"] in TRANSFORMS:
        kind = float(TRANSFORMS.index(match["kind"]))
        size = float(match["size"]) if match["size"] else math.nan
        flip = float(bool(match["flip"]))
    elif "flip" in transform:
        flip = 1.0
    batch = _number(hp.get("batch", hp.get("batch_size")))
    return (_log(_number(hp.get("lr")), 10), _number(hp.get("momentum")), _log(batch, 2),
            _number(hp.get("dropout")), _number(epochs), kind, size, flip,
            _log(_number(params), 10))


def dataset_features(facts: DatasetFacts) -> tuple[float, ...]:
    return (float(facts.classes), float(facts.channels), float(facts.side),
            math.log10(facts.chance))


def curve_features(curve: tuple[float, ...], k: int) -> tuple[float, ...]:
    """The first ``k`` accuracies, then best, last and last step (k = 0: nothing)."""
    if k == 0:
        return ()
    head = curve[:k]
    step = head[-1] - head[-2] if k >= 2 else math.nan
    return (*head, max(head), head[-1], step)


def feature_names(k: int) -> tuple[str, ...]:
    curve = (*(f"acc_{i + 1}" for i in range(k)), "acc_best", "acc_last", "acc_step") if k else ()
    return (*SOURCE_FEATURES, *HP_FEATURES, *DATASET_FEATURES, *curve)


def row(code: str | None, hp: dict[str, Any], facts: DatasetFacts, curve: tuple[float, ...],
        k: int, *, epochs: int | None = None, params: int | None = None) -> list[float]:
    """One learner input row for a trial seen up to epoch ``k``."""
    source = source_features(code) if code is not None else (math.nan,) * len(SOURCE_FEATURES)
    return [*source, *hp_features(hp, epochs, params), *dataset_features(facts),
            *curve_features(curve, k)]
