"""The parent's handle on one fork-server subprocess (see :mod:`nnrag.sandbox._worker` for the
other end of the pipe).

Every worker starts with ``python -I`` and a scrubbed environment, so nothing the caller holds
(secrets in the environment, a shadowing ``''`` on ``sys.path``) reaches untrusted code; the
handle only moves JSON lines and tracks the one task in flight and its deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnrag.sandbox._fsview import private_paths

__all__ = ["STARTUP_TIMEOUT_S", "WORKER_GRACE_S", "WorkerProcess"]

#: How long a worker may take to import ``preload`` before the sandbox counts as broken.
STARTUP_TIMEOUT_S = 180.0
#: Extra time the parent grants a worker beyond ``wall_s`` before declaring it hung.
WORKER_GRACE_S = 15.0

_BOOTSTRAP = (
    "import sys, json; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
    "from nnrag.sandbox._worker import main; main()"
)


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


class WorkerProcess:
    """One fork-server subprocess and the parent's view of it (line buffer, task in flight)."""

    def __init__(
        self,
        base: Path,
        index: int,
        preload: Sequence[str],
        network: bool,
        writable: Sequence[str] = (),
        hide: Sequence[str] = (),
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"w{index}-", dir=base))
        self.log_path = self.home.parent / f"{self.home.name}.log"
        config = {
            "preload": list(preload),
            "network": network,
            "work_dir": str(self.home),
            "writable": list(writable),
            "covers": private_paths(os.environ),
            "hide": list(hide),
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

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def idle(self) -> bool:
        """Started, between tasks and with nothing half-read: safe to hand to another batch."""
        return self.ready and self.task is None and not self.buffer and self.alive()

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
