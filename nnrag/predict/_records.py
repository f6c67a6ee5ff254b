"""Training trials as the predictor sees them, read from LEMUR's export or nnrag's run store.

A :class:`Trial` is one learning curve: the model's source, the dataset, the hyperparameters
and the accuracy after each epoch. LEMUR's ``stats.jsonl.gz`` holds one row per (trial,
epoch), linked by ``uid``; its rows are streamed (150 MB unpacked) and only the fields the
predictor uses are kept. A row that lacks a field or carries a non-finite accuracy is
skipped and counted, so a partly bad file still trains; a file that cannot be read at all
(missing, truncated gzip) is a :class:`~nnrag.exceptions.PredictDataError`.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from nnrag.exceptions import NnragError, PredictDataError

Progress = Callable[[int, int], None]
LEMUR_FILES = ("models.jsonl.gz", "stats.jsonl.gz")
TASK = "img-classification"
HP_KEYS = ("lr", "momentum", "batch", "dropout", "transform")
_REQUIRED = ("uid", "model", "dataset", "epoch", "accuracy")


@dataclass(frozen=True)
class Trial:
    """One trial's learning curve (accuracy per epoch, in epoch order, as fractions)."""

    model: str
    dataset: str
    hyperparameters: dict[str, Any]
    curve: tuple[float, ...]
    code: str | None = None
    params: int | None = None
    epochs: int | None = None  # the epochs the trial was planned for (its last epoch)

    @property
    def best(self) -> float:
        """What the predictor learns to predict: the best accuracy the trial reached."""
        return max(self.curve)

    @property
    def family(self) -> str:
        return model_family(self.model)


@dataclass
class ReadReport:
    """What a reader kept and what it skipped (and why), for ``nnrag predict fit``."""

    trials: list[Trial] = field(default_factory=list)
    row_count: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> dict[str, int]:
        return dict(Counter(t.dataset for t in self.trials).most_common())

    def extend(self, other: ReadReport) -> None:
        self.trials.extend(other.trials)
        self.row_count += other.row_count
        self.skipped.update(other.skipped)
        self.sources.extend(other.sources)


_UUID = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SUFFIX = re.compile(r"-(?:[0-9a-f]{32}|\d+)$")


def model_family(name: str) -> str:
    """The architecture family a LEMUR name belongs to: ``ast-dimension-AlexNet-<md5>`` and
    ``AlexNet-<uuid>`` are ``AlexNet``; ``BayesianNet-1`` is ``BayesianNet``; genetic-search
    (``ga-115``) and LLM-generated (``rag-<md5>``) models carry no family in their name and
    form one family each (``ga``, ``rag``), so a split by family never puts near-copies on
    both sides."""
    parts = name.split("-")
    if parts[0] == "ast" and len(parts) >= 4:
        return "-".join(parts[2:-1])
    if parts[0] in ("ga", "rag"):
        return parts[0]
    return _SUFFIX.sub("", _UUID.sub("", name))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _lines(path: Path, progress: Progress | None) -> Iterator[str]:
    """The lines of a gzip file, with a damaged file reported as one actionable error."""
    total = path.stat().st_size
    raw: BinaryIO
    try:
        with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
            for i, line in enumerate(text):
                if progress is not None and i % 20000 == 0:
                    progress(raw.tell(), total)
                yield line
            if progress is not None:
                progress(total, total)
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        raise PredictDataError(f"{path} is truncated or not a gzip file ({exc}); copy it "
                               "again from LEMUR's export") from exc


def _lemur_paths(folder: Path) -> tuple[Path, Path]:
    if not folder.is_dir():
        raise PredictDataError(f"{folder} is not a folder; give a LEMUR export folder holding "
                               f"{' and '.join(LEMUR_FILES)}")
    missing = [name for name in LEMUR_FILES if not (folder / name).is_file()]
    if missing:
        raise PredictDataError(f"{folder} has no {' or '.join(missing)}; a LEMUR folder holds "
                               f"{' and '.join(LEMUR_FILES)} (see docs/predict.md)")
    return folder / LEMUR_FILES[0], folder / LEMUR_FILES[1]


