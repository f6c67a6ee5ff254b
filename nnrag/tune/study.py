"""A study on Optuna: each trial is one engine run (sandboxed, deduplicated, recorded in the
run store); Optuna samples, keeps the study in its RDB storage and resumes it.

The engine is injected (``train``: one spec in, its run record out), so this package needs
nothing above ``train``; the workspace wires it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import NnragError, TuneError, TuneStorageError
from nnrag.train.stopping import Stopper
from nnrag.tune.pruners import make_pruner, reported_steps, trial_stopper
from nnrag.tune.samplers import SAMPLERS, SOURCE_ATTR, SamplerHook, mark
from nnrag.tune.samplers import make_sampler as make_sampler
from nnrag.tune.space import Param, signature, suggest, trial_spec

__all__ = ["SAMPLERS", "TrialResult", "TuneResult", "make_sampler", "run_study"]
SPACE_ATTR = "nnrag_space"


@dataclass(frozen=True)
class TrialResult:
    """What one trial did: Optuna's number, the run, its outcome and best value."""

    number: int
    params: dict[str, Any]
    run: int | None
    outcome: str
    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class TuneResult:
    """The study after this call: all its trials count, not only this call's."""

    study: str
    storage: str
    n_trials: int
    best_value: float | None
    best_params: dict[str, Any]
    spec: dict[str, Any] | None
    trials: tuple[TrialResult, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "storage": self.storage, "n_trials": self.n_trials,
                "best_value": self.best_value, "best_params": self.best_params,
                "spec": self.spec,
                "trials": [t.__dict__ for t in self.trials]}


def _optuna() -> Any:
    optuna = optional_import("optuna", "tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url``; anything it cannot open is one line."""
    optuna = _optuna()
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds for a bad URL
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TuneStorageError(f"cannot open the study storage {url!r}: {first}") from None


def load_or_create(name: str, url: str, space: dict[str, Param], sampler: Any,
                   pruner: Any = None) -> Any:
    """The study ``name`` (created when new); one with another space is refused."""
    optuna = _optuna()
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                pruner=pruner or optuna.pruners.NopPruner(),
                                direction="maximize", load_if_exists=True)
    wanted = signature(space)
    have = study.user_attrs.get(SPACE_ATTR)
    if have is None:
        study.set_user_attr(SPACE_ATTR, wanted)
    elif have != wanted:
        raise TuneStorageError(
            f"study {name!r} in {url} was created with another search space "
            f"({have}); use another --study name or the same space")
    return study


def best_values(epochs: list[tuple[int, float]]) -> float | None:
    return max((v for _, v in epochs), default=None)


# One spec in (with the run's early stopper, or None), its run record and curve out.
TrainOne = Callable[[dict[str, Any], Stopper | None], tuple[Any, list[tuple[int, float]]]]
#: Several specs at once: per spec, (record, epochs) or the NnragError that refused it.
TrainMany = Callable[[list[dict[str, Any]]], list[tuple[Any, list[tuple[int, float]]] | Exception]]
Progress = Callable[[TrialResult], None]


