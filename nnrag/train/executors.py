"""Where trials run: a local pool of sandboxes, or Ray tasks that each run one sandbox.

One abstract base (:class:`Executor`); both implementations call the same sandbox entry,
so a trial on a Ray cluster is exactly as isolated as a local one.
"""

from __future__ import annotations

import abc
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nnrag._imports import optional_import
from nnrag.sandbox import Limits, SandboxResult, run_function, run_many

ENTRY = "nnrag.train._trial:run"
PRELOAD = ("torch", "?sklearn.datasets", "?sklearn.model_selection", "?nnrag.train._trial",
           "?nnrag.train._warm")


class Executor(abc.ABC):
    """Runs trial payloads; reports each result as it arrives.

    ``supports_stop``: whether a running trial can read the answer files the engine writes
    into its folder (early stopping, :mod:`nnrag.train.stopping`)."""

    supports_stop: ClassVar[bool] = False

    @abc.abstractmethod
    def run(self, payloads: Sequence[dict[str, Any]], limits: Limits,
            on_result: Callable[[int, SandboxResult], None],
            on_tick: Callable[[], None] | None = None, scratch: Path | None = None, *,
            task_dirs: Sequence[str] | None = None, hide: Sequence[str] = ()) -> None:
        """Run every payload; ``on_tick`` is called about once a second while waiting.

        With ``scratch``, payload ``i`` works in ``scratch/task_dirs[i]`` and sees nothing
        else of it but its top-level files (the data); no trial sees a path in ``hide``."""


class LocalExecutor(Executor):
    """``workers`` sandbox processes on this machine, one trial each at a time."""

    supports_stop = True  # the trial's folder is the engine's own scratch

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def run(self, payloads: Sequence[dict[str, Any]], limits: Limits,
            on_result: Callable[[int, SandboxResult], None],
            on_tick: Callable[[], None] | None = None, scratch: Path | None = None, *,
            task_dirs: Sequence[str] | None = None, hide: Sequence[str] = ()) -> None:
        run_many(ENTRY, list(payloads), limits=limits, jobs=self.workers, preload=PRELOAD,
                 on_result=on_result, on_tick=on_tick, scratch=scratch, keep_workers=True,
                 task_dirs=task_dirs, hide=hide)


MAX_RETURNED_BYTES = 256 << 20


def _ray_trial(payload: dict[str, Any], limits: dict[str, Any], files: dict[str, bytes],
               task_dir: str, hide: list[str]) -> tuple[SandboxResult, dict[str, bytes]]:
    """Body of the Ray task: the same sandbox, started on whichever node Ray picked.

    ``files`` (the trial's data file) are placed in a fresh scratch folder; what the child
    wrote in its ``task_dir`` for the engine to check comes back with the result, unread.
    ``hide`` is computed again here: the node's dataset files are where they are there.
    """
    from nnrag.train.datasets import label_sources

    scratch = Path(tempfile.mkdtemp(prefix="nnrag-ray-"))
    for name, content in files.items():
        (scratch / Path(name).name).write_bytes(content)
    result = run_function(ENTRY, payload, limits=Limits(**limits), preload=PRELOAD,
                          scratch=scratch, task_dir=task_dir, hide=[*hide, *label_sources()])
    back, total = {}, 0
    run = int(payload["run_id"])  # only this run's files: a child cannot speak for another
    for pattern in (f"progress-{run}.jsonl", f"logits-{run}-*.npy"):
        for path in (scratch / task_dir).glob(pattern):
            total += path.lstat().st_size
            if path.is_file() and not path.is_symlink() and total <= MAX_RETURNED_BYTES:
                back[path.name] = path.read_bytes()
    shutil.rmtree(scratch, ignore_errors=True)
    return result, back


class RayExecutor(Executor):
    """Submit each trial as a Ray task with its own CPU (and GPU) reservation.

    ``address=None`` starts (or joins) a local Ray instance; ``"auto"`` or
    ``"ray://host:10001"`` joins a cluster. Each task gets the trial's data file; its
    progress and logits files come back with the result, and the engine checks them then.
    Early stopping is not supported: the trial's folder is on another node, and the engine
    sees its epochs only when it has ended.
    """

    def __init__(self, address: str | None = None, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, num_cpus: int | None = None) -> None:
        self.ray = optional_import("ray", "ray")
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "include_dashboard": False,
                                      "log_to_driver": False, "configure_logging": False}
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            self.ray.init(**kwargs)
        self.remote = self.ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial)(_ray_trial)

    def run(self, payloads: Sequence[dict[str, Any]], limits: Limits,
            on_result: Callable[[int, SandboxResult], None],
            on_tick: Callable[[], None] | None = None, scratch: Path | None = None, *,
            task_dirs: Sequence[str] | None = None, hide: Sequence[str] = ()) -> None:
        from dataclasses import asdict

        if scratch is None:
            raise ValueError("the Ray executor needs the engine's scratch folder")
        dirs = list(task_dirs) if task_dirs is not None else [f"task-{i}" for i in
                                                              range(len(payloads))]
        names = {Path(p["data"]).name for p in payloads}
        data = {name: self.ray.put({name: (scratch / name).read_bytes()}) for name in names}
        refs = {self.remote.remote(p, asdict(limits), data[Path(p["data"]).name], dirs[i],
                                   [str(h) for h in hide]): i
                for i, p in enumerate(payloads)}
        while refs:
            done, _ = self.ray.wait(list(refs), num_returns=1, timeout=1.0)
            for ref in done:
                i = refs.pop(ref)
                try:
                    result, files = self.ray.get(ref)
                except Exception as exc:  # the Ray task itself failed (node lost, ...)
                    result, files = SandboxResult("crashed", None, type(exc).__name__,
                                                  str(exc)[:2000], None, "", "", 0.0), {}
                (scratch / dirs[i]).mkdir(exist_ok=True)
                for name, content in files.items():
                    (scratch / dirs[i] / Path(name).name).write_bytes(content)
                on_result(i, result)
            if on_tick is not None:
                on_tick()

    def shutdown(self) -> None:
        self.ray.shutdown()


def make_executor(kind: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    if kind == "ray":
        return RayExecutor(address, num_cpus=workers if address is None else None)
    return LocalExecutor(workers)
