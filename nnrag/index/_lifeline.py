"""Parser worker processes die with the process that started them.

A ``ProcessPoolExecutor`` worker outlives a parent killed with SIGKILL: it blocks for ever
writing a result nobody reads (the pipe's read end is still open in its siblings), holding
hundreds of MB. :func:`die_with_parent` is the pool's initializer: on Linux the kernel
sends the worker SIGKILL when its parent exits (``PR_SET_PDEATHSIG``); everywhere, a
daemon thread also checks every second that the parent is still the one it started with.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def _set_pdeathsig() -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent:  # re-parented: the pool's owner is gone
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when ``parent`` (the pool owner's pid) exits."""
    _set_pdeathsig()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="nnrag-lifeline", daemon=True).start()
