"""Entry points that attack the sandbox the way hostile model code would.

Every libc function is reached through libc's own ``dlsym`` (an address, then a ctypes
prototype), which the audit hook never sees: these measure the kernel layers. Each entry
raises ``OSError`` when the kernel refuses, as an attacker checking return codes would.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import signal
import time
from typing import Any

SHELL_MARKER = "echo pwned > {marker}"


def _raw(name: str, restype: Any, *argtypes: Any) -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.dlsym.restype = ctypes.c_void_p
    libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    address = libc.dlsym(None, name.encode())
    if not address:
        raise OSError(f"no symbol {name}")
    return ctypes.CFUNCTYPE(restype, *argtypes, use_errno=True)(address)


def _check(rc: int, what: str) -> int:
    if rc < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return rc


def remount_root(payload: dict[str, Any]) -> None:
    mount = _raw("mount", ctypes.c_int, *[ctypes.c_char_p] * 3, ctypes.c_ulong, ctypes.c_void_p)
    _check(mount(None, b"/", None, 0x20 | 0x1000, None), "mount")  # MS_REMOUNT | MS_BIND
    _write_natively(payload["marker"])


def libc_system(payload: dict[str, Any]) -> int:
    code: int = _raw("system", ctypes.c_int, ctypes.c_char_p)(
        SHELL_MARKER.format(**payload).encode()
    )
    if code != 0:
        raise OSError(f"system returned {code}")
    return code


def libc_fork(payload: dict[str, Any]) -> int:
    pid: int = _check(_raw(payload.get("symbol", "fork"), ctypes.c_int)(), "fork")
    if pid == 0:
        with open(payload["marker"], "w") as f:
            f.write("pwned")
        os._exit(0)
    return pid


def posixsubprocess(payload: dict[str, Any]) -> int:
    import _posixsubprocess  # type: ignore[import-not-found]

    argv = [b"/bin/sh", b"-c", SHELL_MARKER.format(**payload).encode()]
    read_end, write_end = os.pipe()
    common = [argv, [argv[0]], True, (write_end,), None, None, -1, -1, -1, -1, -1, -1]
    tail = [True, True, -1, -1, None, -1, -1, None, False]
    pid: int = _posixsubprocess.fork_exec(*common, read_end, write_end, *tail)
    os.waitpid(pid, 0)
    return pid


def libc_execv(payload: dict[str, Any]) -> None:
    argv = (ctypes.c_char_p * 4)(b"/bin/sh", b"-c", SHELL_MARKER.format(**payload).encode(), None)
    execv = _raw("execv", ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    _check(execv(b"/bin/sh", argv), "execv")


def enter_netns(payload: dict[str, Any]) -> None:
    fd = os.open(f"/proc/{payload['pid']}/ns/net", os.O_RDONLY)
    _check(_raw("setns", ctypes.c_int, ctypes.c_int, ctypes.c_int)(fd, 0x40000000), "setns")


def signal_pid(payload: dict[str, Any]) -> None:
    pid = os.getppid() if payload["pid"] == "worker" else int(payload["pid"])
    if payload.get("pidfd"):
        syscall = _raw("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long)
        fd = _check(syscall(434, pid, 0), "pidfd_open")  # x86_64 and generic: 434
        _check(syscall(424, fd, signal.SIGKILL), "pidfd_send_signal")
    else:
        kill = _raw("kill", ctypes.c_int, ctypes.c_int, ctypes.c_int)
        _check(kill(pid, signal.SIGKILL), "kill")


def read_environ(payload: dict[str, Any]) -> str:
    with open(f"/proc/{payload['pid']}/environ", "rb") as f:
        return f.read().decode(errors="replace")


def raw_write(payload: dict[str, Any]) -> None:
    """Write with libc's ``open``: only the kernel's read-only mounts stand in the way."""
    path = payload["path"]
    if payload.get("via_symlink"):
        os.symlink(path, "link")  # inside scratch, pointing out of it
        path = "link"
    _write_natively(path)


def _write_natively(path: str) -> None:
    opener = _raw("open", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int)
    fd = _check(opener(path.encode(), os.O_WRONLY | os.O_CREAT, 0o600), f"open {path}")
    os.write(fd, b"pwned")
    os.close(fd)


def fork_bomb(payload: dict[str, Any]) -> int:
    fork = _raw("fork", ctypes.c_int)
    made = 0
    for _ in range(200):
        pid = _check(fork(), "fork")
        if pid == 0:
            signal.pause()
            os._exit(0)
        made += 1
    return made


def plant_secret(payload: dict[str, Any]) -> str:
    """The victim trial: a secret in its own scratch, held there for a while."""
    with open(f"secret-{payload['token']}", "w") as f:
        f.write(payload["token"])
    time.sleep(payload["hold_s"])
    return os.getcwd()


def hunt_secret(payload: dict[str, Any]) -> list[str]:
    """The thief: look for the victim's file next to its own folders and through /proc."""
    name = f"secret-{payload['token']}"
    base = os.path.dirname(os.path.dirname(os.getcwd()))
    deadline = time.monotonic() + payload["hunt_s"]
    while time.monotonic() < deadline:
        found = glob.glob(f"{base}/*/*/{name}") + glob.glob(f"/proc/*/cwd/{name}")
        stolen = []
        for path in found:
            with contextlib.suppress(OSError), open(path) as f:
                stolen.append(f.read())
        if stolen:
            return stolen
        time.sleep(0.05)
    return []


