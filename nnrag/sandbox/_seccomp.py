"""The kernel's last word on what a task child may ask for: a seccomp filter, via libseccomp.

Audit hooks only see what Python reports; ``ctypes`` and C extensions reach libc directly.
A seccomp filter is checked by the kernel on every system call, so nothing in the process
can go around it, and it cannot be lifted once loaded. No Python binding is installed here,
so this talks to ``libseccomp.so.2`` through ``ctypes`` (its ABI has been stable since 2.x).
Like :mod:`nnrag.sandbox._worker` this imports nothing from the rest of ``nnrag``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

__all__ = ["DENIED", "load_filter", "seccomp_available"]

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_MASKED_EQ = 1, 7
CLONE_THREAD = 0x00010000


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``: which argument, how to compare, and the one or two data."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


#: Refused outright (EPERM): new programs and processes, mounts, other processes' memory and
#: namespaces, kernel keyrings, modules and BPF, and the escape hatches of file handles.
DENIED = (
    "execve", "execveat", "fork", "vfork", "mount", "umount2", "pivot_root", "chroot",
    "mount_setattr", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    "ptrace", "setns", "unshare", "bpf", "keyctl", "add_key", "request_key",
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "process_vm_readv", "process_vm_writev",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at", "perf_event_open",
    "userfaultfd", "acct", "settimeofday", "clock_settime", "tkill", "personality",
)  # fmt: skip
# Signals may only go to the task itself (libseccomp takes one comparison per argument, so
# not even to its own group: pid 0 and -pgid are refused too).
_SELF_SIGNALS = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

_lib: ctypes.CDLL | None = None
_lib_error = ""


def _libseccomp() -> ctypes.CDLL | None:
    """Load libseccomp once per process (the fork server), so children pay nothing for it."""
    global _lib, _lib_error
    if _lib is None and not _lib_error:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            _lib_error = f"libseccomp not loadable: {exc}"
            return None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
        ]  # fmt: skip
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def seccomp_available() -> str:
    """``""`` when a filter can be built here, else why not (for the layer report)."""
    return "" if _libseccomp() is not None else _lib_error


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: _ArgCmp) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return  # not a system call on this architecture (e.g. an old kernel's table)
    array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
    if rc < 0:
        raise OSError(-rc, f"seccomp rule for {name}")


def load_filter(network: bool) -> str:
    """Install the filter on this (single-threaded, just forked) process; return ``""`` on
    success or the reason it is missing. Irreversible: call after nnrag's last fork/exec.

    ``clone`` stays allowed for threads only (``CLONE_THREAD`` set: torch's thread pools);
    ``clone3`` answers ENOSYS, since its flags live in memory a filter cannot read, and glibc
    then falls back to ``clone``. Without ``network``, no socket can be created at all:
    nnrag hands a task nothing but already-open files, and a UNIX socket on the host file
    system is as much a way out as TCP.
    """
    lib = _libseccomp()
    if lib is None:
        return _lib_error
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        return "seccomp_init failed"
    eperm = _errno_action(errno.EPERM)
    try:
        for name in DENIED:
            _rule(lib, ctx, eperm, name)
        _rule(lib, ctx, eperm, "clone", _ArgCmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0))
        _rule(lib, ctx, _errno_action(errno.ENOSYS), "clone3")
        pid = os.getpid()
        for name in _SELF_SIGNALS:
            _rule(lib, ctx, eperm, name, _ArgCmp(0, SCMP_CMP_NE, pid, 0))
        if not network:
            _rule(lib, ctx, eperm, "socket")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            return f"seccomp_load failed: {os.strerror(-rc)}"
    except OSError as exc:
        return f"seccomp rule rejected: {exc}"
    finally:
        lib.seccomp_release(ctx)
    return ""
