"""The training spec: what to train, on what, how long, validated before anything runs.

A spec is plain YAML or JSON, so people write it by hand and generators emit it. It is
parsed into pydantic models with ``extra="forbid"``: a typo (``learning_rate``) is an error
that names the field and its location, never a silently ignored key. A file nested deeper
than :data:`MAX_DEPTH` levels is refused before (or while) parsing: the parsers recurse, and
a crafted spec must cost one line of error, not a RecursionError.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from nnrag.exceptions import NnragError

if TYPE_CHECKING:
    from nnrag.train.transforms import Plan


class SpecError(NnragError):
    """A training spec that cannot be used; the message names the field."""


#: The largest seed: numpy, scikit-learn and torch all take seeds in [0, 2**32).
MAX_SEED = 2**32 - 1
#: How deeply a spec may nest: a real one is four or five levels deep.
MAX_DEPTH = 32


def _too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``data`` (parsed JSON or YAML) nests deeper than ``limit``; iterative, so it
    cannot itself overflow the stack."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list) or id(item) in seen:
            continue  # a YAML alias to an item already walked adds no depth of its own
        if depth > limit:
            return True
        seen.add(id(item))
        stack.extend((child, depth + 1) for child in
                     (item.values() if isinstance(item, dict) else item))
    return False


def _brackets_too_deep(text: str, limit: int = 1000) -> bool:
    """A cheap look before parsing: flow brackets opened ``limit`` deep (strings are not
    told apart, hence the generous limit) would take the YAML scanner seconds to refuse."""
    depth = 0
    for char in re.sub(r"[^\[\]{}]", "", text):
        depth += 1 if char in "[{" else -1
        if depth > limit:
            return True
    return False


def _nested(source: object) -> SpecError:
    return SpecError(f"{source}: nested deeper than {MAX_DEPTH} levels; a training spec is a "
                     "mapping a few levels deep")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    """Exactly one of: a contract file, an indexed block name, or inline code."""

    file: str | None = None
    block: str | None = None
    code: str | None = None
    name: str | None = Field(None,
                             description="display name; defaults to the file stem or block name")

    @model_validator(mode="after")
    def _one_source(self) -> ModelRef:
        given = [k for k in ("file", "block", "code") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of file, block, code "
                             f"(got {', '.join(given) or 'none'})")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.file:
            return Path(self.file).stem
        return self.block.rsplit(".", 1)[-1] if self.block else "inline"


#: Values for names a model declares in ``supported_hyperparameters()`` when the spec gives
#: none (LEMUR samples them per trial; these are the usual library defaults). The table in
#: docs/cli.md lists them; a declared name outside it and the spec's fields needs a value.
DECLARED_DEFAULTS: dict[str, float] = {
    "dropout_aux": 0.2,  # GoogLeNet's auxiliary heads
    "attention_dropout": 0.0,  # ViT, Swin
    "stochastic_depth_prob": 0.1,  # ConvNeXt, Swin, EfficientNet
    "norm_eps": 1e-5,  # nn.BatchNorm2d / nn.LayerNorm
    "norm_momentum": 0.1,  # nn.BatchNorm2d
    "norm_std": 0.02,  # truncated-normal init (ConvNeXt)
    "pretrained": 0.0,  # LEMUR reads > 0.5 as "download weights"; nnrag never downloads
    "beta1": 0.9,  # Adam
    "beta2": 0.999,  # Adam
    "patch_size": 0.25,  # LEMUR's ViT: patch side as a fraction of the image side
}

# Declared names whose value is a fact of the spec's dataset (LEMUR's ``num_classes``).
DATASET_FACTS: dict[str, Callable[[Any], int]] = {
    "num_classes": lambda info: int(info.num_classes),
}


class Hyperparameters(_Strict):
    """Optimisation settings. Other top-level names are allowed only where the model
    declares them in ``supported_hyperparameters()`` (:meth:`TrainSpec.prm` checks, once
    the code is known); ``extra`` passes names through to ``prm`` unchecked."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, float | int | str | bool] = Field(init=False)

    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    batch_size: int = Field(64, ge=1, le=65536)
    dropout: float = Field(0.0, ge=0, lt=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    scheduler: Literal["none", "cosine", "step"] = "none"
    extra: dict[str, float | int | str | bool] = Field(default_factory=dict)

    def prm(self) -> dict[str, Any]:
        """The fields, ``extra`` and top-level names (unchecked: see :meth:`TrainSpec.prm`)."""
        out: dict[str, Any] = self.model_dump(exclude={"extra", *self.named()})
        out.update(self.extra)
        out.update(self.named())
        return out

    def named(self) -> dict[str, Any]:
        """The top-level names beyond the fields, as the spec gave them."""
        return dict(self.__pydantic_extra__ or {})


class Budget(_Strict):
    """Limits of one trial; the sandbox enforces wall time and memory."""

    epochs: int = Field(2, ge=1, le=10_000)
    wall_s: float = Field(300.0, gt=0, le=7 * 24 * 3600)
    memory_mb: int = Field(4096, ge=256, le=1 << 20)


class TrainSpec(_Strict):
    """One training run."""

    model: ModelRef
    dataset: str = "digits"
    transform: str | list[str] = Field(
        "none", description="a registered transform or a list, applied in order")
    shape: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="[C, H, W] the model was designed for; nnrag adapts the dataset")
    metric: str = "accuracy"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    budget: Budget = Field(default_factory=Budget)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    limit: int | None = Field(None, ge=1,
                              description="train and evaluate on the first N samples of each split")

    @field_validator("transform")
    @classmethod
    def _some_transform(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one transform (or 'none')")
        return value

    @model_validator(mode="after")
    def _known_names(self) -> TrainSpec:
        """Unknown dataset, metric or transform names, and transforms or a ``shape`` that do
        not fit the dataset, fail here, not inside a trial."""
        from nnrag.train.datasets import dataset_info
        from nnrag.train.registry import METRICS

        dataset_info(self.dataset)
        METRICS.get(self.metric)
        self.plan()
        return self

    @property
    def transforms(self) -> tuple[str, ...]:
        """The spec's transform names in order (``none`` dropped)."""
        names = [self.transform] if isinstance(self.transform, str) else self.transform
        return tuple(n for n in names if n != "none")

    @property
    def transform_name(self) -> str:
        """One string for the list: ``none``, a name, or names joined by ``,``."""
        return ",".join(self.transforms) or "none"

    def plan(self) -> Plan:
        """The adapters ``shape`` needs and the spec's transforms, checked on the dataset's
        inputs (:func:`nnrag.train.transforms.plan`)."""
        from nnrag.train.datasets import dataset_info
        from nnrag.train.transforms import TransformError, plan

        info = dataset_info(self.dataset)
        try:
            return plan(info.name, info.kind, info.in_shape, self.transforms, self.shape)
        except TransformError as exc:
            raise SpecError(str(exc)) from None

    def prm(self, declared: Iterable[str] | None) -> dict[str, Any]:
        """The LEMUR ``prm`` a model declaring ``declared`` gets (None: not known here).

        Every declared name is filled: from the spec (top level or ``extra``), else
        :data:`DECLARED_DEFAULTS`; LEMUR's ``batch`` (= ``batch_size``) and ``transform``
        (the transform's name) are always there. A top-level name that is neither a field
        nor declared is a typo and a declared name without any value is unanswerable: both
        raise :class:`SpecError` naming them.
        """
        hp = self.hyperparameters
        prm = {**hp.prm(), "batch": hp.batch_size, "transform": self.transform_name}
        if declared is None:
            return prm
        names = set(declared)
        fields = sorted(k for k in Hyperparameters.model_fields if k != "extra")
        stray = sorted(set(hp.named()) - names)
        if stray:
            raise SpecError(
                f"hyperparameters.{stray[0]}: not one of nnrag's hyperparameters "
                f"({', '.join(fields)}) and not declared by the model's "
                f"supported_hyperparameters() ({', '.join(sorted(names)) or 'none'}); "
                "names the model reads without declaring them go under hyperparameters.extra"
            )
        for name in sorted(names - prm.keys()):
            if name in DECLARED_DEFAULTS:
                prm[name] = DECLARED_DEFAULTS[name]
            elif name in DATASET_FACTS:  # the dataset answers it, not a guess
                from nnrag.train.datasets import dataset_info

                prm[name] = DATASET_FACTS[name](dataset_info(self.dataset))
        missing = sorted(names - prm.keys())
        if missing:
            raise SpecError(
                "the model's supported_hyperparameters() declares "
                f"{', '.join(map(repr, missing))}, which the spec does not set and nnrag has "
                f"no default for: set hyperparameters.{missing[0]}"
                + (" (and the others)" if len(missing) > 1 else "")
            )
        return prm

    def key(self) -> str:
        """Hash of everything but the model code: with the code hash it identifies a run.

        The transform list is hashed as its ``,``-joined names (``[flip]`` and ``flip`` are
        one spec) and ``shape`` only when given, so specs written before either existed keep
        their keys.
        """
        data = self.model_dump(exclude={"model", "shape"})
        data["transform"] = self.transform_name
        if self.shape is not None:
            data["shape"] = list(self.shape)
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_spec(data: Any, source: str = "spec") -> TrainSpec:
    """Validate a mapping; errors list every bad field as ``a.b.c: message``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a mapping with at least 'model', "
                        f"got {type(data).__name__}")
    if _too_deep(data):
        raise _nested(source)
    try:
        spec = TrainSpec.model_validate(data)
        if spec.model.code is not None:  # inline code: its declared names are known now
            from nnrag.train.contract import declared_hyperparameters

            spec.prm(declared_hyperparameters(spec.model.code))
        return spec
    except NnragError as exc:  # unknown names, raised by a validator; undeclared names
        raise SpecError(f"{source}: {exc}") from None
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"{where}: {e['msg']}")
        if len(lines) == 1:  # the usual case: one line, like every other CLI error
            raise SpecError(f"{source} is not a valid training spec: {lines[0]}") from None
        raise SpecError(f"{source} is not a valid training spec:\n"
                        + "\n".join(f"  {line}" for line in lines)) from None


def load_spec(path: str | Path) -> list[TrainSpec]:
    """Read a YAML or JSON file holding one spec or a list of specs."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec {p}: {exc}") from exc
    if _brackets_too_deep(text):
        raise _nested(p)
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except RecursionError:  # the parsers recurse once per level
        raise _nested(p) from None
    except (ValueError, yaml.YAMLError) as exc:
        message = " ".join(str(exc).split())
        raise SpecError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                        f"{message}") from None
    if _too_deep(data):
        raise _nested(p)
    items = data if isinstance(data, list) else [data]
    specs = []
    for i, item in enumerate(items):
        spec = parse_spec(item, f"{p}" + (f"[{i}]" if isinstance(data, list) else ""))
        if spec.model.file and not Path(spec.model.file).is_absolute():
            ref = spec.model.model_copy(
                update={"file": str((p.parent / spec.model.file).resolve())})
            spec = spec.model_copy(update={"model": ref})
        specs.append(spec)
    return specs
