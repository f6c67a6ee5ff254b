"""``tune``'s samplers wired to the stages they read: the run store (``train``), LEMUR's
records and the code features (``predict``), the fingerprint (``index``) and an LLM backend
with its answer parser (``generate``).

``tune`` is a sibling of ``predict`` and ``generate`` and may not import them; the workspace
(the API layer) builds what the ``prior`` and ``llm`` samplers need here and injects it. The
benchmarks (``benchmarks/tune_*.py``) use the same functions, so they measure what the
command does.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from nnrag.exceptions import NnragError, TuneError
from nnrag.tune.prior import PriorConfig, PriorModel, load_models, save_models

#: Configurations kept per (model, dataset) and epoch budget in the LEMUR cache.
PER_DATASET = 5
#: The epoch budgets the cache keeps each dataset's best configurations for (None: overall),
#: so a study of any of these lengths finds the configurations that were best at its length.
BUDGETS = (1, 2, 3, 5, 10, None)
#: Learning-curve epochs kept per cached configuration.
CURVE_EPOCHS = 20
CACHE_VERSION = "3"


def layer_histogram(code: str) -> tuple[float, ...]:
    """How often the code constructs each layer type, and its weight layers: the part of
    the predictor's source features that says what the network is made of (its size, lines
    and loops say little about which hyperparameters suit it)."""
    from nnrag.predict import LAYERS, SOURCE_FEATURES, source_features

    feats = source_features(code)
    return (*feats[:len(LAYERS)], feats[SOURCE_FEATURES.index("weight_layers")])


def code_target(code: str) -> tuple[str, tuple[float, ...]]:
    """What the prior compares: the code's structural fingerprint and layer histogram."""
    from nnrag.index import code_fingerprint

    try:
        fp = code_fingerprint(code)
    except Exception:  # noqa: BLE001 - code that does not parse: compare by histogram only
        fp = ""
    return fp, layer_histogram(code)


def dataset_rule(dataset: str) -> tuple[Any, Any]:
    """``distance`` and ``useful`` for the prior (docs/tune.md, "the prior sampler"): a
    recorded dataset is closer the more its classes, channels and image side match the tuned
    one's; a recorded result at most 1.5 x chance is not worth copying."""
    import math

    from nnrag.exceptions import NnragError
    from nnrag.predict import dataset_facts

    def facts(name: str) -> Any:
        try:
            return dataset_facts(name)
        except NnragError:
            return None

    target = facts(dataset)

    def distance(name: str) -> float:
        other = facts(name)
        if target is None or other is None:
            return 10.0
        return (abs(math.log(other.classes / target.classes))
                + float(other.channels != target.channels)
                + 0.5 * abs(math.log(other.side / target.side)))

    def useful(config: Any) -> bool:
        f = facts(config.dataset)
        return f is None or config.best > 1.5 * f.chance

    return distance, useful


