"""The walls a sandbox worker puts up around itself and its task children.

Kernel namespaces (no network, no host IPC, a read-only filesystem but for the scratch dirs,
with secrets and sibling workers concealed), set up once by the fork server before any
thread exists; and an audit hook (:class:`Guard`) in every task child that refuses process
creation, network use and Python-level writes outside the scratch dir. The task child's
other layers (capabilities, seccomp) are in :mod:`~nnrag.sandbox._privileges` and
:mod:`~nnrag.sandbox._seccomp`; ``docs/sandbox.md`` lists them all. Like
:mod:`nnrag.sandbox._worker` this imports nothing from the rest of ``nnrag``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from typing import Any

__all__ = [
    "PR_SET_CHILD_SUBREAPER",
    "PR_SET_PDEATHSIG",
    "Guard",
    "conceal",
    "isolate_filesystem",
    "isolate_ipc",
    "isolate_network",
    "mount_scratch",
    "prctl",
    "set_mount_attr",
    "unmount_scratch",
]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 0x1, 0x2, 0x4, 0x20
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
MNT_DETACH = 0x2
#: Readable by uid 0 even without capabilities (their owner): masked with /dev/null instead.
SECRET_FILES = ("/etc/shadow", "/etc/gshadow")
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new-style syscall table)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

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


def isolate_ipc() -> str:
    """Move into a fresh IPC namespace: the host's SysV shared memory, semaphores and message
    queues (keyed by number, guarded only by uid) vanish. ``""`` or why it is missing."""
    if _libc().unshare(CLONE_NEWIPC) == 0:
        return ""
    return f"unshare(CLONE_NEWIPC): {os.strerror(ctypes.get_errno())}"


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


def conceal(work_dir: str, writable: list[str]) -> list[str]:
    """In the worker's private mount namespace, hide what its tasks must not read; return what
    was hidden.

    A task child runs as the uid that owns every other worker's folder (and, as root, the
    shadow files), so permissions alone do not keep it out: the shadow files get /dev/null
    bound over them, and the pool's base folder (every worker's home and log) gets an empty
    read-only tmpfs with only this worker's own home bound back in. Once per worker, so a
    task pays nothing for it. Needs CAP_SYS_ADMIN over the mount namespace, which
    :func:`isolate_filesystem` succeeding implies.
    """
    libc = _libc()
    hidden = [
        secret
        for secret in SECRET_FILES
        if os.path.isfile(secret)
        and libc.mount(b"/dev/null", os.fsencode(secret), None, MS_BIND, None) == 0
    ]
    base = os.path.dirname(work_dir)
    if any(p != work_dir and (p + os.sep).startswith(base + os.sep) for p in writable):
        return hidden  # a caller's scratch under the base folder would vanish too
    keep = os.open(work_dir, os.O_PATH | os.O_DIRECTORY)
    base_b = os.fsencode(base)
    try:
        if libc.mount(b"tmpfs", base_b, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=755"):
            return hidden
        os.mkdir(work_dir, 0o700)
        source = f"/proc/self/fd/{keep}".encode()
        if libc.mount(source, os.fsencode(work_dir), None, MS_BIND | MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), "bind the work dir back")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        if libc.mount(None, base_b, None, flags, None) != 0:
            raise OSError(ctypes.get_errno(), "make the base read-only")
    except OSError:
        libc.umount2(base_b, MNT_DETACH)  # back to the plain read-only view
        return hidden
    finally:
        os.close(keep)
    return [*hidden, base]


def mount_scratch(path: str, size_mb: int) -> str:
    """Make ``path`` a tmpfs of ``size_mb`` MB: a task's total scratch bytes are bounded
    (writes past it fail with ENOSPC) and dropping it frees them at once. ``""`` or why not."""
    options = f"size={max(1, size_mb)}m,mode=700".encode()
    if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV, options):
        return f"mount tmpfs: {os.strerror(ctypes.get_errno())}"
    return ""


def unmount_scratch(path: str) -> None:
    _libc().umount2(os.fsencode(path), MNT_DETACH)


def _mount_setattr(
    libc: ctypes.CDLL, path: str, attr: _MountAttr, recursive: bool = True
) -> None:
    size = ctypes.sizeof(attr)
    path_b, flags = os.fsencode(path), AT_RECURSIVE if recursive else 0
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path_b, flags, ctypes.byref(attr), size):
        code = ctypes.get_errno()
        raise OSError(code, f"mount_setattr {path}: {os.strerror(code)}")


def set_mount_attr(path: str, attr_set: int, recursive: bool = True) -> None:
    """Set mount attributes (``MOUNT_ATTR_RDONLY``, ...) on the mount at ``path``, leaving its
    other flags as they are (a remount would have to repeat them, and a user namespace's
    locked ones at that)."""
    _mount_setattr(_libc(), path, _MountAttr(attr_set=attr_set), recursive)


def prctl(option: int, arg: int) -> None:
    with contextlib.suppress(Exception):
        _libc().prctl(option, arg, 0, 0, 0)


class Guard:
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
