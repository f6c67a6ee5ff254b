"""Parser workers die with ``nnrag index``: a SIGKILLed index run leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

# A file LibCST takes a while to parse, so the workers are busy when the parent dies.
BODY = "".join(f"def f{i}(x, y=[1, 2, {{'a': (3, 4)}}]):\n"
               f"    return [x + y for _ in range({i})]\n\n" for i in range(150))


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


def test_workers_die_with_a_killed_index_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(400):
        (corpus / f"m{i}.py").write_text(BODY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "nnrag.cli", "index", str(corpus), "--jobs",
                             "4", "--db", str(tmp_path / "i.db"), "--format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 4 and time.monotonic() < deadline and proc.poll() is None:
            workers |= _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the index run never started its parser workers"
        time.sleep(0.5)  # let them get busy
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [w for w in workers if _alive(w)]
        assert not survivors, f"parser workers outlived their killed parent: {survivors}"
    finally:
        for w in workers:  # never leave them behind, whatever the outcome
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