def run_store_models(runs: Sequence[Any]) -> list[PriorModel]:
    """The run store's finished ``ok`` runs with a best value, grouped by fingerprint, with
    their learning curves where the records carry their epochs
    (:meth:`nnrag.train.runstore.RunStore.with_epochs`), so that the prior ranks them by the
    study's budget like LEMUR's."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for r in runs:
        if r.status == "done" and r.outcome == "ok" and r.best is not None and r.code:
            groups[r.fingerprint or r.code_md5].append(r)
    models = []
    for fp, rs in sorted(groups.items()):
        configs = []
        for r in rs:
            spec = r.spec_dict
            hp = dict(spec.get("hyperparameters") or {})
            if isinstance(spec.get("transform"), str):
                hp["transform"] = spec["transform"]
            metric = spec.get("metric") or "accuracy"
            curve = tuple(float(e.value) for e in sorted(r.epochs, key=lambda e: e.epoch)
                          if e.metric == metric and e.value is not None)
            configs.append(PriorConfig(r.dataset, hp, float(r.best), f"run {r.id}",
                                       curve[:CURVE_EPOCHS]))
        first = rs[0]
        models.append(PriorModel("runs", first.name, first.name, fp,
                                 layer_histogram(first.code), tuple(configs)))
    return models


def _cache_key(folder: Path) -> str:
    parts = [CACHE_VERSION, str(folder.resolve())]
    for name in ("models.jsonl.gz", "stats.jsonl.gz"):
        st = (folder / name).stat()
        parts.append(f"{name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def lemur_models(folder: Path, cache_dir: Path) -> list[PriorModel]:
    """LEMUR's image-classification models with their best configurations per dataset,
    read once (streamed, a few seconds) and then from a cache under ``cache_dir`` keyed by
    the folder and its files' sizes and times. An unreadable folder: one-line TuneError."""
    from nnrag.exceptions import PredictDataError
    from nnrag.predict import LEMUR_FILES, read_lemur

    missing = [name for name in LEMUR_FILES if not (folder / name).is_file()]
    if not folder.is_dir() or missing:
        what = "is not a folder" if not folder.is_dir() else f"has no {' or '.join(missing)}"
        raise TuneError(f"cannot read LEMUR records: {folder} {what}; give a LEMUR export "
                        f"folder holding {' and '.join(LEMUR_FILES)}")
    try:
        key = _cache_key(folder)
    except OSError as exc:
        raise TuneError(f"cannot read LEMUR records in {folder}: {exc}") from None
    path = cache_dir / f"tune-prior-lemur-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json.gz"
    cached = load_models(path, key)
    if cached is not None:
        return cached
    try:
        report = read_lemur(folder)
    except PredictDataError as exc:
        raise TuneError(f"cannot read LEMUR records: {str(exc).splitlines()[0]}") from None
    models = models_of_trials(report.trials)
    save_models(path, key, models)
    return models


def _best_within(epochs: int | None, trial: Any) -> float:
    """A sort key: minus the best value within ``epochs`` epochs (all of them for None)."""
    return -max(trial.curve[:epochs])


def models_of_trials(trials: Sequence[Any], per_dataset: int = PER_DATASET) -> list[PriorModel]:
    """Predictor trials (:class:`nnrag.predict.Trial`) as prior models: of each model on
    each dataset, the best ``per_dataset`` configurations within each of :data:`BUDGETS`
    epochs (with their first :data:`CURVE_EPOCHS` epochs' curve)."""
    from nnrag.predict import model_family

    by_model: dict[str, list[Any]] = defaultdict(list)
    codes: dict[str, str] = {}
    for t in trials:
        by_model[t.model].append(t)
        if t.code:
            codes[t.model] = t.code
    models = []
    for name in sorted(by_model):
        if name not in codes:
            continue
        per: dict[str, list[Any]] = defaultdict(list)
        for t in by_model[name]:
            per[t.dataset].append(t)
        configs = []
        for ds in sorted(per):
            kept: dict[int, Any] = {}
            for budget in BUDGETS:
                ranked = sorted(per[ds], key=partial(_best_within, budget))
                kept.update((id(t), t) for t in ranked[:per_dataset])
            configs += [PriorConfig(ds, dict(t.hyperparameters), float(t.best),
                                    f"lemur {name} on {ds}",
                                    tuple(round(float(v), 5) for v in t.curve[:CURVE_EPOCHS]))
                        for t in sorted(kept.values(), key=lambda t: -t.best)]
        fp, feats = code_target(codes[name])
        models.append(PriorModel("lemur", name, model_family(name), fp, feats, tuple(configs)))
    return models


def llm_asker(backend: str, model: str | None, seed: int | None,
              schema: dict[str, Any] | None = None) -> tuple[
        Callable[[str], str], Callable[[str], Any]]:
    """A prompt -> text function over a generate backend, and generate's JSON parser.

    ``schema`` (the search space's, :func:`nnrag.tune.samplers.schema`) constrains decoding
    where the backend can (llama-cpp's grammar, transformers with xgrammar): a small model
    left unconstrained rarely writes a valid point of the space at all. Bounds are not
    enforced by the grammar; the sampler re-validates every answer."""
    from nnrag.generate import BackendConfig, make_backend
    from nnrag.generate.backends import Prompt, Sampling
    from nnrag.generate.parsing import extract_spec

    llm = make_backend(BackendConfig(backend=backend, model=model))
    sampling = Sampling(temperature=0.7, max_new_tokens=256, seed=seed or 0)
    constrain = schema if llm.supports_schema else None

    def ask(text: str) -> str:
        prompt = (Prompt("chat", messages=({"role": "user", "content": text},))
                  if llm.style == "chat" else Prompt("completion", text=text + "\n```json\n"))
        return llm.generate(prompt, sampling, schema=constrain).text

    def parse(text: str) -> Any:
        try:  # a constrained answer is the JSON object itself
            return json.loads(text)
        except ValueError:
            pass
        data, _ = extract_spec(text)
        if data is None:  # a completion prompt ends inside the fence: the answer is its body
            data, _ = extract_spec(f"```json\n{text.split('```')[0]}\n```")
        return data

    return ask, parse


