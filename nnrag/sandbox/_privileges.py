"""Give up every privilege a task child holds before untrusted code runs.

Run as root (containers, CI), a forked child keeps the full capability set: it could remount
``/`` writable, enter the host's network namespace or read any process's environment. Here
it drops the bounding set (so no exec can bring a capability back), empties its effective,
permitted and inheritable sets, clears ambient capabilities, turns off "dumpable" and sets
``no_new_privs``. Run as root in the host's user namespace, it also becomes an unprivileged
uid (``nobody``): uid 0 owns ``/etc/ssh``'s host keys and every other root-only file the
minimal view leaves in sight, and owners read their files without any capability. In a user
namespace of its own (an unprivileged caller) the uid already is the caller's. Imports
nothing else of ``nnrag``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
from typing import NamedTuple

__all__ = ["Identity", "drop_privileges", "status_fields", "task_identity"]

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63  # PR_CAPBSET_DROP of an unknown capability fails harmlessly (EINVAL)


class Identity(NamedTuple):
    """The uid and gid a task child takes instead of root's."""

    uid: int
    gid: int


_FALLBACK = Identity(65534, 65534)


def _host_root() -> bool:
    """True when this process is uid 0 of the host's (initial) user namespace, whose map is
    the whole identity range; uid 0 inside a namespace of our own is the caller's uid."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True  # no user namespaces at all: uid 0 is the host's root


def task_identity() -> Identity | None:
    """Who a task child becomes: ``nobody`` when running as the host's root, else ``None``
    (keep the uid: it is already an unprivileged one)."""
    if not _host_root():
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam("nobody")
        return Identity(entry.pw_uid, entry.pw_gid)
    return _FALLBACK


def drop_privileges(identity: Identity | None = None) -> str:
    """Drop all capabilities and set ``no_new_privs``; ``""`` on success, else the reason.

    The bounding set goes first, while CAP_SETPCAP is still held; an unprivileged process
    has nothing to drop there and skips it. Then ``identity`` (if any) replaces uid 0: the
    supplementary groups go, then the gid, then the uid, which the kernel follows by
    clearing every capability set.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    problems: list[str] = []
    for cap in range(_last_cap() + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 1:
            break  # EPERM: no CAP_SETPCAP, so the set was never ours to shape
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if identity is not None:
        try:
            os.setgroups([])
            os.setresgid(identity.gid, identity.gid, identity.gid)
            os.setresuid(identity.uid, identity.uid, identity.uid)
        except OSError as exc:
            problems.append(f"switch to uid {identity.uid}: {exc.strerror}")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        problems.append(f"capset: {os.strerror(ctypes.get_errno())}")
    # Not dumpable: a sibling trial of the same uid cannot open our /proc entries (cwd, fd,
    # environ, mem), which permissions alone would allow once both hold no capabilities.
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        problems.append(f"dumpable: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        problems.append(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    return "; ".join(problems)


def status_fields(path: str = "/proc/self/status") -> dict[str, str]:
    """The kernel's own account of a process's privileges (``CapEff``, ``NoNewPrivs``, ...)."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields
