"""A task's view of a scratch folder it shares with other tasks: its own folder, writable,
and the folder's top-level files (the caller's inputs), read-only; nothing else.

Tasks of one batch share the caller's scratch (the engine puts each trial's data file
there and reads back each trial's progress and logits). Without this, a hostile trial could
read a rival's logits and hand them in as its own, or rewrite the rival's progress file.
So the task child, in a mount namespace of its own and before it drops its capabilities,
mounts an empty tmpfs over the shared folder, binds its own folder back (writable) and each
top-level regular file (read-only, so not even an owner's ``chmod`` gets a write through),
and makes the tmpfs read-only. The other tasks' folders are simply not there.

Like :mod:`nnrag.sandbox._worker` this imports nothing from the rest of ``nnrag``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
from typing import NoReturn

from nnrag.sandbox._isolation import CLONE_NEWNS, MOUNT_ATTR_RDONLY, set_mount_attr

__all__ = ["confine_to"]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000
MNT_DETACH = 0x2
_TMPFS_OPTIONS = b"size=64k,nr_inodes=4k,mode=755"


def _inputs(shared: str) -> dict[str, int]:
    """An ``O_PATH`` descriptor for each top-level regular file (symlinks are not followed:
    a link planted by an earlier task must not pull a file from elsewhere into view)."""
    found: dict[str, int] = {}
    with os.scandir(shared) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                    found[entry.name] = os.open(entry.path, os.O_PATH | os.O_NOFOLLOW)
    return found


def confine_to(shared: str, own: str) -> str:
    """Leave ``shared/own`` (a folder) and ``shared``'s top-level files in view, the files
    read-only; ``""`` on success, else why (then the task is refused: it would see its
    rivals). Runs in the task child, which still holds CAP_SYS_ADMIN over its mount
    namespace; takes a new mount namespace so that the worker's view is untouched."""
    libc = ctypes.CDLL(None, use_errno=True)
    own_path = os.path.join(shared, own)
    fds: dict[str, int] = {}
    own_fd = -1
    try:
        if libc.unshare(CLONE_NEWNS) != 0:
            _fail("unshare(CLONE_NEWNS)")
        # Opened in the new namespace: a bind's source must be a mount of the caller's own.
        own_fd = os.open(own_path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        fds = _inputs(shared)
        shared_b = os.fsencode(shared)
        if libc.mount(b"tmpfs", shared_b, b"tmpfs", MS_NOSUID | MS_NODEV, _TMPFS_OPTIONS):
            _fail("tmpfs over the shared scratch")
        os.mkdir(own_path, 0o755)
        _bind(libc, own_fd, own_path)
        for name, fd in fds.items():
            path = os.path.join(shared, name)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            _bind(libc, fd, path)
            set_mount_attr(path, MOUNT_ATTR_RDONLY, recursive=False)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        if libc.mount(None, shared_b, None, flags, None) != 0:
            _fail("read-only tmpfs")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    finally:
        for fd in [own_fd, *fds.values()]:
            if fd >= 0:
                os.close(fd)
    return ""


def _fail(what: str) -> NoReturn:
    code = ctypes.get_errno()
    raise OSError(code, f"{what}: {os.strerror(code)}")


def _bind(libc: ctypes.CDLL, fd: int, target: str) -> None:
    source = f"/proc/self/fd/{fd}".encode()
    if libc.mount(source, os.fsencode(target), None, MS_BIND | MS_REC, None) != 0:
        _fail(f"bind {target}")
