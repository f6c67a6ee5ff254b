"""The search space of a study: documented defaults from the model's declared
hyperparameters, overridable with a YAML file, checked before any trial runs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrag.exceptions import SearchSpaceError

#: nnrag's own training fields (``Hyperparameters``, and the spec's ``transform``): every
#: model can be tuned on these.
NNRAG_FIELDS = frozenset({"lr", "momentum", "weight_decay", "batch_size", "dropout",
                          "optimizer", "scheduler", "transform"})
#: Dimensions that are fields of the training spec itself, not of its ``hyperparameters``.
SPEC_FIELDS = frozenset({"transform"})


@dataclass(frozen=True)
class Param:
    """One dimension: a float/int range (``log`` for log-uniform) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}


#: The defaults (docs/tune.md lists them); ``dropout`` only for a model that declares it.
DEFAULTS: dict[str, Param] = {
    "lr": Param("lr", 1e-4, 1e-1, log=True),
    "momentum": Param("momentum", 0.0, 0.99),
    "batch_size": Param("batch_size", choices=(16, 32, 64, 128)),
    "dropout": Param("dropout", 0.0, 0.5),
    "optimizer": Param("optimizer", choices=("sgd", "adam", "adamw")),
    "scheduler": Param("scheduler", choices=("none", "cosine", "step")),
    # transforms that fit every dataset kind; flips and resizes only where the user says so
    "transform": Param("transform", choices=("none", "standardize")),
}


def default_space(declared: Iterable[str] | None) -> dict[str, Param]:
    """Every default dimension; dropout only when the model declares it (a model without
    a dropout layer ignores the value, so searching it would only add noise)."""
    names = set(declared or ())
    return {k: p for k, p in DEFAULTS.items() if k != "dropout" or "dropout" in names}


def _param(name: str, entry: Any) -> Param:
    where = f"search space: {name}"
    if not isinstance(entry, dict):
        raise SearchSpaceError(f"{where}: give {{low, high[, log]}} or {{choices: [...]}}, "
                               f"got {entry!r}")
    unknown = sorted(set(entry) - {"low", "high", "log", "choices"})
    if unknown:
        raise SearchSpaceError(f"{where}: unknown key {unknown[0]!r} "
                               "(use low, high, log or choices)")
    if "choices" in entry:
        choices = entry["choices"]
        if not isinstance(choices, list) or not choices:
            raise SearchSpaceError(f"{where}: choices must be a non-empty list")
        if set(entry) - {"choices"}:
            raise SearchSpaceError(f"{where}: give either choices or low/high, not both")
        if not all(isinstance(c, str | int | float | bool) for c in choices):
            raise SearchSpaceError(f"{where}: choices must be numbers, strings or booleans")
        return Param(name, choices=tuple(choices))
    if "low" not in entry or "high" not in entry:
        raise SearchSpaceError(f"{where}: give both low and high (or choices)")
    low, high, log = entry["low"], entry["high"], entry.get("log", False)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise SearchSpaceError(f"{where}: low and high must be numbers")
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}: log must be true or false")
    if low > high:
        raise SearchSpaceError(f"{where}: low {low} is greater than high {high}")
    if log and low <= 0:
        raise SearchSpaceError(f"{where}: a log range must be above 0 (low is {low})")
    if name == "batch_size":
        low, high = int(low), int(high)
        if low < 1:
            raise SearchSpaceError(f"{where}: batch_size must be at least 1")
    return Param(name, float(low) if name != "batch_size" else low,
                 float(high) if name != "batch_size" else high, log)


def parse_space(data: Any, declared: Iterable[str] | None,
                source: str = "search space") -> dict[str, Param]:
    """The default space updated with ``data`` (``{name: {...}}``); a name that is neither an
    nnrag field nor declared by the model is an error (``declared`` None: not known here,
    so only nnrag's fields are allowed)."""
    space = default_space(declared)
    if data is None:
        return space
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: a mapping of hyperparameter names, "
                               f"got {type(data).__name__}")
    allowed = NNRAG_FIELDS | set(declared or ())
    for name, entry in data.items():
        if not isinstance(name, str) or name not in allowed:
            raise SearchSpaceError(
                f"{source}: {name!r} is not a hyperparameter this model supports "
                f"({', '.join(sorted(allowed))})")
        space[name] = _param(name, entry)
    if not space:
        raise SearchSpaceError(f"{source}: the search space is empty")
    return space


def load_space(path: str | Path, declared: Iterable[str] | None) -> dict[str, Param]:
    """Read a YAML space file (:func:`parse_space`)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SearchSpaceError(f"{path}: cannot read the search space "
                               f"({str(exc).splitlines()[0]})") from None
    return parse_space(data, declared, str(path))


def signature(space: dict[str, Param]) -> str:
    """The space as canonical JSON: a study keeps it and refuses another one."""
    return json.dumps({k: space[k].to_dict() for k in sorted(space)}, sort_keys=True)


def trial_spec(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The training spec of one point of the space: ``base`` with the point's
    hyperparameters, and its spec fields (:data:`SPEC_FIELDS`) at the top level."""
    hp = {k: v for k, v in params.items() if k not in SPEC_FIELDS}
    top = {k: v for k, v in params.items() if k in SPEC_FIELDS}
    return {**base, **top, "hyperparameters": {**base.get("hyperparameters", {}), **hp}}


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per dimension."""
    values: dict[str, Any] = {}
    for name in sorted(space):
        p = space[name]
        if p.choices is not None:
            values[name] = trial.suggest_categorical(name, list(p.choices))
        elif name == "batch_size":
            values[name] = trial.suggest_int(name, int(p.low or 1), int(p.high or 1), log=p.log)
        else:
            values[name] = trial.suggest_float(name, float(p.low or 0.0), float(p.high or 0.0),
                                               log=p.log)
    return values
