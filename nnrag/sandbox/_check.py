""":func:`check`: which isolation layers a task child really gets on this machine, measured
from inside one, and whether a few built-in escapes are contained.

Layers are reported, not assumed: a kernel without user namespaces, a container that forbids
``unshare`` or a missing libseccomp each silently remove one, and the caller (``nnrag sandbox
--check``, a CI job) should see which.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrag.config import nnrag_home
from nnrag.exceptions import SandboxError
from nnrag.sandbox._fsview import private_paths
from nnrag.sandbox._limits import Limits
from nnrag.sandbox._probes import namespace_links
from nnrag.sandbox._runner import run_function

__all__ = ["LayerState", "ProbeOutcome", "SandboxCheck", "check"]

_ENTRY = "nnrag.sandbox._probes:inspect"


@dataclass(frozen=True)
class LayerState:
    """One layer of the sandbox: ``active`` or not, and the evidence either way."""

    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class ProbeOutcome:
    """One escape attempted from inside a task child, and what the kernel said."""

    name: str
    contained: bool
    detail: str


@dataclass(frozen=True)
class SandboxCheck:
    """The layers a task child had and the outcome of every probe run in it."""

    layers: tuple[LayerState, ...]
    probes: tuple[ProbeOutcome, ...]

    @property
    def contained(self) -> bool:
        """True when every probe was contained (what ``nnrag sandbox --check`` exits on)."""
        return all(p.contained for p in self.probes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "contained": self.contained,
            "layers": [
                {"name": x.name, "state": "active" if x.active else "missing", "detail": x.detail}
                for x in self.layers
            ],
            "probes": [
                {"name": p.name, "contained": p.contained, "detail": p.detail} for p in self.probes
            ],
        }


def _separate(name: str, inside: dict[str, str], outside: dict[str, str]) -> tuple[bool, str]:
    own, caller = inside.get(name, ""), outside.get(name, "")
    if not own or not caller:
        return False, "namespace link unreadable"
    if own == caller:
        return False, f"shared with the caller ({own})"
    return True, f"{own} (caller: {caller})"


def _layers(seen: dict[str, Any], caller_ns: dict[str, str]) -> tuple[LayerState, ...]:
    status, ns = seen["status"], seen["namespaces"]
    user_ok, user_detail = _separate("user", ns, caller_ns)
    if not user_ok:
        user_detail += "; capabilities are dropped and root's uid is given up instead"
    pid_ok, pid_detail = _separate("pid", ns, caller_ns)
    if not pid_ok:
        pid_detail += "; seccomp and dropped capabilities guard signals"
    mnt_ok, mnt_detail = _separate("mnt", ns, caller_ns)
    if mnt_ok and not seen["root_read_only"]:
        mnt_ok, mnt_detail = False, "own mount namespace, but / is writable"
    net_ok, net_detail = _separate("net", ns, caller_ns)
    ipc_ok, ipc_detail = _separate("ipc", ns, caller_ns)
    caps = status["CapEff"].strip("0") == "" and status["CapBnd"].strip("0") == ""
    limits, nnp = seen["rlimits"], status["NoNewPrivs"]
    uid = int(seen["uid"])
    uid_detail = f"uid {uid}" + (f" (the caller runs as uid {os.getuid()})" if uid else "")
    return (
        LayerState("user namespace", user_ok, user_detail),
        LayerState("unprivileged uid", uid != 0, uid_detail),
        LayerState("pid namespace", pid_ok, pid_detail),
        LayerState("mount namespace, read-only /", mnt_ok, mnt_detail),
        LayerState("network namespace", net_ok, net_detail),
        LayerState("ipc namespace", ipc_ok, ipc_detail),
        _file_view(seen["uncovered"]),
        LayerState(
            "scratch quota",
            seen["scratch_mb"] > 0,
            f"tmpfs of {seen['scratch_mb']} MB" if seen["scratch_mb"] else "plain folder",
        ),
        LayerState("no_new_privs", nnp == "1", f"NoNewPrivs {nnp}"),
        LayerState(
            "capabilities dropped", caps, f"CapEff {status['CapEff']}, CapBnd {status['CapBnd']}"
        ),
        LayerState("seccomp filter", status["Seccomp"] == "2", f"Seccomp mode {status['Seccomp']}"),
        LayerState(
            "rlimits",
            all(limits.values()),
            ", ".join(f"{k} {'limited' if v else 'unlimited'}" for k, v in limits.items()),
        ),
        LayerState(
            "audit hook",
            bool(seen["audit_hook"]),
            "refuses os.system" if seen["audit_hook"] else "not installed",
        ),
    )


def _file_view(uncovered: list[str]) -> LayerState:
    if uncovered:
        return LayerState("minimal file view", False, "visible: " + ", ".join(uncovered))
    return LayerState("minimal file view", True, "home, stores and system data covered")


def _plant_sentinels(token: str) -> dict[str, Path]:
    """A file in ``$HOME`` and one in ``$NNRAG_HOME`` (when that folder exists: a check does
    not create it) that the probe child must not be able to read."""
    places = {"read a file in $HOME": Path.home(), "read a file in $NNRAG_HOME": nnrag_home()}
    planted: dict[str, Path] = {}
    for name, folder in places.items():
        path = folder / f".nnrag-check-{token}"
        if folder.is_dir() and path not in planted.values():
            try:
                path.write_text("sentinel")
            except OSError:
                continue
            planted[name] = path
    return planted


def check(network: bool = False) -> SandboxCheck:
    """Run :mod:`nnrag.sandbox._probes` in a real task child (the same worker, fork and
    hardening every trial gets) and report its layers and probes.

    Raises :class:`SandboxError` if no worker starts. A probe run that does not come back
    (an escape replaced or killed the child) is itself reported as not contained.
    """
    caller_ns = namespace_links()
    outside = Path(tempfile.gettempdir()) / f"nnrag-check-{uuid.uuid4().hex}"
    shm = Path("/dev/shm") / f"nnrag-check-{uuid.uuid4().hex}"
    covers = [p for p in private_paths(os.environ) if os.path.lexists(p)]
    sentinels = _plant_sentinels(uuid.uuid4().hex)
    payload = {"parent_pid": os.getpid(), "outside": str(outside), "shm": str(shm),
               "sentinels": {k: str(v) for k, v in sentinels.items()}, "covers": covers}
    try:
        result = run_function(_ENTRY, payload, limits=Limits(wall_s=30.0, network=network),
                              preload=())  # fmt: skip
    finally:
        leaked = [p for p in (outside, shm) if p.exists()]
        for path in [*leaked, *sentinels.values()]:
            path.unlink(missing_ok=True)
    if not result.ok:
        raise SandboxError(f"the sandbox probe did not finish: {result.status} "
                           f"{result.error_type}: {result.error_message}")  # fmt: skip
    seen: dict[str, Any] = result.value
    probes = [ProbeOutcome(name, bool(ok), str(detail))
              for name, (ok, detail) in seen["probes"].items()]  # fmt: skip
    probes += [ProbeOutcome(f"file left behind: {p}", False, "written") for p in leaked]
    return SandboxCheck(_layers(seen, caller_ns), tuple(probes))
