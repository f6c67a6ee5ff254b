"""The ``prior`` sampler's knowledge: the best configurations of the models most similar by
code to the tuned one, mapped into the study's search space.

Similarity is static and deterministic: two models with the same structural fingerprint
(:func:`nnrag.index.code_fingerprint`) are the same architecture (similarity 1); otherwise
the cosine of their layer histograms (the predictor's source features, ``log1p`` of each
count). The records themselves (nnrag's run store, LEMUR's export) are read by the layer
above and injected as :class:`PriorModel` lists, so this module reads no stage beside it;
it only caches them as JSON (:func:`save_models` / :func:`load_models`).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrag.tune.space import Param

#: LEMUR's (and the run store's predictor-view) names -> nnrag's training fields.
NAMES = {"lr": "lr", "momentum": "momentum", "batch": "batch_size", "batch_size": "batch_size",
         "dropout": "dropout", "transform": "transform", "optimizer": "optimizer",
         "weight_decay": "weight_decay", "scheduler": "scheduler"}
#: An epoch should take at least this many optimizer steps after adaptation (see adapt()).
MIN_STEPS = 8
#: What a record that does not name these was trained with: LEMUR's models (and nnrag's
#: contract, :func:`nnrag.train.contract.make_optimizer`) train with SGD, no scheduler and
#: no transform unless told otherwise, so a warm configuration keeps those rather than
#: letting the sampler draw, say, Adam for a learning rate tuned for SGD.
RECORD_DEFAULTS = {"optimizer": "sgd", "scheduler": "none", "transform": "none"}
#: Recorded transform kinds -> nnrag's transform doing the same (LEMUR's ``norm_*``).
TRANSFORM_ALIASES = {"norm": "standardize"}


@dataclass(frozen=True)
class PriorConfig:
    """One recorded trial's configuration (source names, e.g. LEMUR's ``batch``) and the
    best value it reached on ``dataset``; ``ref`` says where it was recorded. ``curve`` (the
    value per epoch, where recorded) lets a study with a short epoch budget prefer the
    configurations that were good early over those that only won after long training."""

    dataset: str
    hyperparameters: dict[str, Any]
    best: float
    ref: str
    curve: tuple[float, ...] = ()

    def at(self, epochs: int | None) -> float:
        """The best value within the first ``epochs`` epochs (``best`` without a curve or a
        budget)."""
        if not epochs or not self.curve:
            return self.best
        return max(self.curve[:epochs])


@dataclass(frozen=True)
class PriorModel:
    """A model with recorded trials: its code's fingerprint and layer histogram, and its
    best configurations (best first within each dataset)."""

    source: str  # "runs" or "lemur"
    name: str
    family: str
    fingerprint: str
    features: tuple[float, ...]
    configs: tuple[PriorConfig, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "family": self.family,
                "fingerprint": self.fingerprint,
                "features": [None if math.isnan(f) else f for f in self.features],
                "configs": [c.__dict__ for c in self.configs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PriorModel:
        return cls(d["source"], d["name"], d["family"], d["fingerprint"],
                   tuple(math.nan if f is None else float(f) for f in d["features"]),
                   tuple(PriorConfig(**{**c, "curve": tuple(c.get("curve") or ())})
                         for c in d["configs"]))


@dataclass(frozen=True)
class Warm:
    """A configuration to enqueue: values in the study's space, and where they came from."""

    params: dict[str, Any]
    provenance: dict[str, Any]


def _vector(features: Sequence[float]) -> list[float]:
    return [math.log1p(f) if f == f and f > 0 else 0.0 for f in features]


def similarity(a: PriorModel | tuple[str, Sequence[float]], b: PriorModel) -> float:
    """1 for the same fingerprint, else the cosine of the two layer histograms (0..1)."""
    fp, feats = (a.fingerprint, a.features) if isinstance(a, PriorModel) else a
    if fp and fp == b.fingerprint:
        return 1.0
    u, v = _vector(feats), _vector(b.features)
    nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
    if nu == 0 or nv == 0:
        return 0.0
    return min(0.999999, sum(x * y for x, y in zip(u, v, strict=False)) / (nu * nv))


def nearest(target: tuple[str, Sequence[float]], models: Iterable[PriorModel], k: int,
            exclude: Callable[[PriorModel], bool] | None = None,
            min_similarity: float = 0.5) -> list[tuple[float, PriorModel]]:
    """The ``k`` most similar models with at least one configuration (ties by name)."""
    scored = [(similarity(target, m), m) for m in models
              if m.configs and (exclude is None or not exclude(m))]
    scored = [(s, m) for s, m in scored if s >= min_similarity]
    scored.sort(key=lambda sm: (-sm[0], sm[1].source, sm[1].name))
    return scored[:k]


def _snap_choice(value: Any, choices: Sequence[Any], log: bool) -> Any:
    """The choice equal to ``value`` (strings: case-insensitively), or for a number the
    nearest numeric choice (in log scale for ``log``); None when nothing fits."""
    if isinstance(value, str):  # the name, else its kind (LEMUR's norm_32_flip: norm)
        kind = value.lower().split("_")[0]
        for wanted in (value.lower(), kind, TRANSFORM_ALIASES.get(kind, kind)):
            for c in choices:
                if isinstance(c, str) and c.lower() == wanted:
                    return c
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    numbers = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
    if not numbers:
        return None
    if log and value > 0 and all(c > 0 for c in numbers):
        return min(numbers, key=lambda c: (abs(math.log(c) - math.log(value)), c))
    return min(numbers, key=lambda c: (abs(c - value), c))


