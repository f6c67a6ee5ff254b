"""The spec the LLM writes: its JSON schema for constrained decoding, and its fixes.

Aliases are renamed (``learning_rate``), numbers outside their bounds clipped with a note
(schema converters ignore numeric bounds, so every spec is re-validated here), and the task
overrides what it decides (dataset, epochs, seed). What cannot be fixed is a ``SpecError``.
"""

from __future__ import annotations

from typing import Any, cast

import annotated_types
from pydantic import BaseModel, ConfigDict

from nnrag.train.spec import Hyperparameters, SpecError, TrainSpec, parse_spec

ALIASES = {"learning_rate": "lr", "learningrate": "lr", "learning rate": "lr", "bs": "batch_size",
           "batchsize": "batch_size", "batch size": "batch_size", "wd": "weight_decay",
           "weightdecay": "weight_decay", "optim": "optimizer", "opt": "optimizer",
           "lr_scheduler": "scheduler", "drop_rate": "dropout", "dropout_rate": "dropout"}
HP_FIELDS = tuple(k for k in Hyperparameters.model_fields if k != "extra")
TRANSFORMS = ("none", "standardize", "flip")


class SpecProposal(BaseModel):
    """What the LLM proposes: hyperparameters and an input transform (the task fixes the rest)."""

    model_config = ConfigDict(extra="forbid")
    hyperparameters: dict[str, Any]
    transform: str = "none"


def spec_schema() -> dict[str, Any]:
    """JSON schema for constrained decoding of the spec (bounds included where honoured)."""
    props: dict[str, Any] = {}
    for name in HP_FIELDS:
        info = Hyperparameters.model_fields[name]
        ann = info.annotation
        if name in ("optimizer", "scheduler"):
            props[name] = {"type": "string", "enum": list(getattr(ann, "__args__", ()))}
            continue
        prop: dict[str, Any] = {"type": "integer" if ann is int else "number"}
        for m in info.metadata:
            if isinstance(m, annotated_types.Ge):
                prop["minimum"] = m.ge
            elif isinstance(m, annotated_types.Gt):
                prop["exclusiveMinimum"] = m.gt
            elif isinstance(m, annotated_types.Le):
                prop["maximum"] = m.le
            elif isinstance(m, annotated_types.Lt):
                prop["exclusiveMaximum"] = m.lt
        props[name] = prop
    return {"type": "object", "additionalProperties": False, "required": ["hyperparameters"],
            "properties": {"hyperparameters": {"type": "object", "properties": props,
                                               "required": ["lr", "batch_size", "optimizer"],
                                               "additionalProperties": False},
                           "transform": {"type": "string", "enum": list(TRANSFORMS)}}}


def _bounds(name: str) -> tuple[float | None, bool, float | None, bool]:
    """``(low, low_inclusive, high, high_inclusive)`` of a hyperparameter field."""
    low: float | None = None
    high: float | None = None
    low_inc = high_inc = True
    for m in Hyperparameters.model_fields[name].metadata:
        if isinstance(m, annotated_types.Ge):
            low = cast(float, m.ge)
        elif isinstance(m, annotated_types.Gt):
            low, low_inc = cast(float, m.gt), False
        elif isinstance(m, annotated_types.Le):
            high = cast(float, m.le)
        elif isinstance(m, annotated_types.Lt):
            high, high_inc = cast(float, m.lt), False
    return low, low_inc, high, high_inc


def clip_value(name: str, value: Any) -> tuple[Any, str | None]:
    """A numeric hyperparameter inside its bounds, with a note when it had to move."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value) if name != "batch_size" else int(float(value))
        except (TypeError, ValueError):
            return value, None  # not a number: left for pydantic to reject with its message
    low, low_inc, high, high_inc = _bounds(name)
    is_int = Hyperparameters.model_fields[name].annotation is int
    new = value
    if low is not None and (value < low or (value == low and not low_inc)):
        new = low if low_inc else (low + 1 if is_int else (low + 1e-4 if low == 0 else low * 1.01))
    if high is not None and (value > high or (value == high and not high_inc)):
        new = high if high_inc else (high - 1 if is_int else high - 0.01 * (high - (low or 0)))
    if is_int:
        new = int(new)
    if new != value:
        return new, f"{name} {value} out of range: clipped to {new}"
    return new, None


def build_spec(data: dict[str, Any] | None, *, code: str, name: str, dataset: str, epochs: int,
               seed: int, wall_s: float = 300.0, limit: int | None = None,
               supported: set[str] | None = None) -> tuple[TrainSpec, list[str]]:
    """The LLM's spec as a validated :class:`TrainSpec` for the task, plus fix notes.

    The task (dataset, epochs, seed) overrides what the model wrote; aliases are renamed,
    numbers clipped into range, model-specific names the code supports passed through.
    Raises :class:`SpecError` when something cannot be fixed (a non-numeric ``lr``).
    """
    if data is None:
        raise SpecError("no spec")
    notes: list[str] = []
    data = dict(data)
    hp = data.pop("hyperparameters", None)
    if hp is None:  # a flat mapping of hyperparameters
        hp = {k: data.pop(k) for k in list(data)
              if k not in ("model", "dataset", "transform", "budget", "epochs", "metric", "seed")}
    if not isinstance(hp, dict):
        raise SpecError(f"hyperparameters must be a mapping, got {type(hp).__name__}")
    for key in ("model", "dataset", "budget", "epochs", "metric", "seed"):
        if key in data:
            data.pop(key)
            notes.append(f"spec field {key!r} ignored: the task decides it")
    transform = data.pop("transform", "none")
    if transform not in TRANSFORMS:
        notes.append(f"unknown transform {transform!r} dropped")
        transform = "none"
    if data:
        raise SpecError(f"unknown spec fields: {', '.join(map(str, data))}")
    clean: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for raw_key, value in hp.items():
        key = ALIASES.get(str(raw_key).lower().strip(), str(raw_key).lower().strip())
        if key != raw_key:
            notes.append(f"{raw_key!r} renamed to {key!r}")
        if key in ("optimizer", "scheduler") and isinstance(value, str):
            value = value.lower().strip()
            if key == "scheduler" and value in ("", "null", "constant"):
                value = "none"
        elif key in HP_FIELDS and key not in ("optimizer", "scheduler"):
            value, note = clip_value(key, value)
            if note:
                notes.append(note)
        if key in HP_FIELDS:
            clean[key] = value
        elif key == "extra" and isinstance(value, dict):
            extra.update(value)
        elif supported and key in supported and isinstance(value, int | float | str | bool):
            extra[key] = value
        else:
            notes.append(f"hyperparameter {raw_key!r} dropped: the model does not declare it")
    if extra:
        clean["extra"] = extra
    spec = parse_spec({"model": {"code": code, "name": name}, "dataset": dataset,
                       "transform": transform, "hyperparameters": clean, "seed": seed,
                       "limit": limit,
                       "budget": {"epochs": epochs, "wall_s": wall_s}}, "generated spec")
    return spec, notes
