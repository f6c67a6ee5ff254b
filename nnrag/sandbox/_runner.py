"""Run untrusted Python in subprocess sandboxes with wall-time, memory, network and file limits.

Untrusted code (indexed repo code, LLM output) must never run in the caller's process: a
segfault, an infinite loop or ``os._exit`` there would take the caller down. Everything runs
in worker subprocesses instead, and a misbehaving task comes back as a :class:`SandboxResult`.

Design (a fork server, because ``import torch`` costs 1-2 s and we validate thousands of
blocks): ``jobs`` workers are started with ``python -I`` and a scrubbed environment, each
moves into a fresh network namespace, imports ``preload`` once and then forks one child per
task. The child applies rlimits and an audit hook before the trusted ``entry`` function runs
and executes the untrusted code. See :mod:`nnrag.sandbox._worker` for that side.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nnrag.exceptions import SandboxError
from nnrag.logging import get_logger

__all__ = ["Limits", "SandboxResult", "isolation_report", "run_function", "run_many"]

log = get_logger(__name__)

#: How long a worker may take to import ``preload`` before the sandbox counts as broken.
STARTUP_TIMEOUT_S = 180.0
#: Extra time the parent grants a worker beyond ``wall_s`` before declaring it hung.
WORKER_GRACE_S = 15.0

_BOOTSTRAP = (
    "import sys, json; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "from nnrag.sandbox._worker import main; main()"
)
_STATUSES = ("ok", "timeout", "oom", "error", "crashed")


@dataclass(frozen=True)
class Limits:
    """Per-task limits. ``memory_mb`` is on top of what the warm worker already maps."""

    wall_s: float = 60.0
    memory_mb: int = 4096
    network: bool = False
    max_output_bytes: int = 1_000_000


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one task; ``value`` is the entry's JSON-decoded return when ``ok``."""

    status: str
    value: Any
    error_type: str | None
    error_message: str | None
    traceback: str | None
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _scrubbed_env(home: str) -> dict[str, str]:
    """The whole environment a worker sees: no caller secrets, offline, single-threaded."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_PROXY": "*",
    }


def _result(answer: dict[str, Any]) -> SandboxResult:
    status = answer.get("status", "crashed")
    value = None
    if status == "ok":
        value = json.loads(answer["value"])
    return SandboxResult(
        status=status if status in _STATUSES else "crashed",
        value=value,
        error_type=answer.get("error_type"),
        error_message=answer.get("error_message"),
        traceback=answer.get("traceback"),
        stdout=answer.get("stdout", ""),
        stderr=answer.get("stderr", ""),
        duration_s=float(answer.get("duration_s", 0.0)),
    )


class _Worker:
    """One fork-server subprocess and the parent's view of it (line buffer, task in flight)."""

    def __init__(
        self,
        base: Path,
        index: int,
        preload: Sequence[str],
        network: bool,
        writable: Sequence[str] = (),
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"w{index}-", dir=base))
        self.log_path = self.home.parent / f"{self.home.name}.log"
        config = {
            "preload": list(preload),
            "network": network,
            "work_dir": str(self.home),
            "writable": list(writable),
        }
        # '' is the caller's current folder (``python -c``/stdin): a folder named like an
        # installed package there (a source checkout being indexed) would shadow it.
        paths = [os.path.abspath(p) for p in sys.path if p]
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(paths), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=_scrubbed_env(str(self.home)),
                cwd=str(self.home),
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.isolation: dict[str, str] = {}
        self.task: int | None = None
        self.started = time.monotonic()
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    def lines(self) -> tuple[list[dict[str, Any]], bool]:
        """Read what is available; return complete messages and whether the pipe hit EOF."""
        eof = False
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in complete if line.strip()], eof

    def send(self, index: int, message: dict[str, Any], wall_s: float) -> bool:
        """Hand a task to the worker; False if it is already gone (the task was not sent)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return False
        self.task = index
        self.started = time.monotonic()
        self.deadline = self.started + wall_s + WORKER_GRACE_S
        return True

    def stderr_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def run_many(
    entry: str,
    payloads: Sequence[dict],
    *,
    limits: Limits = Limits(),
    jobs: int = 1,
    preload: Sequence[str] = ("torch",),
    on_result: Callable[[int, SandboxResult], None] | None = None,
    scratch: Path | None = None,
    on_tick: Callable[[], None] | None = None,
    keep_workers: bool = False,
) -> list[SandboxResult]:
    """Run ``entry(payload)`` for every payload in sandboxes; results come back in order.

    ``on_result(i, result)`` fires as each task finishes (completion order). A worker that
    dies is replaced and its task reported ``crashed``. ``scratch`` (if given) is shared by
    all tasks and kept; otherwise each task gets a fresh directory that is removed.
    Raises :class:`SandboxError` only if a worker cannot start at all.
    """
    if ":" not in entry:
        raise ValueError(f"entry must be 'package.module:function', got {entry!r}")
    n = len(payloads)
    results: list[SandboxResult | None] = [None] * n
    if n == 0:
        return []
    pending = deque(range(n))
    base = _pool_base() if keep_workers else Path(tempfile.mkdtemp(prefix="nnrag-sandbox-"))
    workers: list[_Worker] = []
    selector = selectors.DefaultSelector()
    limits_dict = asdict(limits)
    scratch_str = str(Path(scratch).resolve()) if scratch is not None else None
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    counter = 0
    remaining = n

    pool_key = (tuple(preload), limits.network, scratch_str)

    def spawn() -> None:
        nonlocal counter
        idle = _IDLE.get(pool_key) if keep_workers else None
        while idle:
            worker = idle.pop()
            if worker in _ORDER:
                _ORDER.remove(worker)
            if worker.proc.poll() is None:  # still alive: already ready, hand it a task
                worker.deadline = time.monotonic() + STARTUP_TIMEOUT_S
                workers.append(worker)
                selector.register(worker.fd, selectors.EVENT_READ, worker)
                dispatch(worker)
                return
            worker.kill()
        worker = _Worker(
            base, counter, preload, limits.network, [scratch_str] if scratch_str else []
        )
        counter += 1
        workers.append(worker)
        selector.register(worker.fd, selectors.EVENT_READ, worker)

    def finish(index: int, result: SandboxResult) -> None:
        nonlocal remaining
        results[index] = result
        remaining -= 1
        if on_result is not None:
            on_result(index, result)

    def dispatch(worker: _Worker) -> None:
        if pending:
            i = pending.popleft()
            message = {
                "id": i,
                "entry": entry,
                "payload": payloads[i],
                "limits": limits_dict,
                "scratch": scratch_str,
            }
            if not worker.send(i, message, limits.wall_s):
                pending.appendleft(i)  # the worker is gone; its EOF will replace it

    def retire(worker: _Worker, status: str, error_type: str, message: str) -> None:
        selector.unregister(worker.fd)
        workers.remove(worker)
        worker.kill()
        if not worker.ready:
            raise SandboxError(
                f"sandbox worker could not start (preload={list(preload)}): "
                f"{message}\n{worker.stderr_tail()}"
            )
        if worker.task is not None:
            log.warning("sandbox worker died during task %d: %s", worker.task, message)
            took = time.monotonic() - worker.started
            finish(
                worker.task, SandboxResult(status, None, error_type, message, None, "", "", took)
            )
        if pending:
            spawn()

    try:
        for _ in range(max(1, min(jobs, n))):
            spawn()
        while remaining:
            timeout = min((w.deadline for w in workers), default=0.0) - time.monotonic()
            for key, _ in selector.select(timeout=max(0.0, min(timeout, 1.0))):
                worker: _Worker = key.data
                messages, eof = worker.lines()
                for msg in messages:
                    if not worker.ready:
                        if not msg.get("ready"):
                            retire(worker, "crashed", "SandboxError", msg.get("error", "?"))
                        worker.ready = True
                        worker.isolation = {"net": msg["net"], "fs": msg["fs"]}
                        log.debug("sandbox worker %s ready: %s", msg["pid"], worker.isolation)
                    else:
                        index, worker.task = worker.task, None
                        if index is None or msg.get("id") != index:
                            raise SandboxError(f"sandbox protocol out of step: {msg!r:.200}")
                        finish(index, _result(msg))
                    dispatch(worker)
                if eof:
                    code = worker.proc.wait()
                    retire(worker, "crashed", "WorkerDied", f"sandbox worker exited ({code})")
            if on_tick is not None:  # at least once a second: progress files, heartbeats
                on_tick()
            now = time.monotonic()
            for worker in list(workers):
                if worker.deadline < now and (worker.task is not None or not worker.ready):
                    retire(worker, "timeout", "Timeout", "sandbox worker stopped answering")
            if not workers and remaining:
                spawn()
    finally:
        for worker in workers:
            reusable = keep_workers and worker.ready and worker.task is None and not worker.buffer
            if reusable and worker.proc.poll() is None:
                _IDLE.setdefault(pool_key, []).append(worker)  # torch stays imported in it
                _ORDER.append(worker)
            else:
                worker.kill()
        while len(_ORDER) > MAX_IDLE:  # each idle worker holds torch: keep only a few
            oldest = _ORDER.pop(0)
            for idle in _IDLE.values():
                if oldest in idle:
                    idle.remove(oldest)
            oldest.kill()
        selector.close()
        if not keep_workers:
            shutil.rmtree(base, ignore_errors=True)
    return [r for r in results if r is not None]


# Idle fork servers kept between ``run_many(keep_workers=True)`` calls: a trial then pays a
# fork, not a Python start plus ``import torch``. Keyed by (preload, network, scratch).
_IDLE: dict[tuple[Any, ...], list[_Worker]] = {}
_ORDER: list[_Worker] = []  # idle workers, oldest first
MAX_IDLE = 4
_POOL_BASE: list[Path] = []


def _pool_base() -> Path:
    if not _POOL_BASE:
        _POOL_BASE.append(Path(tempfile.mkdtemp(prefix="nnrag-sandbox-pool-")))
        atexit.register(shutdown_pool)
    return _POOL_BASE[0]


def shutdown_pool() -> None:
    """Stop every idle pooled worker and remove their folders (also runs at exit)."""
    for idle in _IDLE.values():
        for worker in idle:
            worker.kill()
    _IDLE.clear()
    _ORDER.clear()
    for base in _POOL_BASE:
        shutil.rmtree(base, ignore_errors=True)
    _POOL_BASE.clear()


def run_function(
    entry: str,
    payload: dict,
    *,
    limits: Limits = Limits(),
    preload: Sequence[str] = ("torch",),
    scratch: Path | None = None,
) -> SandboxResult:
    """Run one ``entry(payload)`` in a fresh sandbox (pays the worker start-up; batch with
    :func:`run_many` when there are many tasks)."""
    return run_many(entry, [payload], limits=limits, jobs=1, preload=preload, scratch=scratch)[0]


def isolation_report(network: bool = False) -> dict[str, str]:
    """Start one bare worker and say which kernel isolation it got on this machine.

    ``{"net": "netns" | "userns+netns" | "none" | "off", "fs": "ro-mountns" | "none"}``;
    the audit hook and rlimits apply in every case. Raises :class:`SandboxError` if no
    worker starts.
    """
    base = Path(tempfile.mkdtemp(prefix="nnrag-sandbox-"))
    worker = _Worker(base, 0, (), network)
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
