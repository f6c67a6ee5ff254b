"""Each task in a PID namespace of its own, under an init of its own, with a ``/proc`` of
that namespace.

Without it a task sees every process on the host in ``/proc`` (command lines, namespaces,
the caller's pid to aim at) and only seccomp and dropped capabilities stand between it and
them. In its own namespace it sees its init and itself, and when the init ends the kernel
kills whatever is left in the namespace: nothing can outlive a trial.

Three processes per task, because of three kernel rules. ``unshare(CLONE_NEWPID)`` works
once per process and moves only its *next* child, so the worker's forked process (the
*relay*, in the worker's namespace) unshares; it also takes a fresh mount namespace, since
the new ``/proc`` must not replace the worker's. Its child is PID 1 (the *init*), which the
kernel shields from signals sent inside its namespace, ``kill(getpid(), SIGKILL)`` included;
so the task is the init's child (PID 2) and dies of its signals as before. The init sends the
task's wait status to the relay over a pipe, and the relay ends the same way, so the worker
reads the task's status and (a wait collects the reaped children's) its resource use.
Like :mod:`nnrag.sandbox._worker` this imports nothing from the rest of ``nnrag``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
from typing import NoReturn

from nnrag.sandbox._isolation import PR_SET_PDEATHSIG, prctl

__all__ = ["enter_pid_namespace"]

CLONE_NEWPID, CLONE_NEWNS = 0x20000000, 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_FAILED = 70
_STATUS = struct.Struct("i")


def enter_pid_namespace() -> str:
    """Called in a process the worker just forked; returns only in the task that is to run.

    Returns ``""`` when the task runs in a fresh PID namespace with its own ``/proc``, or why
    not (then the caller itself is the task, in the worker's namespace, as before).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWPID | CLONE_NEWNS) != 0:
        return f"unshare(CLONE_NEWPID): {os.strerror(ctypes.get_errno())}"
    read_end, write_end = os.pipe()
    if os.fork() != 0:
        os.close(write_end)
        _relay(read_end)
    os.close(read_end)
    why = ""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        if libc.mount(b"proc", b"/proc", b"proc", flags, None) != 0:
            why = f"mount /proc: {os.strerror(ctypes.get_errno())}"
        task = os.fork()
    except BaseException:
        os._exit(_FAILED)
    if task == 0:
        os.close(write_end)
        return why
    _init(task, write_end)


def _init(task: int, status_fd: int) -> NoReturn:
    """PID 1: reap until the task is gone, pass its status on, end (and the namespace with
    it); never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as PID 1: ignored from inside
        while True:
            with contextlib.suppress(InterruptedError):
                pid, status = os.waitpid(-1, 0)
                if pid == task:
                    os.write(status_fd, _STATUS.pack(status))
                    break
    finally:
        os._exit(0)


def _relay(status_fd: int) -> NoReturn:
    """Wait for the init, then end the way the task did (exit code or signal); never
    returns."""
    code = _FAILED
    try:
        _, status = os.wait()
        data = os.read(status_fd, _STATUS.size)
        if len(data) == _STATUS.size:
            (status,) = _STATUS.unpack(data)  # else the init's own end (it was killed)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else _FAILED
    finally:
        os._exit(code)
