"""Tests of :class:`WorkerPool` itself: ordering, recovery, process lifetime, kept workers."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from nnrag.sandbox._kept import KeptWorkers
from nnrag.sandbox._limits import Limits, SandboxResult
from nnrag.sandbox._pool import WorkerPool

from . import _sandbox_entries

CALL = f"{_sandbox_entries.__name__}:call"
FAST = Limits(wall_s=10.0)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_results_arrive_in_payload_order_over_two_workers() -> None:
    seconds = [1.0, 0.0, 0.3, 0.0, 0.1, 0.0, 0.2, 0.0]
    seen: list[int] = []
    with WorkerPool(CALL, limits=FAST, jobs=2, preload=()) as pool:
        results = pool.run(
            [{"fn": "sleep", "seconds": s} for s in seconds],
            on_result=lambda i, r: seen.append(i),
        )
        assert len(pool.pids) == 2
    assert [r.value for r in results] == seconds
    assert sorted(seen) == list(range(len(seconds)))
    assert seen != list(range(len(seconds)))  # callbacks in completion order


def test_crashes_do_not_lose_the_other_payloads() -> None:
    payloads = [
        {"fn": "echo", "i": 0},
        {"fn": "sleep", "seconds": 20},  # its worker is killed while it sleeps
        {"fn": "exit_code", "code": 3},  # the task's child dies, the worker lives
        {"fn": "kill_self"},
        {"fn": "echo", "i": 4},
    ]
    with WorkerPool(CALL, limits=Limits(wall_s=30), preload=()) as pool:

        def on_result(i: int, result: SandboxResult) -> None:
            if i == 0:
                threading.Timer(0.5, os.killpg, (pool.pids[0], signal.SIGKILL)).start()

        results = pool.run(payloads, on_result=on_result)
    assert [r.status for r in results] == ["ok", "crashed", "crashed", "crashed", "ok"]
    assert results[1].error_type == "WorkerDied"
    assert results[2].error_type == "Exit 3"
    assert [results[0].value["echo"]["i"], results[4].value["echo"]["i"]] == [0, 4]


def test_workers_live_across_runs_and_stop_on_exit() -> None:
    entry = f"{_sandbox_entries.__name__}:parent_pid"
    with WorkerPool(entry, limits=FAST, preload=()) as pool:
        first = pool.run([{}])
        second = pool.run([{}, {}])
        pids = pool.pids
        assert first[0].value == second[0].value == second[1].value == pids[0]
        assert running(pids[0])
    assert pool.pids == [] and not running(pids[0])
    with pytest.raises(RuntimeError, match="closed"):
        pool.run([{}])


def test_exception_in_the_block_still_stops_the_workers() -> None:
    with pytest.raises(KeyError), WorkerPool(CALL, limits=FAST, preload=()) as pool:
        pool.run([{"fn": "echo"}])
        pids = pool.pids
        raise KeyError("caller bug")
    assert pids and not any(running(pid) for pid in pids)


def test_kept_workers_go_to_the_cache_and_back() -> None:
    kept = KeptWorkers(max_idle=1)
    entry = f"{_sandbox_entries.__name__}:parent_pid"
    try:
        with WorkerPool(entry, preload=(), jobs=2, keep_workers=True, kept=kept) as pool:
            both = pool.pids if pool.run([{}, {}]) else []
            assert len(both) == 2
        assert len(kept) == 1  # the older of the two was stopped: only max_idle stay
        [survivor] = [w.pid for w in kept.workers()]
        assert [running(pid) for pid in both].count(True) == 1 and running(survivor)
        with WorkerPool(entry, preload=(), keep_workers=True, kept=kept) as again:
            assert again.run([{}])[0].value == survivor
        with WorkerPool(entry, preload=("json",), keep_workers=True, kept=kept) as other:
            assert other.run([{}])[0].value != survivor  # other start-up settings: new worker
    finally:
        kept.shutdown()
    assert len(kept) == 0 and not running(survivor)


def test_bad_entry_and_empty_batch_start_nothing() -> None:
    with pytest.raises(ValueError, match="package.module:function"):
        WorkerPool("no_colon")
    with WorkerPool(CALL, preload=()) as pool:
        assert pool.run([]) == [] and pool.pids == []
