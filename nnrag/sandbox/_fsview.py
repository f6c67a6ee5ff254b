"""A minimal view of the file system for a sandbox worker: the caller's private places are
covered, and only what the worker needs to run is put back, read-only.

A read-only ``/`` stops writes, not reads: a task child running as the caller's uid (root
here, without capabilities but still the owner) could read ``$HOME``, nnrag's stores
(``runs.db``, ``index.db``), dataset caches with test labels and other users' files. So the
worker, once, in its private mount namespace and before any thread exists, mounts an empty
tmpfs on each such folder (``/dev/null`` over such a file), binds back the paths it needs
(the interpreter, ``sys.path``, the preloaded packages, its own folder, a caller's scratch)
and makes the tmpfs read-only. A bind keeps the flags of the mount it copies, so what was
writable (the worker's folder) stays writable and the rest stays read-only.

Every step is best effort: a path that does not exist is skipped, and a cover whose setup
fails is taken down again (the worker keeps the plain read-only view of it) and reported.
Like :mod:`nnrag.sandbox._worker` this imports nothing from the rest of ``nnrag``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "SYSTEM_COVERS",
    "CoverPlan",
    "apply_covers",
    "essential_paths",
    "needed_paths",
    "plan_covers",
    "private_paths",
    "under",
]

#: Folders no task needs, whatever the caller: homes, service data, mounts, temporary files.
SYSTEM_COVERS = ("/root", "/home", "/var", "/srv", "/mnt", "/opt", "/tmp")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000
MNT_DETACH = 0x2
_TMPFS_OPTIONS = b"size=1m,nr_inodes=4k,mode=755"


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def under(path: str, top: str) -> bool:
    """True when ``path`` is ``top`` or inside it."""
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def private_paths(env: Mapping[str, str]) -> list[str]:
    """The places to cover, computed in the caller (whose environment the worker never sees):
    the system folders, ``$HOME``, ``$NNRAG_HOME`` (default ``~/.nnrag``), ``$NNRAG_DATA``
    and ``$NNRAG_DB``."""
    home = env.get("HOME") or os.path.expanduser("~")
    found = [*SYSTEM_COVERS, home, env.get("NNRAG_HOME") or os.path.join(home, ".nnrag")]
    found += [env[name] for name in ("NNRAG_DATA", "NNRAG_DB") if env.get(name)]
    return list(dict.fromkeys(_real(p) for p in found))


def _module_dirs(names: Iterable[str]) -> list[str]:
    """Where each (not yet imported) module lives, found without importing it."""
    dirs: list[str] = []
    for name in names:
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(name.lstrip("?"))
            if spec is not None:
                dirs += list(spec.submodule_search_locations or [])
                if spec.origin and os.path.isabs(spec.origin):
                    dirs.append(os.path.dirname(spec.origin))
    return dirs


def essential_paths(preload: Sequence[str]) -> list[str]:
    """What a task cannot run without: the interpreter and its prefixes, nnrag's own package
    and the ``preload`` modules. (A ``sys.path`` entry a test or a user added may be a
    private folder; a task that does not import from it does not need to read it.)"""
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    found += _module_dirs(["nnrag", *preload])
    return sorted({_real(p) for p in found if os.path.exists(p)})


def needed_paths(preload: Sequence[str], extra: Sequence[str]) -> list[str]:
    """What this worker must still see: the interpreter and its prefixes, every ``sys.path``
    entry, the folders of the modules imported so far and of ``preload``, and ``extra``."""
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    found += [p for p in sys.path if p and os.path.isabs(p)]
    found += [
        os.path.dirname(file)
        for module in list(sys.modules.values())
        if isinstance(file := getattr(module, "__file__", None), str) and os.path.isabs(file)
    ]
    found += _module_dirs(preload)
    found += extra
    return sorted({_real(p) for p in found if os.path.exists(p)})


@dataclass(frozen=True)
class CoverPlan:
    """One place to cover and the needed paths under it to bind back (outermost only)."""

    path: str
    binds: tuple[str, ...]


def plan_covers(covers: Sequence[str], needed: Sequence[str]) -> list[CoverPlan]:
    """Order the covers outermost first and say what each must put back.

    A cover that is a needed path or inside one is skipped unless it is strictly inside (then
    it is applied after the bind that brings the needed path back). Under each cover only
    the outermost needed paths are bound back; a bind is recursive, so it brings the rest.
    """
    plans: list[CoverPlan] = []
    for cover in sorted(set(covers), key=lambda p: (p.count(os.sep), p)):
        if cover in needed:
            continue
        inner = [n for n in needed if n != cover and under(n, cover)]
        binds = [n for n in inner if not any(m != n and under(n, m) for m in inner)]
        plans.append(CoverPlan(cover, tuple(binds)))
    return plans


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, source: bytes | None, target: str, fstype: bytes | None,
           flags: int, data: bytes | None, what: str) -> None:  # fmt: skip
    if libc.mount(source, os.fsencode(target), fstype, flags, data) != 0:
        raise OSError(ctypes.get_errno(), f"{what} {target}")


def _make_mountpoint(cover: str, path: str, is_dir: bool) -> None:
    """Create ``path`` (a folder or an empty file) inside the fresh tmpfs on ``cover``."""
    parent = path if is_dir else os.path.dirname(path)
    if parent != cover:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    if not is_dir and not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _cover_dir(libc: ctypes.CDLL, plan: CoverPlan, fds: Mapping[str, int]) -> None:
    _mount(libc, b"tmpfs", plan.path, b"tmpfs", MS_NOSUID | MS_NODEV, _TMPFS_OPTIONS, "tmpfs")
    try:
        for path in plan.binds:
            _make_mountpoint(plan.path, path, os.path.isdir(f"/proc/self/fd/{fds[path]}"))
            source = f"/proc/self/fd/{fds[path]}".encode()
            _mount(libc, source, path, None, MS_BIND | MS_REC, None, "bind back")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        _mount(libc, None, plan.path, None, flags, None, "read-only")
    except OSError:
        libc.umount2(os.fsencode(plan.path), MNT_DETACH)  # the binds go with it
        raise


def apply_covers(covers: Sequence[str], needed: Sequence[str]) -> tuple[list[str], list[str]]:
    """Cover ``covers`` in this process's (private) mount namespace, keeping ``needed``.

    Returns (covered, failures): the paths now hidden and one ``"path: why"`` per cover
    that could not be set up (that path keeps the plain read-only view). Needs
    CAP_SYS_ADMIN over the mount namespace; run before any thread starts.
    """
    libc = _libc()
    fds: dict[str, int] = {}
    for path in needed:  # opened first: once covered, a needed path is reachable by fd only
        with contextlib.suppress(OSError):
            fds[path] = os.open(path, os.O_PATH)
    covered: list[str] = []
    failures: list[str] = []
    try:
        for plan in plan_covers(covers, [p for p in needed if p in fds]):
            if not os.path.lexists(plan.path) or os.path.islink(plan.path):
                continue  # absent (or already hidden by an outer cover); a link's target is
            try:  # covered where it really lives, if at all
                if os.path.isdir(plan.path):
                    _cover_dir(libc, plan, fds)
                elif not plan.binds:
                    _mount(libc, b"/dev/null", plan.path, None, MS_BIND, None, "mask")
                else:
                    continue
            except OSError as exc:
                failures.append(f"{plan.path}: {exc.strerror or exc}")
                continue
            covered.append(plan.path)
    finally:
        for fd in fds.values():
            os.close(fd)
    return covered, failures
