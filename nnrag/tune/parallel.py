"""Trials in batches: ask Optuna for ``workers`` configurations, train them at once through
the engine (its local pool of sandboxes, or Ray tasks), then tell Optuna each result.

The engine call is injected (``train_many``: several specs in, per spec its run record and
per-epoch values or the error that refused it), as for one trial at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnrag.tune.samplers import SamplerHook, mark
from nnrag.tune.space import Param, suggest, trial_spec


def run_batches(study: Any, base: dict[str, Any], space: dict[str, Param], trials: int,
                workers: int, train_many: Callable[..., Any], hook: SamplerHook, sampler: str,
                progress: Callable[[Any], None] | None,
                result_type: Callable[..., Any]) -> list[Any]:
    """Run ``trials`` trials, ``workers`` at a time; a refused spec or a run that does not end
    ``ok`` is a FAIL trial with its outcome, as in the sequential loop. Each trial's result
    is a ``result_type(number, params, run, outcome, value, error)``
    (:class:`nnrag.tune.study.TrialResult`, passed in: the study imports this module)."""
    import optuna

    done: list[Any] = []
    left = trials
    while left > 0:
        batch = []
        for _ in range(min(workers, left)):
            attrs = hook.before_ask(study)
            trial = study.ask()
            mark(trial, attrs, sampler)
            params = suggest(trial, space)
            spec = trial_spec(base, params)
            batch.append((trial, params, spec))
        left -= len(batch)
        results = train_many([spec for _, _, spec in batch])
        for (trial, params, _), result in zip(batch, results, strict=True):
            run, outcome, value, error = None, "error", None, None
            if isinstance(result, Exception):
                outcome, error = "invalid", str(result).splitlines()[0]
            else:
                record, epochs = result
                run, outcome, error = record.id, record.outcome or record.status, record.error
                for epoch, v in epochs:
                    trial.report(v, epoch)
                best = max((v for _, v in epochs), default=None)
                value = best if record.best is None else record.best
            trial.set_user_attr("run", run)
            trial.set_user_attr("outcome", outcome)
            if error:
                trial.set_user_attr("error", error[:500])
            ok = outcome == "ok" and value is not None and value == value
            if ok:
                study.tell(trial, value)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            res = result_type(trial.number, params, run, outcome, value if ok else None, error)
            done.append(res)
            if progress is not None:
                progress(res)
    return done
