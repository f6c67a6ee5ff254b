"""The GRPO reward: how far a completion's program runs, measured in the sandbox by nnrag.

``0`` when no code can be read from the completion; then one rung per step of the probe
the pipeline uses (:data:`RUNGS`): it parses, imports, builds ``Net`` for the task's shape,
runs forward with the right logits shape, runs backward with finite gradients. A program
that reaches backward may earn a bonus of up to :data:`ACCURACY_BONUS` times its accuracy
after a short training run through the engine, when the caller injects one. Rewards are
cached by the program's hash (and shape), so a repeated program costs nothing; the code of
a completion never runs in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nnrag.learn._cache import ProbeCache, probe_key

# The probe's stage when it stopped -> the reward of having got that far.
RUNGS: dict[str, float] = {"parse": 0.2, "import": 0.2, "build": 0.4, "forward": 0.6,
                           "backward": 0.8, "ok": 1.0}
ACCURACY_BONUS = 1.0


class RewardFormat(Protocol):
    """What the reward needs from the generator's format (injected)."""

    def code_from(self, completion: str) -> str | None: ...

    def program(self, answer: str) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]: ...


def rung_reward(probe: dict[str, Any]) -> float:
    """The reward of one probe result (without the accuracy bonus)."""
    if probe.get("ok"):
        return RUNGS["ok"]
    return RUNGS.get(str(probe.get("stage")), RUNGS["parse"])


@dataclass
class SandboxReward:
    """A trl reward function (``prompts, completions -> rewards``) backed by the sandbox.

    ``accuracy`` (optional) trains the programs that run and returns each one's accuracy
    (or None); its bonus is added to the rung reward.
    """

    fmt: RewardFormat
    cache: ProbeCache = field(default_factory=ProbeCache)
    accuracy: Callable[[Sequence[str]], Sequence[float | None]] | None = None
    calls: int = 0
    probed: int = 0

    def __post_init__(self) -> None:
        self._bonus: dict[str, float] = {}
        self._shape = {k: v for k, v in self.fmt.describe().items()
                       if k in ("in_shape", "num_classes")}

    def programs(self, completions: Sequence[Any]) -> list[str | None]:
        """The program each completion stands for (None: no parse)."""
        out: list[str | None] = []
        for completion in completions:
            text = completion if isinstance(completion, str) else _text_of(completion)
            code = self.fmt.code_from(text)
            out.append(code)
        return out

    def __call__(self, prompts: Sequence[Any] | None = None,
                 completions: Sequence[Any] = (), **_: Any) -> list[float]:
        self.calls += 1
        codes = self.programs(completions)
        keys = [probe_key(c, self._shape) if c is not None else None for c in codes]
        todo: dict[str, str] = {}
        for code, key in zip(codes, keys, strict=True):
            if code is not None and key is not None and self.cache.get(key) is None:
                todo[key] = code
        if todo:
            results = self.fmt.probe(list(todo.values()))
            self.probed += len(todo)
            for key, result in zip(todo, results, strict=True):
                self.cache.put(key, result)
        self._train_bonus(codes, keys)
        rewards = []
        for key in keys:
            if key is None:
                rewards.append(0.0)
                continue
            probe = self.cache.get(key) or {}
            rewards.append(rung_reward(probe) + self._bonus.get(key, 0.0))
        return rewards

    def _train_bonus(self, codes: list[str | None], keys: list[str | None]) -> None:
        if self.accuracy is None:
            return
        fresh = {}
        for code, key in zip(codes, keys, strict=True):
            if (code is not None and key is not None and key not in self._bonus
                    and (self.cache.get(key) or {}).get("ok")):
                fresh[key] = code
        if not fresh:
            return
        for key, acc in zip(fresh, self.accuracy(list(fresh.values())), strict=True):
            self._bonus[key] = ACCURACY_BONUS * float(acc) if acc is not None else 0.0


def _text_of(completion: Any) -> str:
    """A conversational completion (``[{"role": ..., "content": ...}]``) as text."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)
