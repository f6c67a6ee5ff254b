"""The code that runs inside a sandbox worker process (never imported by the caller).

A worker is a long-lived fork server: it imports the heavy ``preload`` modules once (torch
takes 1-2 s), then ``os.fork()``s one short-lived child per task, so each task starts from a
warm interpreter in a few milliseconds. The child applies all per-task protections before it
imports the entry module, so nothing the untrusted code does can reach the worker's state.

Protocol: tasks arrive as JSON lines on stdin; answers leave as JSON lines on a private
duplicate of the original stdout (fd 1 itself is pointed at /dev/null so that stray prints
cannot corrupt the channel). Of ``nnrag`` this imports only the sandbox's own stdlib-only
modules (the walls are in :mod:`nnrag.sandbox._isolation`), so that a broken stage elsewhere
cannot stop the worker from starting.
"""

from __future__ import annotations

import contextlib
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

from nnrag.sandbox._fsview import apply_covers, essential_paths, needed_paths, under
from nnrag.sandbox._isolation import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_PDEATHSIG,
    Guard,
    conceal,
    isolate_filesystem,
    isolate_ipc,
    isolate_network,
    mount_scratch,
    prctl,
    unmount_scratch,
)
from nnrag.sandbox._pidns import enter_pid_namespace
from nnrag.sandbox._privileges import Identity, drop_privileges, task_identity
from nnrag.sandbox._seccomp import load_filter
from nnrag.sandbox._taskview import confine_to

FSIZE_LIMIT = 256 * 2**20
#: This fork server's pid (0 outside a worker); a task inherits it, and in its own PID
#: namespace cannot see it otherwise.
SERVER_PID = 0
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


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


def harden(network: bool, identity: Identity | None = None) -> dict[str, str]:
    """Drop every privilege (and root's uid for ``identity``), then load the seccomp filter
    (which needs ``no_new_privs`` unless CAP_SYS_ADMIN is held, hence the order); map each
    layer to why it is missing."""
    return {"capabilities": drop_privileges(identity), "seccomp": load_filter(network)}


def _unreadable(paths: list[str]) -> str:
    """The first path this (already switched) uid cannot read, if any."""
    blocked = [p for p in paths if not os.access(p, os.R_OK | (os.X_OK * os.path.isdir(p)))]
    if not blocked:
        return ""
    more = f" and {len(blocked) - 1} more" if len(blocked) > 1 else ""
    return f"{blocked[0]}{more} not readable by uid {os.getuid()}; tasks keep uid 0"