def run_study(*, name: str, url: str, base: dict[str, Any], space: dict[str, Param],
              trials: int, sampler: str, seed: int | None, train: TrainOne,
              progress: Progress | None = None, hook: SamplerHook | None = None,
              workers: int = 1, train_many: TrainMany | None = None, pruner: str = "none",
              predicted: Stopper | None = None) -> TuneResult:
    """Run ``trials`` more trials of study ``name``: each asks Optuna for a configuration,
    trains ``base`` with it through ``train`` (which returns the run record and its
    per-epoch ``(epoch, value)`` metric), reports every epoch and tells Optuna the best. A
    run that does not end ``ok`` is a FAIL trial carrying the outcome, never the end; one a
    ``pruner`` stopped (:mod:`nnrag.tune.pruners`; ``predicted`` uses the given stopper)
    is PRUNED. ``hook`` steers the sampler (``prior``, ``llm``); with ``train_many`` the
    trials run ``workers`` at a time (:func:`nnrag.tune.parallel.run_batches`), which
    cannot stop trials mid-run, so a pruner other than ``none`` is refused there."""
    optuna = _optuna()
    if train_many is not None and pruner != "none":
        raise TuneError(f"--pruner {pruner} needs trials run one at a time: pruning goes "
                        "through the local engine's stop channel; drop --workers/--executor "
                        "ray or use --pruner none")
    steps = int((base.get("budget") or {}).get("epochs", 1))
    study = load_or_create(name, url, space, make_sampler(sampler, seed),
                           make_pruner(pruner, steps))
    hook = hook or SamplerHook()
    hook.start(study)
    if train_many is not None:
        from nnrag.tune.parallel import run_batches

        batch = run_batches(study, base, space, trials, max(1, workers), train_many, hook,
                            sampler, progress, TrialResult)
        return summarize(study, url, base, tuple(batch))
    done: list[TrialResult] = []
    for _ in range(trials):
        attrs = hook.before_ask(study)
        trial = study.ask()
        mark(trial, attrs, sampler)
        params = suggest(trial, space)
        spec = trial_spec(base, params)
        run, outcome, value, error = None, "error", None, None
        stopper = trial_stopper(pruner, trial, predicted)
        try:
            record, epochs = train(spec, stopper)
            run, outcome, error = record.id, record.outcome or record.status, record.error
            reported = reported_steps(stopper)
            for epoch, v in epochs:
                if epoch not in reported:
                    trial.report(v, epoch)
            value = best_values(epochs) if record.best is None else record.best
        except NnragError as exc:  # a spec the engine refuses for these values
            outcome, error = "invalid", str(exc).splitlines()[0]
        trial.set_user_attr("run", run)
        trial.set_user_attr("outcome", outcome)
        if error:
            trial.set_user_attr("error", error[:500])
        ok = outcome == "ok" and value is not None and value == value
        if ok:
            study.tell(trial, value)
        elif outcome == "stopped":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        result = TrialResult(trial.number, params, run, outcome, value if ok else None, error)
        done.append(result)
        if progress is not None:
            progress(result)
    return summarize(study, url, base, tuple(done))


def summarize(study: Any, url: str, base: dict[str, Any] | None,
              trials: tuple[TrialResult, ...] = ()) -> TuneResult:
    optuna = _optuna()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    spec = None
    if best is not None and base is not None:
        spec = trial_spec(base, dict(best.params))
    return TuneResult(study.study_name, url, len(study.trials),
                      best.value if best else None, dict(best.params) if best else {},
                      spec, trials)


def list_studies(url: str) -> list[dict[str, Any]]:
    """Every study in the storage: name, trial counts, best value and its space."""
    optuna = _optuna()
    storage = open_storage(url)
    rows = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
        best = s.best_trial
        space = s.user_attrs.get(SPACE_ATTR)
        rows.append({"study": s.study_name, "n_trials": s.n_trials,
                     "best_value": best.value if best else None,
                     "best_params": dict(best.params) if best else {},
                     "space": json.loads(space) if space else None,
                     "started": s.datetime_start.isoformat() if s.datetime_start else None})
    return rows


def show_study(name: str, url: str) -> dict[str, Any]:
    """One study: its summary and every trial (state, value, params, outcome, run)."""
    optuna = _optuna()
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise TuneStorageError(f"no study {name!r} in {url} (studies: "
                               f"{', '.join(names) or 'none'})") from None
    summary = summarize(study, url, None)
    space = study.user_attrs.get(SPACE_ATTR)
    trials = [{"number": t.number, "state": t.state.name, "value": t.value,
               "params": dict(t.params), "run": t.user_attrs.get("run"),
               "outcome": t.user_attrs.get("outcome"), "error": t.user_attrs.get("error"),
               "source": t.user_attrs.get(SOURCE_ATTR),
               "epochs": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
              for t in study.trials]
    return {"study": name, "storage": url, "n_trials": summary.n_trials,
            "best_value": summary.best_value, "best_params": summary.best_params,
            "space": json.loads(space) if space else None, "trials": trials}
