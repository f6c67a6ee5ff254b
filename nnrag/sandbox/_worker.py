"""The code that runs inside a sandbox worker process (never imported by the caller).

A worker is a long-lived fork server: it imports the heavy ``preload`` modules once (torch
takes 1-2 s), then ``os.fork()``s one short-lived child per task, so each task starts from a
warm interpreter in a few milliseconds. The child applies all per-task protections before it
imports the entry module, so nothing the untrusted code does can reach the worker's state.

Protocol: tasks arrive as JSON lines on stdin; answers leave as JSON lines on a private
duplicate of the original stdout (fd 1 itself is pointed at /dev/null so that stray prints
cannot corrupt the channel). This module deliberately imports nothing from ``nnrag`` so that
a broken package cannot stop the worker from starting.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new-style syscall table)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
FSIZE_LIMIT = 256 * 2**20

_PROCESS_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.exec",
        "os.system",
        "os.spawn",
        "os.startfile",
        "subprocess.Popen",
        "pty.spawn",
    }
)
_NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.sendto",
        "socket.sendmsg",
    }
)
# libc symbols that would let ctypes sidestep the process/namespace hooks.
_FORBIDDEN_SYMBOLS = frozenset(
    {"fork", "vfork", "clone", "clone3", "execve", "execv", "execvp", "system", "popen"}
    | {"posix_spawn", "posix_spawnp", "unshare", "setns", "syscall", "connect"}
)
# Events whose listed argument positions are paths that get written; dir_fd follows if any.
_PATH_EVENTS: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.mkdir": ((0, 2),),
    "os.rename": ((0, 2), (1, 3)),
    "os.link": ((1, 3),),
    "os.symlink": ((1, 2),),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.truncate": ((0, None),),
    "os.utime": ((0, 3),),
    "os.mkfifo": ((0, 2),),
    "os.mknod": ((0, 3),),
    "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),),
    "shutil.rmtree": ((0, 1),),
    "shutil.copyfile": ((1, None),),
    "shutil.copytree": ((1, None),),
    "shutil.move": ((0, None), (1, None)),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def isolate_network() -> str:
    """Move this process into a fresh network namespace (only a downed loopback inside).

    Returns how: ``"netns"`` (we hold CAP_SYS_ADMIN), ``"userns+netns"`` (unprivileged user
    namespace with an identity uid map, so file ownership keeps working) or ``"none"``.
    Must run before any thread is started (user namespaces require a single thread).
    """
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) == 0:
        return "netns"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return "none"
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return "userns+netns"


class _MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns")]


def isolate_filesystem(writable: list[str]) -> str:
    """Make every mount read-only in a private mount namespace, except the ``writable`` dirs.

    The audit hook only sees writes made through Python; native code (``torch.save`` to a
    path, sqlite, C extensions) writes directly, so the kernel must refuse it. Needs
    CAP_SYS_ADMIN (root in a container) and mount_setattr (Linux >= 5.12); returns
    ``"ro-mountns"`` on success, ``"none"`` otherwise. Run before any thread starts.
    """
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        return "none"
    try:
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "make / private")
        for path in writable:
            raw = os.fsencode(path)
            if libc.mount(raw, raw, None, MS_BIND | MS_REC, None) != 0:
                raise OSError(ctypes.get_errno(), f"bind {path}")
        _mount_setattr(libc, "/", _MountAttr(attr_set=MOUNT_ATTR_RDONLY))
        for path in writable:
            _mount_setattr(libc, path, _MountAttr(attr_clr=MOUNT_ATTR_RDONLY))
    except OSError:
        return "none"  # the namespace is private to us, so a half-done setup harms no one
    return "ro-mountns"


def _mount_setattr(libc: ctypes.CDLL, path: str, attr: _MountAttr) -> None:
    size = ctypes.sizeof(attr)
    path_b = os.fsencode(path)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path_b, AT_RECURSIVE, ctypes.byref(attr), size):
        raise OSError(ctypes.get_errno(), f"mount_setattr {path}")


def _prctl(option: int, arg: int) -> None:
    with contextlib.suppress(Exception):
        _libc().prctl(option, arg, 0, 0, 0)


class _Guard:
    """The audit hook: refuses process creation, network use and writes outside ``scratch``.

    Audit hooks cannot be removed once installed, which is what makes them usable as a
    second line of defence behind the namespace and rlimits.
    """

    def __init__(self, scratch: str, network: bool) -> None:
        self.scratch = os.path.realpath(scratch)
        self.network = network
        self.pid = os.getpid()

    def _resolve(self, path: Any, dir_fd: Any) -> str | None:
        if isinstance(path, int):
            return None  # an already-open descriptor: it was checked when it was opened
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        name: str = os.fspath(path)
        if not os.path.isabs(name):
            base = os.getcwd()
            if isinstance(dir_fd, int) and dir_fd >= 0:
                base = os.readlink(f"/proc/self/fd/{dir_fd}")
            name = os.path.join(base, name)
        return os.path.realpath(name)

    def _check_write(self, event: str, path: Any, dir_fd: Any = None) -> None:
        real = self._resolve(path, dir_fd)
        if real is None or real == "/dev/null":
            return
        if real == self.scratch or real.startswith(self.scratch + os.sep):
            return
        raise PermissionError(errno.EACCES, f"sandbox: {event} outside the scratch dir", real)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        # Nothing below raises audit events itself (realpath, readlink, stat, getcwd do
        # not), so no re-entrancy guard is needed, and none that threads could race past.
        if event in _PROCESS_EVENTS:
            raise PermissionError(errno.EPERM, f"sandbox: {event} is not allowed")
        if not self.network and event in _NETWORK_EVENTS:
            raise PermissionError(errno.EACCES, f"sandbox: {event} is not allowed (no network)")
        if event in ("os.kill", "os.killpg"):
            if args[0] not in (0, self.pid):
                raise PermissionError(errno.EPERM, f"sandbox: {event} of another process")
            return
        if event == "ctypes.dlsym":
            name = args[1] if len(args) > 1 else None
            if isinstance(name, str) and name in _FORBIDDEN_SYMBOLS:
                raise PermissionError(errno.EPERM, f"sandbox: ctypes symbol {name!r} blocked")
            return
        if event != "open" and event not in _PATH_EVENTS:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes:
                self._check_write(event, path)
            elif mode is None and path is not None and not isinstance(path, int):
                # A directory fd could serve as dir_fd for a relative write we cannot see.
                real = self._resolve(path, None)
                if real and os.path.isdir(real):
                    self._check_write("open(directory)", path)
            return
        for pos, fd_pos in _PATH_EVENTS[event]:
            if pos < len(args) and args[pos] is not None:
                dir_fd = args[fd_pos] if fd_pos is not None and fd_pos < len(args) else None
                self._check_write(event, args[pos], dir_fd)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text
    )


def _virtual_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(task: dict[str, Any], scratch: str, out_dir: str, nproc: int) -> None:
    """Run one task in the forked child; never returns."""
    code = 0
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setpgid(0, 0)
        limits = task["limits"]
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(os.path.join(out_dir, name), _CREATE, 0o600)
            os.dup2(target, fd)
            os.close(target)
        res_fd = os.open(os.path.join(out_dir, "result"), _CREATE, 0o600)
        os.close(null)
        os.chdir(scratch)
        os.environ["HOME"] = os.environ["TMPDIR"] = scratch
        tempfile.tempdir = scratch
        extra = int(limits["memory_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (_virtual_size() + extra,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        fsize = max(FSIZE_LIMIT, 2 * int(limits["max_output_bytes"]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        sys.addaudithook(_Guard(scratch, bool(limits["network"])))
    except BaseException:
        os._exit(70)
    try:
        result: dict[str, Any]
        try:
            module, _, func = task["entry"].partition(":")
            fn = getattr(importlib.import_module(module), func)
            value = json.dumps(fn(task["payload"]))
            result = {"status": "ok", "value": value}
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            result = {
                "status": "crashed",
                "error_type": f"Exit {code}",
                "error_message": str(exc.code),
                "traceback": traceback.format_exc(),
            }
        except BaseException as exc:
            result = {
                "status": "oom" if _is_oom(exc) else "error",
                "error_type": type(exc).__name__,
                "error_message": str(exc),
                "traceback": traceback.format_exc(),
            }
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        data = (json.dumps(result) + "\n").encode()
        while data:
            data = data[os.write(res_fd, data) :]
    except BaseException:
        code = 71
    os._exit(code)


def _wait(pid: int, wall_s: float) -> tuple[bool, int, Any]:
    """Wait for ``pid`` up to ``wall_s``; kill its process group; return (timed_out, status, rusage)."""
    timed_out = False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    deadline = time.monotonic() + wall_s
    if pidfd >= 0:
        try:
            ready, _, _ = select.select([pidfd], [], [], max(0.0, wall_s))
            timed_out = not ready
        finally:
            os.close(pidfd)
    else:
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # stragglers of the task's group, or the task itself
    _, status, rusage = os.wait4(pid, 0)
    _reap_orphans()
    return timed_out, status, rusage


def _reap_orphans() -> None:
    """Kill and reap anything re-parented to us (we are a subreaper) that escaped the group."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    for p in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(p, 0)