def _measure_hardening(
    network: bool, identity: Identity | None, readable: list[str]
) -> dict[str, str]:
    """Harden a throwaway child and report what held, so that a missing layer is known (and
    logged) once per worker instead of being rediscovered in every task. With ``identity``
    it also checks that the new uid can read what a task needs (``readable``): a checkout in
    a private home would otherwise break every task, so then the uid is kept instead."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            pidns = enter_pid_namespace()  # the task's path: relay, init, then this child
            seen = {**harden(network, identity), "pid namespace": pidns}
            seen["unprivileged uid"] = _unreadable(readable) if identity else ""
            os.write(write_end, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read(1 << 16)
    os.waitpid(pid, 0)
    try:
        return {str(k): str(v) for k, v in json.loads(data).items()}
    except (ValueError, AttributeError):
        return dict.fromkeys(("capabilities", "seccomp", "pid namespace"), "probe child failed")


def _refuse(res_fd: int, why: str) -> None:
    data = json.dumps({"status": "error", "error_type": "SandboxError", "error_message": why})
    os.write(res_fd, (data + "\n").encode())
    os._exit(0)


def _child(task: dict[str, Any], scratch: str, out_dir: str, nproc: int,
           identity: Identity | None) -> None:  # fmt: skip
    """Run one task in the forked child; never returns."""
    code = 0
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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
        if task.get("task_dir") and (why := confine_to(task["scratch"], task["task_dir"])):
            _refuse(res_fd, f"could not hide the other tasks' folders: {why}")
        if identity is not None:
            os.chown(scratch, identity.uid, identity.gid)
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
        harden(bool(limits["network"]), identity)  # the last step before untrusted code
        sys.addaudithook(Guard(scratch, bool(limits["network"])))
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
    """Wait for ``pid`` up to ``wall_s``; kill its process group; return (timed_out, status,
    rusage)."""
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


def run_task(
    task: dict[str, Any], work_dir: str, nproc: int, base_rss_kb: int, quota: bool = False,
    identity: Identity | None = None,
) -> dict[str, Any]:
    """Fork a child for ``task``, enforce the wall clock, and build the answer dict.

    With ``quota`` a scratch folder of the worker's own becomes a tmpfs of
    ``limits["scratch_mb"]``. In a caller's shared scratch the task gets the folder
    ``task_dir`` of it (a plain folder, unbounded, which the caller reads while it runs) and
    sees nothing else of it but the top-level files; ``identity`` is the uid it takes."""
    limits = task["limits"]
    own_scratch = not task.get("scratch")
    if own_scratch:
        scratch = tempfile.mkdtemp(prefix="task-", dir=work_dir)
    else:
        task.setdefault("task_dir", f"task-{task['id']}")
        scratch = os.path.join(task["scratch"], task["task_dir"])
        os.makedirs(scratch, exist_ok=True)
    size_mb = int(limits.get("scratch_mb", 1024))
    quota = own_scratch and quota and not mount_scratch(scratch, size_mb)
    out_dir = tempfile.mkdtemp(prefix="out-", dir=work_dir)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        with contextlib.suppress(BaseException):
            enter_pid_namespace()  # returns in the task only; without it this is the task
        _child(task, scratch, out_dir, nproc, identity)
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
    if quota:
        unmount_scratch(scratch)  # frees every byte at once
    if own_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return answer


def _quota_works(work_dir: str) -> str:
    """Mount and drop one scratch tmpfs: ``""`` if per-task quotas work here, else why."""
    probe = tempfile.mkdtemp(prefix="quota-", dir=work_dir)
    try:
        why = mount_scratch(probe, 1)
        if not why:
            unmount_scratch(probe)
        return why
    finally:
        shutil.rmtree(probe, ignore_errors=True)


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
    global SERVER_PID
    SERVER_PID = os.getpid()
    config = json.loads(sys.argv[2])
    sys.dont_write_bytecode = True
    out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    netns = "off" if config["network"] else isolate_network()
    ipc = isolate_ipc()  # after isolate_network: a user namespace it entered grants the right
    writable = [config["work_dir"], *config.get("writable", [])]
    hide = list(config.get("hide", []))
    fs = isolate_filesystem(writable)
    view: dict[str, Any] = {"covered": [], "failures": ["no private mount namespace"]}
    needed = needed_paths(config["preload"], writable)
    # What the caller hides wins over what the interpreter would keep (a dataset's files
    # inside site-packages), but never over the folders the worker must write.
    needed = [p for p in needed if p in writable or not any(under(p, h) for h in hide)]
    if fs == "ro-mountns":
        covers = [*config.get("covers", []), *hide]
        view["covered"], view["failures"] = apply_covers(covers, needed)
    hidden = conceal(config["work_dir"], writable) if fs == "ro-mountns" else []
    quota = _quota_works(config["work_dir"]) if fs == "ro-mountns" else "no mount namespace"
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
    identity = task_identity()
    if identity is not None:
        os.chmod(config["work_dir"], 0o711)  # a task reaches its scratch; lists nothing
    readable = essential_paths(config["preload"])
    measured = _measure_hardening(bool(config["network"]), identity, readable)
    if measured.get("unprivileged uid"):
        identity = None
    hardening = {**measured, "ipc namespace": ipc, "scratch quota": quota,
                 "minimal file view": "; ".join(view["failures"])}
    ready = {"ready": True, "net": netns, "fs": fs, "pid": os.getpid(), "harden": hardening,
             "hidden": [*hidden, *view["covered"]]}  # fmt: skip
    out.write(json.dumps(ready) + "\n")
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
            answer = run_task(task, config["work_dir"], nproc, base_rss_kb, not quota, identity)
        except Exception as exc:  # a worker-side failure is reported, not fatal
            answer = {
                "id": task.get("id"),
                "status": "crashed",
                "error_type": f"Worker{type(exc).__name__}",
                "error_message": str(exc),
                "traceback": traceback.format_exc(),
            }
        out.write(json.dumps(answer) + "\n")
