"""Run untrusted Python in subprocess sandboxes with wall-time, memory, network and file limits.

Untrusted code (indexed repo code, LLM output) must never run in the caller's process: a
segfault, an infinite loop or ``os._exit`` there would take the caller down. Everything runs
in worker subprocesses instead, and a misbehaving task comes back as a :class:`SandboxResult`.

Design (a fork server, because ``import torch`` costs 1-2 s and we validate thousands of
blocks): ``jobs`` workers are started with ``python -I`` and a scrubbed environment, each
moves into a fresh network namespace, imports ``preload`` once and then forks one child per
task. The child applies rlimits and an audit hook before the trusted ``entry`` function runs
and executes the untrusted code. See :mod:`nnrag.sandbox._worker` for that side,
:mod:`nnrag.sandbox._pool` for the pool of workers these functions drive.
"""

from __future__ import annotations

import selectors
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nnrag.exceptions import SandboxError
from nnrag.sandbox._kept import KEPT
from nnrag.sandbox._limits import DEFAULT_LIMITS, Limits, SandboxResult
from nnrag.sandbox._pool import OnResult, WorkerPool
from nnrag.sandbox._worker_proc import STARTUP_TIMEOUT_S, WorkerProcess

__all__ = [
    "Limits",
    "SandboxResult",
    "isolation_report",
    "run_function",
    "run_many",
    "shutdown_pool",
]


def run_many(
    entry: str,
    payloads: Sequence[dict[str, Any]],
    *,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int = 1,
    preload: Sequence[str] = ("torch",),
    on_result: OnResult | None = None,
    scratch: Path | None = None,
    on_tick: Callable[[], None] | None = None,
    keep_workers: bool = False,
    hide: Sequence[str | Path] = (),
    task_dirs: Sequence[str] | None = None,
) -> list[SandboxResult]:
    """Run ``entry(payload)`` for every payload in sandboxes; results come back in order.

    ``on_result(i, result)`` fires as each task finishes (completion order). A worker that
    dies is replaced and its task reported ``crashed``. ``scratch`` (if given) is the
    caller's and kept: task ``i`` works in ``scratch/task_dirs[i]`` (default ``task-<i>``)
    and sees only that and the top-level files of ``scratch`` (read-only); otherwise each
    task gets a fresh directory that is removed. ``hide`` lists paths no task may see. With
    ``keep_workers`` the idle workers stay warm for the next call (see :func:`shutdown_pool`).
    Raises :class:`SandboxError` only if a worker cannot start at all.
    """
    with WorkerPool(
        entry,
        limits=limits,
        jobs=jobs,
        preload=preload,
        scratch=scratch,
        keep_workers=keep_workers,
        hide=hide,
    ) as pool:
        return pool.run(payloads, on_result=on_result, on_tick=on_tick, task_dirs=task_dirs)


def shutdown_pool() -> None:
    """Stop every idle pooled worker and remove their folders (also runs at exit)."""
    KEPT.shutdown()


def run_function(
    entry: str,
    payload: dict[str, Any],
    *,
    limits: Limits = DEFAULT_LIMITS,
    preload: Sequence[str] = ("torch",),
    scratch: Path | None = None,
    hide: Sequence[str | Path] = (),
    task_dir: str | None = None,
) -> SandboxResult:
    """Run one ``entry(payload)`` in a fresh sandbox (pays the worker start-up; batch with
    :func:`run_many` when there are many tasks)."""
    dirs = None if task_dir is None else [task_dir]
    return run_many(entry, [payload], limits=limits, jobs=1, preload=preload, scratch=scratch,
                    hide=hide, task_dirs=dirs)[0]


def isolation_report(network: bool = False) -> dict[str, str]:
    """Start one bare worker and say which kernel isolation it got on this machine.

    ``{"net": "netns" | "userns+netns" | "none" | "off", "fs": "ro-mountns" | "none"}``;
    the audit hook and rlimits apply in every case. Raises :class:`SandboxError` if no
    worker starts.
    """
    base = Path(tempfile.mkdtemp(prefix="nnrag-sandbox-"))
    worker = WorkerProcess(base, 0, (), network)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(worker.fd, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                selector.select(timeout=1.0)
                messages, eof = worker.lines()
                if messages and messages[0].get("ready"):
                    return {"net": messages[0]["net"], "fs": messages[0]["fs"]}
                if messages or eof:
                    break
        raise SandboxError(f"sandbox worker could not start:\n{worker.stderr_tail()}")
    finally:
        worker.kill()
        shutil.rmtree(base, ignore_errors=True)
