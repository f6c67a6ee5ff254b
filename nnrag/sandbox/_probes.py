"""What runs inside a real task child for :func:`nnrag.sandbox.check`: it looks at itself
through the kernel's eyes and then tries a few escapes, the way hostile model code would.

Every probe reaches libc through ``ctypes`` under a name the audit hook does not know
(``_Fork``, ``mount``, ``open``), so what it measures is the kernel layers, not the friendly
first one. Imports nothing else of ``nnrag``: it is an entry point the worker imports.
"""

from __future__ import annotations

import ctypes
import os
import resource
import socket
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["NAMESPACES", "inspect", "namespace_links"]

NAMESPACES = ("user", "pid", "mnt", "net", "ipc")
MS_REMOUNT, MS_BIND = 0x20, 0x1000
CLONE_NEWNET = 0x40000000
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def namespace_links(pid: str = "self") -> dict[str, str]:
    """Namespace identities (``net:[4026531840]``): equal links mean a shared namespace."""
    links: dict[str, str] = {}
    for name in NAMESPACES:
        try:
            links[name] = os.readlink(f"/proc/{pid}/ns/{name}")
        except OSError:
            links[name] = ""
    return links


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _refused(rc: int) -> tuple[bool, str]:
    if rc < 0:
        return True, f"refused: {os.strerror(ctypes.get_errno())}"
    return False, f"succeeded (returned {rc})"


def _fork() -> tuple[bool, str]:
    pid = _libc()._Fork()
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    return _refused(pid)


def _system() -> tuple[bool, str]:
    code = os.system("true")
    return code != 0, f"returned {code}"


def _mount() -> tuple[bool, str]:
    return _refused(_libc().mount(None, b"/", None, MS_REMOUNT | MS_BIND, None))


def _socket(family: int) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        with socket.socket(family, socket.SOCK_STREAM):
            return False, "a socket was created"

    return probe


def _read(path: str) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        with open(path, "rb") as f:
            size = len(f.read(4096))
        return size == 0, f"read {size} bytes"  # empty: masked (/dev/null bound over it)

    return probe


def _write(path: str) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        fd = _libc().open(os.fsencode(path), _WRITE, 0o600)
        if fd >= 0:
            os.close(fd)
        return _refused(fd)

    return probe


def _siblings() -> tuple[bool, str]:
    """Other workers' homes (and their trials' scratch) live next to this worker's home."""
    home = os.path.dirname(os.getcwd())
    others = [n for n in os.listdir(os.path.dirname(home)) if n != os.path.basename(home)]
    return not others, f"{len(others)} other entries visible"


def _kill(pid: int) -> Callable[[], tuple[bool, str]]:
    return lambda: _refused(_libc().kill(pid, 0))  # signal 0: permission check only


def _setns(pid: int) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            return _refused(_libc().setns(fd, CLONE_NEWNET))
        finally:
            os.close(fd)

    return probe


def _mounts() -> dict[str, str]:
    """Mount point -> file system type, as this process sees them (the last mount wins)."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            point = fields.split()[4].replace("\\040", " ")
            found[point] = rest.split()[0] if rest else ""
    return found


def _file_view(covers: list[str], mounts: dict[str, str]) -> list[str]:
    """The ``covers`` still showing the caller's contents: neither hidden by an outer cover,
    nor a tmpfs (a folder) or a bind of /dev/null (a file)."""
    open_ = []
    for path in covers:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and mounts.get(path) == "tmpfs":
            continue
        if not os.path.isdir(path) and os.path.getsize(path) == 0 and path in mounts:
            continue
        open_.append(path)
    return open_


def _scratch_quota(mounts: dict[str, str]) -> int:
    """The size in MB of the tmpfs this task's scratch (its cwd) is, or 0 if it is not one."""
    cwd = os.getcwd()
    if mounts.get(cwd) != "tmpfs":
        return 0
    vfs = os.statvfs(cwd)
    return vfs.f_blocks * vfs.f_frsize // 2**20


def _run(probe: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    try:
        return probe()
    except OSError as exc:  # PermissionError from the audit hook included
        return True, f"refused: {type(exc).__name__}: {exc}"


def _audit_hook() -> bool:
    try:
        sys.audit("os.system", b"true")  # nothing runs: only the hooks are asked
    except PermissionError:
        return True
    return False


def _limited(which: int) -> bool:
    return resource.getrlimit(which)[0] != resource.RLIM_INFINITY


def inspect(payload: dict[str, Any]) -> dict[str, Any]:
    """Report this task child's privileges, namespaces and limits, then run the probes.

    ``payload``: ``parent_pid`` (the caller, whose secrets and namespaces are the target),
    ``outside`` (a path outside scratch that must stay unwritten), ``shm`` (one in /dev/shm),
    ``sentinels`` (name -> a file the caller wrote in a private place: it must stay unread)
    and ``covers`` (the private places that existed in the caller).
    """
    status: dict[str, str] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    parent = int(payload["parent_pid"])
    probes = {
        "os.system": _system,
        "raw fork (ctypes _Fork)": _fork,
        "remount / writable (ctypes mount)": _mount,
        "open an inet socket": _socket(socket.AF_INET),
        "open a unix socket": _socket(socket.AF_UNIX),
        "read the caller's /proc/<pid>/environ": _read(f"/proc/{parent}/environ"),
        "read /etc/shadow": _read("/etc/shadow"),
        "list other workers' folders": _siblings,
        "signal the caller (kill)": _kill(parent),
        "enter the caller's network namespace (setns)": _setns(parent),
        "write outside scratch (ctypes open)": _write(payload["outside"]),
        "write to /dev/shm (ctypes open)": _write(payload["shm"]),
    }
    probes.update({name: _read(path) for name, path in payload.get("sentinels", {}).items()})
    mounts = _mounts()
    return {
        "status": {k: status.get(k, "") for k in ("NoNewPrivs", "Seccomp", "CapEff", "CapBnd")},
        "uid": os.getuid(),
        "namespaces": namespace_links(),
        "root_read_only": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
        "rlimits": {
            "address space": _limited(resource.RLIMIT_AS),
            "file size": _limited(resource.RLIMIT_FSIZE),
            "processes": _limited(resource.RLIMIT_NPROC),
        },
        "audit_hook": _audit_hook(),
        "uncovered": _file_view(list(payload.get("covers", [])), mounts),
        "scratch_mb": _scratch_quota(mounts),
        "probes": {name: list(_run(probe)) for name, probe in probes.items()},
    }