def read_file(payload: dict[str, Any]) -> str:
    with open(payload["path"], "rb") as f:
        return f.read().decode(errors="replace")


def call(payload: dict[str, Any]) -> Any:
    return globals()[payload["fn"]](payload)


def sysv_segments(payload: dict[str, Any]) -> list[int]:
    """The SysV shared memory ids this task can see (the host's, without an IPC namespace)."""
    with open("/proc/sysvipc/shm") as f:
        return [int(line.split()[1]) for line in f.readlines()[1:]]


def list_dir(payload: dict[str, Any]) -> list[str]:
    return sorted(os.listdir(payload["path"]))


def fill_scratch(payload: dict[str, Any]) -> int:
    """Write 1 MB files into scratch until ``total_mb`` are written (or the quota stops it)."""
    block = b"x" * 2**20
    for i in range(payload["total_mb"]):
        with open(f"fill-{i}", "wb") as f:
            f.write(block)
    return payload["total_mb"]


def own_processes(payload: dict[str, Any]) -> dict[str, Any]:
    """This task's pid and every process its ``/proc`` lists."""
    return {"pid": os.getpid(), "processes": sorted(int(n) for n in os.listdir("/proc")
                                                     if n.isdigit())}  # fmt: skip


def rival_in_shared_scratch(payload: dict[str, Any]) -> dict[str, Any]:
    """A trial sharing the caller's scratch: what can it see of it, and can it change the
    rival's output, the shared input or plant a link for the next trial?"""
    shared = os.path.dirname(os.getcwd())
    seen = sorted(os.listdir(shared))
    tampered: list[str] = []
    for target in (os.path.join(shared, payload["rival"], "progress.jsonl"),
                   os.path.join(shared, payload["input"])):  # fmt: skip
        with contextlib.suppress(OSError):
            _write_natively(target)
            tampered.append(target)
        chmod = _raw("chmod", ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        if chmod(target.encode(), 0o666) == 0:
            tampered.append(f"chmod {target}")
    symlink = _raw("symlink", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p)
    if symlink(b"/etc/passwd", os.path.join(shared, "planted").encode()) == 0:
        tampered.append("symlink")
    with open(os.path.join(shared, payload["input"])) as f:
        data = f.read()
    return {"seen": seen, "tampered": tampered, "input": data, "cwd": os.path.basename(os.getcwd())}


def identity(payload: dict[str, Any]) -> dict[str, Any]:
    """Who the task runs as, and whether a root-only file outside the covers is readable."""
    readable = []
    for path in payload.get("paths", []):
        with contextlib.suppress(OSError), open(path, "rb") as f:
            f.read(1)
            readable.append(path)
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "groups": os.getgroups(), "readable": readable}