def read_lemur(folder: str | Path, *, progress: Progress | None = None,
               limit: int | None = None) -> ReadReport:
    """The image-classification trials of a LEMUR export folder (``models.jsonl.gz``,
    ``stats.jsonl.gz``), one :class:`Trial` per ``uid``; ``limit`` keeps the first N trials."""
    models_path, stats_path = _lemur_paths(Path(folder))
    report = ReadReport(sources=[str(folder)])
    codes: dict[str, str] = {}
    for line in _lines(models_path, None):
        try:
            row = json.loads(line)
            name, code = row["model"], row["code"]
        except (ValueError, KeyError, TypeError):
            report.skipped["bad model line"] += 1
            continue
        if isinstance(name, str) and isinstance(code, str):
            codes[name] = code
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    heads: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for line in _lines(stats_path, progress):
        report.row_count += 1
        try:
            row = json.loads(line)
        except ValueError:
            report.skipped["bad JSON"] += 1
            continue
        if not isinstance(row, dict) or row.get("task") != TASK:
            report.skipped["other task"] += 1
            continue
        if any(row.get(key) is None for key in _REQUIRED):
            report.skipped["missing field"] += 1
            continue
        accuracy, epoch = _finite(row["accuracy"]), _finite(row["epoch"])
        if accuracy is None or epoch is None or not 0.0 <= accuracy <= 1.0:
            report.skipped["non-finite or out-of-range accuracy"] += 1
            continue
        uid = str(row["uid"])
        if uid not in heads:
            heads[uid] = (str(row["model"]), str(row["dataset"]),
                          {k: row[k] for k in HP_KEYS if row.get(k) is not None})
        curves[uid].append((int(epoch), accuracy))
    for uid, points in curves.items():
        model, dataset, hp = heads[uid]
        if model not in codes:
            report.skipped["model without code"] += 1
            continue
        points.sort()
        report.trials.append(Trial(model, dataset, hp, tuple(a for _, a in points),
                                   code=codes[model], epochs=max(1, points[-1][0])))
        if limit is not None and len(report.trials) >= limit:
            break
    return report


def spec_hyperparameters(spec: dict[str, Any]) -> dict[str, Any]:
    """A training spec's settings under the names the predictor's features read (LEMUR's)."""
    hp = dict(spec.get("hyperparameters") or {})
    transform = spec.get("transform", "none")
    hyper = {"lr": hp.get("lr"), "momentum": hp.get("momentum"),
             "batch": hp.get("batch_size"), "dropout": hp.get("dropout"),
             "optimizer": hp.get("optimizer"),
             "transform": ",".join(transform) if isinstance(transform, list) else transform}
    return {k: v for k, v in hyper.items() if v is not None}


def read_runs(path: str | Path, *, metric: str = "accuracy") -> ReadReport:
    """The finished runs of an nnrag run store with a per-epoch ``metric`` curve."""
    from nnrag.train import RunStore

    report = ReadReport(sources=[str(path)])
    try:
        store = RunStore(path, readonly=True)
    except NnragError as exc:
        raise PredictDataError(f"cannot read run store {path}: {exc}") from exc
    try:
        for head in store.runs(limit=2**31):
            report.row_count += 1
            run = store.get(head.id)
            spec = run.spec_dict
            wanted = spec.get("metric") or metric
            curve = tuple(v for e in run.epochs if e.metric == wanted
                          for v in [_finite(e.value)] if v is not None)
            if run.status != "done" or run.outcome != "ok":  # a stopped run's end is unknown
                why = run.outcome if run.status == "done" else run.status
                report.skipped[f"run {why}"] += 1
                continue
            if not curve or not run.code:
                report.skipped["no curve or code"] += 1
                continue
            budget = spec.get("budget") or {}
            report.trials.append(Trial(run.name, run.dataset, spec_hyperparameters(spec),
                                       curve, code=run.code, params=run.params,
                                       epochs=budget.get("epochs") or len(curve)))
    finally:
        store.close()
    return report


def trials_of(reports: Iterable[ReadReport]) -> ReadReport:
    """Several readers' reports as one."""
    out = ReadReport()
    for report in reports:
        out.extend(report)
    return out
