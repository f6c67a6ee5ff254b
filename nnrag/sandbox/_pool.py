"""A pool of fork-server workers that runs one entry point over many payloads.

The pool owns everything between "here are N payloads" and "here are N results": starting
``jobs`` workers, handing each free worker the next payload, turning answers into
:class:`SandboxResult`\\ s (and telling ``on_result`` as they land), and replacing a worker
that crashed or stopped answering so that one bad payload never costs the others. Workers
live as long as the pool, so several :meth:`WorkerPool.run` calls share their warm imports;
with ``keep_workers`` the idle ones outlive it in :data:`KEPT`, for the next pool.
"""

from __future__ import annotations

import os
import selectors
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from nnrag.exceptions import SandboxError
from nnrag.logging import get_logger
from nnrag.sandbox._kept import KEPT, KeptWorkers, PoolKey
from nnrag.sandbox._limits import DEFAULT_LIMITS, Limits, SandboxResult, result_from_answer
from nnrag.sandbox._worker_proc import STARTUP_TIMEOUT_S, WorkerProcess

__all__ = ["OnResult", "WorkerPool"]

log = get_logger(__name__)

#: ``on_result(index, result)``: called as each task finishes, in completion order.
OnResult = Callable[[int, SandboxResult], None]

#: Missing isolation layers already logged in this process: each is worth one warning, not
#: one per worker (a batch starts many, and they all run on the same kernel).
_WARNED: set[str] = set()


def _warn_missing(isolation: dict[str, str], hardening: dict[str, str]) -> None:
    missing = {name: why for name, why in hardening.items() if why}
    if isolation.get("net") == "none":
        missing["network namespace"] = "unshare(CLONE_NEWNET) was refused"
    if isolation.get("fs") == "none":
        missing["read-only mount namespace"] = "unshare(CLONE_NEWNS) or mount_setattr refused"
    for name, why in sorted(missing.items()):
        if name not in _WARNED:
            _WARNED.add(name)
            log.warning("sandbox layer %s is missing (%s); see `nnrag sandbox --check`", name, why)


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


class _Batch:
    """One :meth:`WorkerPool.run`'s state: which payloads wait, which results are in."""

    def __init__(self, payloads: Sequence[dict[str, Any]], on_result: OnResult | None,
                 task_dirs: list[str]) -> None:  # fmt: skip
        self.payloads = payloads
        self.task_dirs = task_dirs
        self.on_result = on_result
        self.pending: deque[int] = deque(range(len(payloads)))
        self.results: list[SandboxResult | None] = [None] * len(payloads)
        self.remaining = len(payloads)

    def finish(self, index: int, result: SandboxResult) -> None:
        self.results[index] = result
        self.remaining -= 1
        if self.on_result is not None:
            self.on_result(index, result)

    def collect(self) -> list[SandboxResult]:
        return [r for r in self.results if r is not None]