def sampler_hook(sampler: str, code: str, space: Any, dataset: str, *, limit: int | None,
                 trials: int, epochs: int, seed: int | None, lemur: str | Path | None,
                 cache_dir: Path, runs: Callable[[], Sequence[Any]], llm_backend: str,
                 llm_model: str | None, warn: Callable[[str], None] | None) -> Any:
    """The ``prior`` or ``llm`` sampler's hook (None for Optuna's own samplers). ``runs``
    reads the run store's records only when the prior needs them."""
    from nnrag.predict import LEMUR_TRAIN_SIZES
    from nnrag.train.datasets import train_size as on_disk
    from nnrag.tune.prior import warm_configs
    from nnrag.tune.samplers import LLMHook, PriorHook, schema

    if sampler == "llm":
        ask, parse = llm_asker(llm_backend, llm_model, seed, schema(space))
        return LLMHook(ask, parse, code, space, one_shot=trials == 1)
    if sampler != "prior":
        if lemur is not None and warn is not None:
            warn(f"--lemur is read by --sampler prior only; sampler {sampler} ignores it")
        return None
    models = []
    if lemur is not None:  # first: an unreadable folder stops before anything else
        models += lemur_models(Path(lemur).expanduser(), cache_dir)
    models += run_store_models(runs())
    n_train = on_disk(dataset)  # counted, not registered: a user's files may be a subsample
    train_size = min(n_train or limit or 0, limit or n_train or 0) or None
    distance, useful = dataset_rule(dataset)
    sizes = {**LEMUR_TRAIN_SIZES, **({dataset: train_size} if train_size else {})}
    warm = warm_configs(code_target(code), models, space, dataset, train_size=train_size,
                        distance=distance, useful=useful, epochs=epochs, record_sizes=sizes)
    if not warm and warn is not None:
        where = "the run store" + (f" or {lemur}" if lemur is not None else "")
        warn(f"prior: no model similar to this one with recorded results in {where}; "
             "tuning with plain TPE")
    return PriorHook(warm)


def trial_values(store: Any, run_id: int, metric: str) -> tuple[Any, list[tuple[int, float]]]:
    """A trial's run record and its per-epoch ``metric`` values (a run answered from the
    store reports the values of the run it duplicates)."""
    record = store.get(run_id)
    source = store.get(record.duplicate_of) if record.duplicate_of else record
    return record, [(e.epoch, e.value) for e in source.epochs
                    if e.metric == metric and e.value is not None]


def train_batch(train: Callable[[Any], Any], store: Callable[[], Any],
                specs: list[dict[str, Any]], *, metric: str) -> list[Any]:
    """Train several trials at once through ``train`` (the workspace's, with its workers
    and executor bound); a spec the engine refuses is that trial's error, not the batch's."""
    from nnrag.train import parse_spec

    out: list[Any] = [None] * len(specs)
    good: list[tuple[int, Any]] = []
    for i, spec in enumerate(specs):
        try:
            good.append((i, parse_spec(spec, "tune")))
        except NnragError as exc:
            out[i] = exc
    if not good:
        return out
    try:
        report = train([p for _, p in good])
        pairs = list(zip([i for i, _ in good], report.run_ids, strict=True))
    except NnragError:  # one refused spec stops the batch before any run: one at a time
        pairs = []
        for i, p in good:
            try:
                pairs.append((i, train(p).run_ids[0]))
            except NnragError as exc:
                out[i] = exc
    runs = store()
    for i, run_id in pairs:
        out[i] = trial_values(runs, run_id, metric)
    return out
