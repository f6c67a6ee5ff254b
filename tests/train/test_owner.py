"""``resume`` sees a dead engine by its process, not only by a heartbeat a minute old."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnrag.train.runstore import RunStore

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

ENGINE = """
import sys, time
from nnrag.train.runstore import RunStore
runs = RunStore(sys.argv[1])
run = runs.create("m", "digits", {"model": {"code": "x"}}, "k", "m", "f", "x")
runs.start(run)
print(run, flush=True)
time.sleep(600)
"""


def test_a_killed_engine_orphans_its_runs_at_once(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    engine = subprocess.Popen([sys.executable, "-c", ENGINE, str(db)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert engine.stdout is not None
        run = int(engine.stdout.readline())
        runs = RunStore(db)
        assert runs.orphans() == []  # alive, fresh heartbeat
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait()
        started = time.monotonic()
        assert [r.id for r in runs.orphans()] == [run]  # at once, not 60 s later
        assert time.monotonic() - started < 5
        runs.close()
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


def test_a_live_owner_keeps_its_runs(tmp_path: Path) -> None:
    from nnrag.train import _owner

    runs = RunStore(tmp_path / "runs.db")
    run = runs.create("m", "digits", {"model": {"code": "x"}}, "k", "m", "f", "x")
    runs.start(run)
    assert runs.get(run).owner == _owner.current()
    assert runs.orphans() == []
    assert [r.id for r in runs.orphans(stale_after_s=-1)] == [run]  # the heartbeat still counts
    runs.requeue(run)
    assert runs.get(run).owner is None
    runs.close()


def test_owner_tokens() -> None:
    from nnrag.train import _owner

    me = _owner.current()
    assert _owner.alive(me) is True
    host, pid, started = me.rsplit(":", 2)
    assert int(pid) == os.getpid() and started.isdigit()
    assert _owner.alive(f"{host}:{pid}:{int(started) + 1}") is False  # a recycled pid
    assert _owner.alive(f"{host}:{2**31 - 2}:1") in (False, None)  # no such pid
    assert _owner.alive(f"another-host-{host}:{pid}:{started}") is None
    for bad in (None, "", "garbage", "h:x:1", f"{host}:-1:1", f"{host}:{2**80}:1"):
        assert _owner.alive(bad) is None
