"""Run a command as an unprivileged user (uid/gid 65534), the way a user without root runs
nnrag: ``python -m tests.sandbox._as_nobody CMD ...`` (as root).

The interpreter here may live under a private home (``/root``, mode 0700) that such a user
could not even start Python from, so first, in a mount namespace of this process only, every
closed folder above what Python needs gets an open tmpfs with those paths bound back (the
sandbox's own :func:`~nnrag.sandbox._fsview.apply_covers`). Nothing else changes: the uid,
groups and capabilities are those of any unprivileged user, and the sandbox under test has
to build its walls from an unprivileged user namespace.
"""

from __future__ import annotations

import ctypes
import os
import sys

from nnrag.sandbox._fsview import apply_covers, needed_paths

NOBODY = 65534
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18


def _closed_ancestors(path: str) -> set[str]:
    """The folders above ``path`` that others cannot pass through."""
    found: set[str] = set()
    parent = os.path.dirname(path)
    while parent and parent != os.sep:
        if not os.stat(parent).st_mode & 0o001:
            found.add(parent)
        parent = os.path.dirname(parent)
    return found


def main() -> None:
    needed = needed_paths((), [os.getcwd()])
    closed = set().union(*(_closed_ancestors(p) for p in needed))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None):
        sys.exit(f"as_nobody: private mount namespace: {os.strerror(ctypes.get_errno())}")
    _, failures = apply_covers(sorted(closed), needed)
    if failures:
        sys.exit(f"as_nobody: {failures}")
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