class WorkerPool:
    """Sandbox workers that run ``entry(payload)`` for batches of payloads.

    Use it as a context manager: :meth:`close` stops the workers (or, with ``keep_workers``,
    hands the idle ones to ``kept``) and removes their folders. ``scratch`` (if given) is
    the caller's and kept: each task works in a folder of it (see :meth:`run`) and sees
    nothing else of it but its top-level files, read-only; without it each task gets a fresh
    folder that is removed. ``hide`` names paths (dataset files with labels, say) that no
    task may see, on top of the homes and stores every worker covers.
    """

    def __init__(
        self,
        entry: str,
        *,
        limits: Limits = DEFAULT_LIMITS,
        jobs: int = 1,
        preload: Sequence[str] = ("torch",),
        scratch: Path | None = None,
        keep_workers: bool = False,
        kept: KeptWorkers = KEPT,
        hide: Sequence[str | Path] = (),
    ) -> None:
        if ":" not in entry:
            raise ValueError(f"entry must be 'package.module:function', got {entry!r}")
        self.entry = entry
        self.limits = limits
        self.jobs = jobs
        self.preload = tuple(preload)
        self.keep_workers = keep_workers
        self._kept = kept
        self._scratch = Path(scratch) if scratch is not None else None
        self._scratch_str = str(self._scratch.resolve()) if self._scratch is not None else None
        self.hide = tuple(sorted({os.path.realpath(p) for p in hide}))
        self._key: PoolKey = (self.preload, limits.network, self._scratch_str, self.hide)
        self._limits_dict = asdict(limits)
        self._workers: list[WorkerProcess] = []
        self._selector = selectors.DefaultSelector()
        self._own_base: Path | None = None
        self._counter = 0
        self._batch: _Batch | None = None
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers the pool holds now (for callers that watch them)."""
        return [worker.pid for worker in self._workers]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(
        self,
        payloads: Sequence[dict[str, Any]],
        *,
        on_result: OnResult | None = None,
        on_tick: Callable[[], None] | None = None,
        task_dirs: Sequence[str] | None = None,
    ) -> list[SandboxResult]:
        """Run every payload; results come back in payload order.

        With a ``scratch``, payload ``i`` runs in ``scratch/task_dirs[i]`` (default
        ``task-<i>``), created here: a plain name, so the caller knows where its files are.

        ``on_result(i, result)`` fires as each task finishes; ``on_tick()`` at least once a
        second (progress files, heartbeats). A worker that dies is replaced and its task
        reported ``crashed``. Raises :class:`SandboxError` only if a worker cannot start.
        """
        if self._closed:
            raise RuntimeError("this WorkerPool is closed")
        if not payloads:
            return []
        names = list(task_dirs) if task_dirs is not None else [f"task-{i}" for i in
                                                                range(len(payloads))]
        if len(names) != len(payloads) or any(not _plain_name(n) for n in names):
            raise ValueError("task_dirs needs one plain folder name (no '/', not '.' or "
                             f"'..') per payload, got {names!r:.200}")
        if self._scratch is not None:
            self._scratch.mkdir(parents=True, exist_ok=True)
            for name in names:
                (self._scratch / name).mkdir(exist_ok=True)
        batch = self._batch = _Batch(payloads, on_result, names)
        try:
            for worker in list(self._workers):  # left from an earlier run: still usable?
                if not worker.alive():
                    self._drop(worker)
                elif worker.ready and worker.task is None:
                    self._dispatch(worker)
            for _ in range(max(1, min(self.jobs, len(payloads))) - len(self._workers)):
                self._spawn()
            while batch.remaining:
                self._step(batch, on_tick)
        except BaseException:
            for worker in [w for w in self._workers if w.task is not None]:
                self._drop(worker)  # its answer would arrive out of step in a later run
            raise
        finally:
            self._batch = None
        return batch.collect()

    def close(self) -> None:
        """Stop the workers (keep the idle ones with ``keep_workers``); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            if self.keep_workers and worker.idle():
                self._kept.put(self._key, worker)  # torch stays imported in it
            else:
                worker.kill()
        self._workers.clear()
        self._selector.close()
        if self._own_base is not None:
            shutil.rmtree(self._own_base, ignore_errors=True)

    def _step(self, batch: _Batch, on_tick: Callable[[], None] | None) -> None:
        """Wait up to a second for answers, then enforce deadlines and keep a worker alive."""
        timeout = min((w.deadline for w in self._workers), default=0.0) - time.monotonic()
        for key, _ in self._selector.select(timeout=max(0.0, min(timeout, 1.0))):
            worker: WorkerProcess = key.data
            messages, eof = worker.lines()
            for message in messages:
                self._on_message(worker, message)
            if eof:
                code = worker.proc.wait()
                self._retire(worker, "crashed", "WorkerDied", f"sandbox worker exited ({code})")
        if on_tick is not None:
            on_tick()
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.deadline < now and (worker.task is not None or not worker.ready):
                self._retire(worker, "timeout", "Timeout", "sandbox worker stopped answering")
        if not self._workers and batch.remaining:
            self._spawn()

    def _on_message(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        if not worker.ready:
            if not message.get("ready"):
                self._retire(worker, "crashed", "SandboxError", message.get("error", "?"))
            worker.ready = True
            worker.isolation = {"net": message["net"], "fs": message["fs"]}
            _warn_missing(worker.isolation, message.get("harden", {}))
            log.debug("sandbox worker %s ready: %s", message["pid"], worker.isolation)
        else:
            index, worker.task = worker.task, None
            if index is None or message.get("id") != index:
                raise SandboxError(f"sandbox protocol out of step: {message!r:.200}")
            self._finish(index, result_from_answer(message))
        self._dispatch(worker)

    def _base(self) -> Path:
        if self.keep_workers:
            return self._kept.base()
        if self._own_base is None:
            self._own_base = Path(tempfile.mkdtemp(prefix="nnrag-sandbox-"))
        return self._own_base

    def _spawn(self) -> None:
        """Add a worker: a kept one if there is one (it is ready: give it a task now)."""
        kept = self._kept.take(self._key) if self.keep_workers else None
        if kept is not None:
            kept.deadline = time.monotonic() + STARTUP_TIMEOUT_S
            self._adopt(kept)
            self._dispatch(kept)
            return
        writable = [self._scratch_str] if self._scratch_str else []
        worker = WorkerProcess(
            self._base(), self._counter, self.preload, self.limits.network, writable, self.hide
        )
        self._counter += 1
        self._adopt(worker)

    def _adopt(self, worker: WorkerProcess) -> None:
        self._workers.append(worker)
        self._selector.register(worker.fd, selectors.EVENT_READ, worker)

    def _drop(self, worker: WorkerProcess) -> None:
        self._selector.unregister(worker.fd)
        self._workers.remove(worker)
        worker.kill()

    def _dispatch(self, worker: WorkerProcess) -> None:
        batch = self._batch
        if batch is None or not batch.pending:
            return
        i = batch.pending.popleft()
        message = {
            "id": i,
            "entry": self.entry,
            "payload": batch.payloads[i],
            "limits": self._limits_dict,
            "scratch": self._scratch_str,
        }
        if self._scratch_str is not None:
            message["task_dir"] = batch.task_dirs[i]
        if not worker.send(i, message, self.limits.wall_s):
            batch.pending.appendleft(i)  # the worker is gone; its EOF will replace it

    def _finish(self, index: int, result: SandboxResult) -> None:
        if self._batch is not None:
            self._batch.finish(index, result)

    def _retire(self, worker: WorkerProcess, status: str, error_type: str, message: str) -> None:
        """Remove a dead or hung worker, report its task, and start a replacement if needed."""
        self._drop(worker)
        if not worker.ready:
            raise SandboxError(
                f"sandbox worker could not start (preload={list(self.preload)}): "
                f"{message}\n{worker.stderr_tail()}"
            )
        if worker.task is not None:
            log.warning("sandbox worker died during task %d: %s", worker.task, message)
            took = time.monotonic() - worker.started
            self._finish(
                worker.task, SandboxResult(status, None, error_type, message, None, "", "", took)
            )
        if self._batch is not None and self._batch.pending:
            self._spawn()
