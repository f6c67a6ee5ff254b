"""The samplers of ``nnrag tune``: Optuna's ``tpe`` and ``random``, and two that steer TPE.

- ``prior``: before the first trial, enqueue the best configurations of the models most
  similar by code (:mod:`nnrag.tune.prior`), each with its provenance in the trial's user
  attributes; TPE then goes on from their results.
- ``llm``: before each trial, a language model proposes the next configuration from the
  model's code and the trial history, as JSON under the space's schema. A proposal that is
  not a valid point of the space is dropped and TPE samples that trial instead; the study
  counts both (user attributes ``nnrag_llm_proposals`` and ``nnrag_llm_fallbacks``).

Both reach the study through a :class:`SamplerHook` (``start`` once, ``before_ask`` before
every trial), so the study loop does not know which sampler runs. The language model and its
answer parser are injected (a prompt in, text out), so this stage imports no sibling.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import TuneError
from nnrag.tune.prior import Warm
from nnrag.tune.space import Param

SAMPLERS = ("tpe", "random", "prior", "llm")
SOURCE_ATTR = "nnrag_source"
PROVENANCE_ATTR = "nnrag_provenance"


def make_sampler(name: str, seed: int | None) -> Any:
    """Optuna's sampler for ``name``: ``prior`` and ``llm`` are TPE between their own
    configurations."""
    optuna = optional_import("optuna", "tune")
    if name in ("tpe", "prior", "llm"):
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise TuneError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")


class SamplerHook:
    """What a steering sampler does to the study: ``start`` before the call's first trial;
    ``before_ask`` before each, returning user attributes for the trial asked next when
    nothing was enqueued for it."""

    def start(self, study: Any) -> None:  # noqa: B027 - optional
        """Prepare the study (e.g. enqueue configurations)."""

    def before_ask(self, study: Any) -> dict[str, Any]:
        return {}


def mark(trial: Any, attrs: dict[str, Any], sampler: str) -> None:
    """Say where the trial's configuration came from (an enqueued one already says)."""
    if SOURCE_ATTR in trial.user_attrs:
        return
    for key, value in {SOURCE_ATTR: sampler if sampler in ("tpe", "random") else "tpe",
                       **attrs}.items():
        trial.set_user_attr(key, value)


def _key(params: dict[str, Any]) -> str:
    return json.dumps({k: (round(v, 6) if isinstance(v, float) else v)
                       for k, v in sorted(params.items())}, default=str)


class PriorHook(SamplerHook):
    """Enqueue retrieved configurations first (deduplicated against the study's trials)."""

    def __init__(self, warm: Sequence[Warm]) -> None:
        self.warm = list(warm)
        self.enqueued = 0

    def start(self, study: Any) -> None:
        seen = {_key(dict(t.params)) for t in study.trials}
        seen |= {_key(t.system_attrs.get("fixed_params", {})) for t in study.trials}
        for w in self.warm:
            if _key(w.params) in seen:
                continue
            seen.add(_key(w.params))
            study.enqueue_trial(w.params, user_attrs={
                SOURCE_ATTR: "prior", PROVENANCE_ATTR: json.dumps(w.provenance)})
            self.enqueued += 1


def schema(space: dict[str, Param]) -> dict[str, Any]:
    """The space as a JSON schema: what the language model must answer."""
    props: dict[str, Any] = {}
    for name, p in sorted(space.items()):
        if p.choices is not None:
            props[name] = {"enum": list(p.choices)}
        else:
            kind = "integer" if name == "batch_size" else "number"
            props[name] = {"type": kind, "minimum": p.low, "maximum": p.high}
            if p.log:
                props[name]["description"] = "log scale"
    return {"type": "object", "properties": props, "additionalProperties": False}


def validate(proposal: Any, space: dict[str, Param]) -> dict[str, Any] | None:
    """``proposal`` as a point of ``space``, or None when any value is unknown, of the wrong
    type or out of range (missing dimensions are left to TPE)."""
    if isinstance(proposal, dict) and isinstance(proposal.get("hyperparameters"), dict):
        proposal = proposal["hyperparameters"]
    if not isinstance(proposal, dict) or not proposal:
        return None
    out: dict[str, Any] = {}
    for name, value in proposal.items():
        p = space.get(name) if isinstance(name, str) else None
        if p is None:
            return None
        if p.choices is not None:
            if value not in p.choices or isinstance(value, bool) != any(
                    isinstance(c, bool) and c == value for c in p.choices):
                return None
            out[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value) or not float(p.low or 0) <= value <= float(p.high or 0):
            return None
        if name == "batch_size":
            if int(value) != value:
                return None
            value = int(value)
        out[name] = value if name == "batch_size" else float(value)
    return out


def llm_prompt(code: str, space: dict[str, Param], history: list[dict[str, Any]],
               one_shot: bool, max_code: int = 6000) -> str:
    """The prompt: the model's code, the schema and the trials so far (last 20)."""
    body = code if len(code) <= max_code else code[:max_code] + "\n# ... (truncated)"
    ask = ("Propose the single best configuration: there is only one trial."
           if one_shot else "Propose the next configuration to try; it should beat the best "
           "so far or explore where nothing was tried.")
    lines = [f"You tune the hyperparameters of this PyTorch model.\n\n```python\n{body}\n```",
             "Search space (JSON schema):",
             json.dumps(schema(space), sort_keys=True)]
    if history:
        lines.append("Trials so far (params -> best accuracy, null = failed):")
        lines += [json.dumps(h, sort_keys=True) for h in history[-20:]]
    lines.append(f"{ask} Answer with one JSON object of the space's names only, in a ```json "
                 "block.")
    return "\n\n".join(lines)


class LLMHook(SamplerHook):
    """Before each trial, ask the language model; enqueue a valid answer, else let TPE
    sample and mark the trial ``tpe-fallback``."""

    def __init__(self, ask: Callable[[str], str], parse: Callable[[str], Any], code: str,
                 space: dict[str, Param], one_shot: bool = False) -> None:
        self.ask, self.parse, self.code, self.space = ask, parse, code, space
        self.one_shot = one_shot
        self.proposals = 0
        self.fallbacks = 0
        self.reasons: list[str] = []

    def history(self, study: Any) -> list[dict[str, Any]]:
        return [{"params": dict(t.params), "value": t.value} for t in study.trials
                if t.state.is_finished()]

    def before_ask(self, study: Any) -> dict[str, Any]:
        self.proposals += 1
        why = ""
        try:
            text = self.ask(llm_prompt(self.code, self.space, self.history(study), self.one_shot))
            params = validate(self.parse(text), self.space)
            if params is None:
                why = "not a valid point of the search space"
        except Exception as exc:  # noqa: BLE001 - a failing backend costs one trial's proposal
            params, why = None, f"{type(exc).__name__}: {str(exc)[:200]}"
        counts = study.user_attrs
        study.set_user_attr("nnrag_llm_proposals", int(counts.get("nnrag_llm_proposals", 0)) + 1)
        if params is None:
            self.fallbacks += 1
            self.reasons.append(why)
            study.set_user_attr("nnrag_llm_fallbacks",
                                int(counts.get("nnrag_llm_fallbacks", 0)) + 1)
            return {SOURCE_ATTR: "tpe-fallback", "nnrag_llm_error": why}
        study.enqueue_trial(params, user_attrs={SOURCE_ATTR: "llm"})
        return {}