def _read_capped(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def run_task(task: dict[str, Any], work_dir: str, nproc: int, base_rss_kb: int) -> dict[str, Any]:
    """Fork a child for ``task``, enforce the wall clock, and build the answer dict."""
    limits = task["limits"]
    own_scratch = not task.get("scratch")
    scratch = tempfile.mkdtemp(prefix="task-", dir=work_dir) if own_scratch else task["scratch"]
    out_dir = tempfile.mkdtemp(prefix="out-", dir=work_dir)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(task, scratch, out_dir, nproc)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also done by the child: whichever runs first wins the race
    timed_out, status, rusage = _wait(pid, float(limits["wall_s"]))
    answer: dict[str, Any] = {"id": task["id"], "duration_s": time.monotonic() - start}
    cap = int(limits["max_output_bytes"])
    answer["stdout"] = _read_capped(os.path.join(out_dir, "stdout"), cap)
    answer["stderr"] = _read_capped(os.path.join(out_dir, "stderr"), cap)
    lines = _read_capped(os.path.join(out_dir, "result"), -1).splitlines()
    if timed_out:
        answer.update(
            status="timeout",
            error_type="Timeout",
            error_message=f"no result within {limits['wall_s']} s",
        )
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and lines:
        try:
            answer.update(json.loads(lines[-1]))
        except ValueError:
            answer.update(status="crashed", error_type="BadResult", error_message=lines[-1][:200])
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        grew_kb = rusage.ru_maxrss - base_rss_kb
        oom = sig == signal.SIGKILL and grew_kb * 1024 >= 0.5 * int(limits["memory_mb"]) * 2**20
        answer.update(
            status="oom" if oom else "crashed",
            error_type=f"Signal {sig}",
            error_message=f"killed by {signal.Signals(sig).name}",
        )
    else:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        answer.update(status="crashed", error_type=f"Exit {code}", error_message=None)
        if lines:
            with contextlib.suppress(ValueError):
                answer.update({k: v for k, v in json.loads(lines[-1]).items() if k != "status"})
    shutil.rmtree(out_dir, ignore_errors=True)
    if own_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return answer


def _count_user_tasks() -> int:
    uid, count = os.getuid(), 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        count += 1
    return count


def main() -> None:
    """Worker entry point: ``argv[2]`` is a JSON config (preload, network, work_dir, writable)."""
    config = json.loads(sys.argv[2])
    sys.dont_write_bytecode = True
    out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    netns = "off" if config["network"] else isolate_network()
    fs = isolate_filesystem([config["work_dir"], *config.get("writable", [])])
    if not os.access(config["work_dir"], os.W_OK):  # a half-applied mount setup
        out.write(json.dumps({"ready": False, "error": "work dir became read-only"}) + "\n")
        return
    try:
        for name in config["preload"]:
            if name.startswith("?"):  # best effort: a speed-up, not a requirement
                with contextlib.suppress(BaseException):
                    importlib.import_module(name[1:])
            else:
                importlib.import_module(name)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    except BaseException as exc:
        out.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return
    nproc = _count_user_tasks() + 256
    base_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.write(json.dumps({"ready": True, "net": netns, "fs": fs, "pid": os.getpid()}) + "\n")
    warmed: set[str] = set()
    for line in sys.stdin:
        if not line.strip():
            continue
        task = json.loads(line)
        module = task["entry"].partition(":")[0]
        if module not in warmed:
            # The entry is trusted code: importing it once here saves every child the cost.
            # A failure is ignored; the child imports again and reports it as the task's error.
            warmed.add(module)
            with contextlib.suppress(Exception):
                importlib.import_module(module)
        try:
            answer = run_task(task, config["work_dir"], nproc, base_rss_kb)
        except Exception as exc:  # a worker-side failure is reported, not fatal
            answer = {
                "id": task.get("id"),
                "status": "crashed",
                "error_type": f"Worker{type(exc).__name__}",
                "error_message": str(exc),
                "traceback": traceback.format_exc(),
            }
        out.write(json.dumps(answer) + "\n")
