"""The idle fork servers that outlive a :class:`~nnrag.sandbox._pool.WorkerPool`.

A pool with ``keep_workers`` hands its idle workers here when it closes, and the next pool
with the same start-up settings takes them back, so a trial pays a fork instead of a Python
start plus ``import torch``. One explicit object (:data:`KEPT`) instead of module globals, so
tests and callers can see and empty it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from nnrag.sandbox._worker_proc import WorkerProcess

__all__ = ["KEPT", "KeptWorkers", "PoolKey"]

#: What a worker is fixed to when it starts: (preload, network, scratch, hidden paths).
PoolKey = tuple[tuple[str, ...], bool, str | None, tuple[str, ...]]


class KeptWorkers:
    """Idle fork servers kept between pools: a trial then pays a fork, not a Python start plus
    ``import torch``. Only the ``max_idle`` most recently kept survive, because each one holds
    a warm torch in memory."""

    def __init__(self, max_idle: int = 4) -> None:
        self.max_idle = max_idle
        self._idle: dict[PoolKey, list[WorkerProcess]] = {}
        self._order: list[WorkerProcess] = []  # oldest first
        self._base: Path | None = None
        self._registered = False

    def __len__(self) -> int:
        return len(self._order)

    def workers(self) -> list[WorkerProcess]:
        """The kept workers, oldest first."""
        return list(self._order)

    def base(self) -> Path:
        """The folder kept workers' homes live in; it outlives pools, so it is removed only by
        :meth:`shutdown` (also registered to run at exit)."""
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="nnrag-sandbox-pool-"))
            if not self._registered:
                atexit.register(self.shutdown)
                self._registered = True
        return self._base

    def take(self, key: PoolKey) -> WorkerProcess | None:
        """A live kept worker for ``key`` (the newest), or None; dead ones found are reaped."""
        idle = self._idle.get(key)
        while idle:
            worker = idle.pop()
            if worker in self._order:
                self._order.remove(worker)
            if worker.alive():
                return worker
            worker.kill()
        return None

    def put(self, key: PoolKey, worker: WorkerProcess) -> None:
        """Keep an idle worker, stopping the oldest kept ones beyond ``max_idle``."""
        self._idle.setdefault(key, []).append(worker)
        self._order.append(worker)
        while len(self._order) > self.max_idle:
            oldest = self._order.pop(0)
            for idle in self._idle.values():
                if oldest in idle:
                    idle.remove(oldest)
            oldest.kill()

    def shutdown(self) -> None:
        """Stop every kept worker and remove their folder."""
        for idle in self._idle.values():
            for worker in idle:
                worker.kill()
        self._idle.clear()
        self._order.clear()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None


#: The process-wide cache behind ``run_many(keep_workers=True)`` and ``shutdown_pool()``.
KEPT = KeptWorkers(max_idle=4)