def to_space(hp: dict[str, Any], space: dict[str, Param]) -> dict[str, Any]:
    """A recorded configuration in the study's space: names mapped (:data:`NAMES`), ranges
    clipped, choices snapped to the nearest (batch sizes in log scale) or matched by name;
    what does not fit is dropped (Optuna's sampler fills it in), and a dimension the record
    does not name at all takes what the record was trained with (:data:`RECORD_DEFAULTS`)."""
    out: dict[str, Any] = {}
    for key, value in hp.items():
        name = NAMES.get(key, key)
        p = space.get(name)
        if p is None or value is None:
            continue
        if p.choices is not None:
            snapped = _snap_choice(value, p.choices, log=name == "batch_size")
            if snapped is not None:
                out[name] = snapped
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            continue
        low, high = float(p.low or 0.0), float(p.high or 0.0)
        clipped = min(max(float(value), low), high)
        out[name] = int(round(clipped)) if name == "batch_size" else clipped
    named = {NAMES.get(key, key) for key in hp}
    for name, default in RECORD_DEFAULTS.items():
        q = space.get(name)
        if out and name not in named and q is not None and q.choices is not None \
                and default in q.choices:
            out[name] = default
    return out


def adapt(params: dict[str, Any], space: dict[str, Param],
          train_size: int | None) -> dict[str, Any]:
    """The dataset rule: an epoch of the tuned dataset must take at least :data:`MIN_STEPS`
    steps, so a batch larger than ``train_size / MIN_STEPS`` is cut to the largest batch the
    space allows under it, and ``lr`` is scaled by the same factor (the linear scaling rule
    for SGD), clipped to its range."""
    batch = params.get("batch_size")
    p = space.get("batch_size")
    if train_size is None or not isinstance(batch, int) or p is None or batch <= 0:
        return params
    cap = max(1, train_size // MIN_STEPS)
    if batch <= cap:
        return params
    if p.choices is not None:
        fits = [c for c in p.choices if isinstance(c, int) and c <= cap]
        new = max(fits) if fits else min(c for c in p.choices if isinstance(c, int))
    else:
        new = max(int(p.low or 1), min(cap, int(p.high or cap)))
    out = dict(params, batch_size=new)
    lr, q = out.get("lr"), space.get("lr")
    if isinstance(lr, float) and q is not None and q.choices is None and new < batch:
        out["lr"] = min(max(lr * new / batch, float(q.low or 0.0)), float(q.high or 0.0))
    return out


def _key(params: dict[str, Any]) -> str:
    return json.dumps({k: (round(v, 6) if isinstance(v, float) else v)
                       for k, v in sorted(params.items())})


#: How far a recorded dataset is from the tuned one (0: the same); None: no order known.
Distance = Callable[[str], float]
#: Whether a recorded result is worth copying (e.g. clearly above the dataset's chance).
Useful = Callable[[PriorConfig], bool]


def _ordered(configs: Sequence[PriorConfig], dataset: str, distance: Distance | None = None,
             useful: Useful | None = None, epochs: int | None = None) -> list[PriorConfig]:
    """One model's useful configurations: the tuned dataset's first, then round-robin over
    its other datasets, closest first (``distance``), each dataset best first, where best
    means best within the study's ``epochs`` when the record has a learning curve."""
    groups: dict[str, list[PriorConfig]] = {}
    for c in configs:
        if useful is None or useful(c):
            groups.setdefault(c.dataset, []).append(c)
    for g in groups.values():
        g.sort(key=lambda c: (-c.at(epochs), -c.best))

    def far(d: str) -> float:
        return 0.0 if d == dataset else 1.0 + (distance(d) if distance is not None else 0.0)

    order = sorted(groups, key=lambda d: (far(d), -len(groups[d]), d))
    out: list[PriorConfig] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [groups[d][i] for d in order if i < len(groups[d])]
    return out


def warm_configs(target: tuple[str, Sequence[float]], models: Iterable[PriorModel],
                 space: dict[str, Param], dataset: str, *, train_size: int | None = None,
                 k_models: int = 5, per_model: int = 2, limit: int = 8,
                 exclude: Callable[[PriorModel], bool] | None = None,
                 distance: Distance | None = None, useful: Useful | None = None,
                 epochs: int | None = None) -> list[Warm]:
    """The configurations to try first, most similar model first, deduplicated after
    mapping into ``space``; each carries its provenance (source, model, similarity, the
    dataset it was recorded on, its recorded best and its record). With ``epochs`` (the
    study's budget per trial) each model's configurations are ranked by what they reached
    within that many epochs: LEMUR's overall best often comes from long training at a small
    learning rate, which is a poor start for a 3-epoch study."""
    out: list[Warm] = []
    seen: set[str] = set()
    for score, model in nearest(target, models, k_models, exclude):
        taken = 0
        for config in _ordered(model.configs, dataset, distance, useful, epochs):
            if taken >= per_model or len(out) >= limit:
                break
            params = adapt(to_space(config.hyperparameters, space), space, train_size)
            if not params or _key(params) in seen:
                continue
            seen.add(_key(params))
            taken += 1
            out.append(Warm(params, {"source": model.source, "model": model.name,
                                     "similarity": round(score, 4), "dataset": config.dataset,
                                     "recorded_best": round(config.best, 4),
                                     **({"recorded_at_epochs": round(config.at(epochs), 4)}
                                        if epochs and config.curve else {}),
                                     "record": config.ref}))
    return out


def save_models(path: Path, key: str, models: Sequence[PriorModel]) -> None:
    """Cache ``models`` at ``path`` under ``key`` (what they were read from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump({"key": key, "models": [m.to_dict() for m in models]}, fh)
    tmp.replace(path)


def load_models(path: Path, key: str) -> list[PriorModel] | None:
    """The cached models, or None when there is no cache or it was made from other files."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        if data.get("key") != key:
            return None
        return [PriorModel.from_dict(d) for d in data["models"]]
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
