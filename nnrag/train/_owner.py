"""Which process owns a running trial, and whether that process is still there.

The run store records the engine's owner token with every run it starts. ``resume`` used to
judge a run only by its heartbeat, so for a minute after an engine was killed its runs
looked alive and "nothing to resume" was the answer. A token names the host, the pid and
the process's start time (from ``/proc/<pid>/stat``), so a recycled pid is not mistaken
for the engine; a token from another host cannot be judged here, and the heartbeat decides.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the name (state first), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    return fields if len(fields) > 19 else None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None when unknown."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22 of proc(5), counted after pid and name


@lru_cache(maxsize=4)
def _token(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{start_time(pid) or '?'}"


def current() -> str:
    """This process's owner token, ``host:pid:start``."""
    return _token(os.getpid())


def alive(token: str | None) -> bool | None:
    """True when the process ``token`` names still runs, False when it is gone (or a
    zombie), None when this host cannot tell (no token, another host, a malformed one)."""
    parts = (token or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != socket.gethostname():
        return None
    pid, started = int(parts[1]), parts[2]
    if not 0 < pid < 2**31:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    fields = _stat(pid)
    if fields is None:  # no /proc here: the pid exists, that is all we know
        return True
    return fields[0] != "Z" and (started == "?" or fields[19] == started)
