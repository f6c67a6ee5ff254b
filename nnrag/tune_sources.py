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
from pathlib import Path
from typing import Any

from nnrag.exceptions import TuneError
from nnrag.tune.prior import PriorConfig, PriorModel, load_models, save_models

#: Configurations kept per (model, dataset) in the LEMUR cache (best first).
PER_DATASET = 5
CACHE_VERSION = "2"


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
    """The run store's finished ``ok`` runs with a best value, grouped by fingerprint."""
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
            configs.append(PriorConfig(r.dataset, hp, float(r.best), f"run {r.id}"))
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


def models_of_trials(trials: Sequence[Any], per_dataset: int = PER_DATASET) -> list[PriorModel]:
    """Predictor trials (:class:`nnrag.predict.Trial`) as prior models: the best
    ``per_dataset`` configurations of each model on each dataset."""
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
            best = sorted(per[ds], key=lambda t: -t.best)[:per_dataset]
            configs += [PriorConfig(ds, dict(t.hyperparameters), float(t.best),
                                    f"lemur {name} on {ds}") for t in best]
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
