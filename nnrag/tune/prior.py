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


def candidates(target: tuple[str, Sequence[float]], models: Sequence[PriorModel], k: int,
               dataset: str, exclude: Callable[[PriorModel], bool] | None = None,
               ) -> list[tuple[float, PriorModel]]:
    """The ``k`` most similar models, then the ``k`` most similar of those with records on
    ``dataset`` itself that are not among them. A zoo of nearly two thousand models outnumbers the
    handful a user has trained on their own data, so by similarity alone the run store's
    results on the tuned dataset (run with nnrag's own training, at the budget of the
    user's studies) would rarely be looked at, although they are the closest evidence there
    is; the score of :func:`warm_configs` then weighs them against the zoo's."""
    first = nearest(target, models, k, exclude)
    seen = {id(m) for _, m in first}

    def elsewhere(m: PriorModel) -> bool:
        return (id(m) in seen or (exclude is not None and exclude(m))
                or not any(c.dataset == dataset for c in m.configs))

    return first + nearest(target, models, k, elsewhere)


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
#: A configuration is copied only if it reached at least this fraction of the best value any
#: recorded model reached on its dataset within the same epochs (see :func:`warm_configs`).
MIN_QUALITY = 0.5
#: The power of similarity in a configuration's score (see :func:`warm_configs`). 1, linear:
#: a power of 4 (an unlike model's good result ranked below a close model's) gave a better
#: first pick on the LEMUR surrogate (regret 0.27 against 0.28) but a worse one in real
#: training (0.80 against 0.85 over 21 tasks), so it stays a parameter, not the default.
SHARPNESS = 1.0


def _recorded_batch(config: PriorConfig) -> float | None:
    value = config.hyperparameters.get("batch", config.hyperparameters.get("batch_size"))
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return float(value)


def matched_epochs(config: PriorConfig, params: dict[str, Any], epochs: int | None,
                   train_size: int | None, record_sizes: dict[str, int] | None) -> int | None:
    """How many of the record's epochs took about as many optimizer steps as ``epochs`` of
    the study will with ``params``: a 3-epoch study on 1,000 images makes fewer steps than
    one epoch of MNIST, so what a configuration reached after LEMUR's first epoch is the
    better guide. ``epochs`` itself when a size or a batch is unknown."""
    size = (record_sizes or {}).get(config.dataset)
    recorded, batch = _recorded_batch(config), params.get("batch_size")
    if not epochs or not size or not train_size or recorded is None \
            or not isinstance(batch, int) or batch <= 0:
        return epochs
    steps = epochs * math.ceil(train_size / batch)
    return max(1, round(steps / math.ceil(size / recorded)))


def warm_configs(target: tuple[str, Sequence[float]], models: Iterable[PriorModel],
                 space: dict[str, Param], dataset: str, *, train_size: int | None = None,
                 k_models: int = 10, per_model: int = 2, limit: int = 8,
                 exclude: Callable[[PriorModel], bool] | None = None,
                 distance: Distance | None = None, useful: Useful | None = None,
                 epochs: int | None = None, record_sizes: dict[str, int] | None = None,
                 min_quality: float = MIN_QUALITY,
                 sharpness: float = SHARPNESS) -> list[Warm]:
    """The configurations to try first, best scored first, deduplicated after mapping into
    ``space``; each carries its provenance (source, model, similarity, the dataset it was
    recorded on, its recorded best, its quality and its record).

    The candidates are the configurations of the models :func:`candidates` picks. Each is
    scored by similarity ** ``sharpness`` x quality x closeness of its dataset (1 for the
    tuned dataset, ``1 / (2 + distance)`` for another). Quality is what the configuration
    reached within the study's budget (``epochs``, matched in optimizer steps where
    ``record_sizes`` gives the recorded datasets' sizes: :func:`matched_epochs`) over the best
    any model reached on that dataset within the same epochs: the nearest model by code is
    often a variant whose records never trained, and LEMUR's overall best often comes from
    long training at a small learning rate, both poor starts for a short study. Similarity
    counts to the power ``sharpness`` (:data:`SHARPNESS`); above 1, a good result of an
    unlike model ranks below a close model's. At most ``per_model`` per model, so the first
    trials spread over several neighbours."""
    pool = list(models)
    reference: dict[tuple[str, int | None], float] = {}

    def best_on(ds: str, e: int | None) -> float:
        if (ds, e) not in reference:
            reference[(ds, e)] = max((c.at(e) for m in pool for c in m.configs
                                      if c.dataset == ds), default=0.0)
        return reference[(ds, e)]

    def closeness(ds: str) -> float:
        return 1.0 if ds == dataset else 1.0 / (2.0 + (distance(ds) if distance else 0.0))

    scored: list[tuple[float, int, PriorModel, PriorConfig, dict[str, Any], dict[str, Any]]] = []
    for rank, (sim, model) in enumerate(candidates(target, pool, k_models, dataset, exclude)):
        for config in model.configs:
            if useful is not None and not useful(config):
                continue
            params = adapt(to_space(config.hyperparameters, space), space, train_size)
            if not params:
                continue
            e = matched_epochs(config, params, epochs, train_size, record_sizes)
            top = best_on(config.dataset, e)
            quality = config.at(e) / top if top > 0 else 0.0
            if quality < min_quality:
                continue
            info = {"similarity": round(sim, 4), "dataset": config.dataset,
                    "recorded_best": round(config.best, 4), "quality": round(quality, 4),
                    **({"recorded_at_epochs": round(config.at(e), 4), "record_epochs": e}
                       if e and config.curve else {})}
            score = sim ** sharpness * quality * closeness(config.dataset)
            scored.append((score, rank, model, config, params, info))
    scored.sort(key=lambda s: (-s[0], s[1], -s[3].best))
    out: list[Warm] = []
    seen: set[str] = set()
    taken: dict[int, int] = {}
    for score, rank, model, config, params, info in scored:
        if len(out) >= limit:
            break
        if taken.get(rank, 0) >= per_model or _key(params) in seen:
            continue
        seen.add(_key(params))
        taken[rank] = taken.get(rank, 0) + 1
        out.append(Warm(params, {"source": model.source, "model": model.name, **info,
                                 "score": round(score, 4), "record": config.ref}))
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
