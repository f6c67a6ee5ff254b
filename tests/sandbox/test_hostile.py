"""Hostile tasks, one per attack family of issue 14: each must come back as an ``error`` or
``timeout`` result, with the caller alive and nothing written, run or leaked.

The entries (``_hostile_entries``) reach libc through its own ``dlsym``, past the audit hook,
so these tests hold the kernel layers (capabilities, no_new_privs, seccomp, read-only mounts)
to account. The outcomes are the table in ``docs/sandbox.md``.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nnrag.sandbox import Limits, SandboxResult, check, run_function, run_many, shutdown_pool
from nnrag.sandbox._probes import namespace_links

from . import _hostile_entries

MOD = _hostile_entries.__name__
FAST = Limits(wall_s=5.0)


@pytest.fixture(autouse=True, scope="module")
def _no_kept_workers() -> None:
    shutdown_pool()


@pytest.fixture()
def marker() -> Any:
    path = Path(f"/tmp/nnrag-hostile-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


def _children() -> list[int]:
    pids: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.extend(int(p) for p in f.read().split())
    return pids


def _attack(name: str, payload: dict[str, Any]) -> SandboxResult:
    return run_function(f"{MOD}:{name}", payload, limits=FAST, preload=())


def _assert_contained(result: SandboxResult, *paths: Path) -> None:
    assert result.status in {"error", "timeout"}, result
    for path in paths:
        assert not path.exists(), f"{path} was written: {result}"
    assert _children() == []  # nothing the task started outlived it


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("remount_root", {}),
        ("libc_system", {}),
        ("libc_fork", {}),
        ("libc_fork", {"symbol": "_Fork"}),
        ("libc_fork", {"symbol": "vfork"}),
        ("posixsubprocess", {}),
        ("libc_execv", {}),
        ("fork_bomb", {}),
    ],
)
def test_process_creation_and_remount_are_contained(
    name: str, extra: dict[str, Any], marker: Path
) -> None:
    result = _attack(name, {"marker": str(marker), **extra})
    _assert_contained(result, marker)


@pytest.mark.parametrize("pid", ["worker", "caller"])
@pytest.mark.parametrize("pidfd", [False, True])
def test_signalling_the_parent_is_contained(pid: str, pidfd: bool) -> None:
    target = pid if pid == "worker" else os.getpid()
    results = run_many(f"{MOD}:signal_pid", [{"pid": target, "pidfd": pidfd}, {"pid": "worker",
                       "pidfd": False}], limits=FAST, preload=())  # fmt: skip
    for result in results:
        assert result.status == "error", result
        assert "Operation not permitted" in str(result.error_message), result
    # the worker survived the first attack: it ran the second task too


def test_entering_the_callers_network_namespace_is_contained() -> None:
    result = _attack("enter_netns", {"pid": os.getpid()})
    _assert_contained(result)
    # FileNotFoundError: in the task's own PID namespace the caller's pid is not in /proc.
    assert result.error_type in {"PermissionError", "OSError", "FileNotFoundError"}


def test_the_callers_environment_is_unreadable() -> None:
    code = (
        "import json, sys; from nnrag.sandbox import run_function, Limits; "
        f"r = run_function('{MOD}:read_environ', {{'pid': __import__('os').getpid()}}, "
        "limits=Limits(wall_s=5), preload=()); print(json.dumps([r.status, r.value]))"
    )
    env = {**os.environ, "NNRAG_HOSTILE_SECRET": "hunter2"}  # in the caller's initial environ
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    status, value = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == "error"
    assert "hunter2" not in done.stdout


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "symlink"])
def test_native_writes_outside_scratch_are_contained(where: str) -> None:
    base = "/tmp" if where == "symlink" else where
    target = Path(base) / f"nnrag-hostile-{uuid.uuid4().hex}"
    try:
        result = _attack("raw_write", {"path": str(target), "via_symlink": where == "symlink"})
        _assert_contained(result, target)
        assert "Read-only file system" in str(result.error_message), result
    finally:
        target.unlink(missing_ok=True)


def test_shadow_file_is_masked() -> None:
    result = run_function(f"{MOD}:read_file", {"path": "/etc/shadow"}, limits=FAST, preload=())
    assert result.status == "error" or result.value == "", result


def test_another_trials_scratch_is_out_of_reach() -> None:
    token = uuid.uuid4().hex
    payloads = [{"fn": "plant_secret", "token": token, "hold_s": 4.0},
                {"fn": "hunt_secret", "token": token, "hunt_s": 3.0}]  # fmt: skip
    victim, thief = run_many(f"{MOD}:call", payloads, limits=Limits(wall_s=10), jobs=2,
                             preload=())  # fmt: skip
    assert victim.status == "ok", victim
    assert thief.status == "ok", thief
    assert thief.value == [], thief  # neither by path nor through /proc/<pid>/cwd


def test_host_sysv_shared_memory_is_invisible() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    shm_id = libc.shmget(0, 4096, 0o600 | 0o1000)  # IPC_PRIVATE, IPC_CREAT
    if shm_id < 0:
        pytest.skip("no SysV shared memory here")
    try:
        result = run_function(f"{MOD}:sysv_segments", {}, limits=FAST, preload=())
    finally:
        libc.shmctl(shm_id, 0, None)  # IPC_RMID
    if not {layer.name: layer for layer in check().layers}["ipc namespace"].active:
        pytest.skip("no IPC namespace here")
    assert result.status == "ok", result
    assert shm_id not in result.value


def test_check_reports_the_kernel_layers_active() -> None:
    report = check()
    assert report.contained, report
    layers = {layer.name: layer for layer in report.layers}
    for name in ("no_new_privs", "capabilities dropped", "seccomp filter", "rlimits",
                 "audit hook", "ipc namespace", "minimal file view", "pid namespace",
                 "scratch quota"):  # fmt: skip
        assert layers[name].active, layers[name]
    if namespace_links()["net"] and layers["network namespace"].detail != "":
        assert layers["network namespace"].active == ("shared" not in layers[
            "network namespace"].detail)  # fmt: skip


def test_cli_check_prints_json_and_exits_0() -> None:
    from nnrag.cli import main

    outcome = CliRunner().invoke(main, ["sandbox", "--check", "--format", "json"])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    assert data["contained"] is True
    assert {p["name"] for p in data["probes"]} >= {"os.system", "raw fork (ctypes _Fork)"}


def _secret_in(folder: Path) -> Path:
    path = folder / f".nnrag-hostile-{uuid.uuid4().hex}"
    path.write_text("top secret")
    return path


def test_home_and_the_stores_are_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret in ``$HOME`` and ``$NNRAG_HOME/runs.db`` stay unread, also when the store
    lies inside a folder the worker needs (here next to the nnrag package itself)."""
    import nnrag

    root = Path(nnrag.__file__).resolve().parent.parent
    if not os.access(root, os.W_OK):  # an unprivileged user's read-only checkout
        root = Path.home()
    store = root / f".nnrag-home-{uuid.uuid4().hex}"
    store.mkdir()
    monkeypatch.setenv("NNRAG_HOME", str(store))
    secrets = [_secret_in(Path.home()), store / "runs.db"]
    secrets[1].write_text("SQLite format 3 runs")
    try:
        for secret in secrets:
            result = _attack("read_file", {"path": str(secret)})
            assert result.status == "error" and result.error_type == "FileNotFoundError", result
        listed = _attack("list_dir", {"path": str(Path.home())})
        if not listed.ok:  # a home under /tmp vanishes with it
            assert listed.error_type == "FileNotFoundError", listed
        else:
            assert secrets[0].name not in listed.value, listed
    finally:
        secrets[0].unlink()
        shutil.rmtree(store)


def test_scratch_past_its_quota_is_the_tasks_error() -> None:
    full = run_function(f"{MOD}:fill_scratch", {"total_mb": 12}, preload=(),
                        limits=Limits(wall_s=10.0, scratch_mb=4))  # fmt: skip
    assert full.status == "error" and "No space left" in (full.error_message or ""), full
    fits = run_function(f"{MOD}:fill_scratch", {"total_mb": 3}, preload=(),
                        limits=Limits(wall_s=10.0, scratch_mb=4))  # fmt: skip
    assert fits.ok and fits.value == 3, fits


def test_a_task_is_alone_in_its_own_pid_namespace() -> None:
    """Only its init (PID 1) and itself (PID 2) are in its /proc."""
    result = _attack("own_processes", {})
    assert result.ok and result.value == {"pid": 2, "processes": [1, 2]}, result


def test_a_task_in_a_shared_scratch_sees_only_its_folder_and_the_inputs(tmp_path: Path) -> None:
    """Trials of one batch share the caller's scratch: none may read or change a rival's
    outputs, the shared inputs, or leave a link for the next trial."""
    (tmp_path / "data.txt").write_text("inputs")
    (tmp_path / "rival").mkdir()
    progress = tmp_path / "rival" / "progress.jsonl"
    progress.write_text('{"epoch": 1}\n')
    payload = {"fn": "rival_in_shared_scratch", "rival": "rival", "input": "data.txt"}
    result = run_function(f"{MOD}:call", payload, limits=FAST, preload=(), scratch=tmp_path,
                          task_dir="thief")  # fmt: skip
    assert result.status == "ok", result
    assert result.value["cwd"] == "thief"
    assert result.value["seen"] == ["data.txt", "thief"]  # the rival's folder is not there
    assert result.value["tampered"] == []
    assert result.value["input"] == "inputs"  # the inputs stay readable
    assert progress.read_text() == '{"epoch": 1}\n'
    assert (tmp_path / "data.txt").read_text() == "inputs"
    assert not (tmp_path / "planted").exists()


def test_task_dirs_must_be_plain_names(tmp_path: Path) -> None:
    for bad in ("../escape", "a/b", ".", ""):
        with pytest.raises(ValueError, match="plain folder name"):
            run_many(f"{MOD}:call", [{"fn": "identity"}], limits=FAST, preload=(),
                     scratch=tmp_path, task_dirs=[bad])  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch is what root's tasks get")
def test_as_root_a_task_runs_as_nobody_and_cannot_read_root_only_files(tmp_path: Path) -> None:
    secret = Path("/etc") / f"nnrag-root-only-{uuid.uuid4().hex}"
    secret.write_text("root only")
    secret.chmod(0o600)
    try:
        result = _attack("identity", {"paths": [str(secret), "/etc/passwd"]})
    finally:
        secret.unlink()
    assert result.status == "ok", result
    assert result.value["uid"] != 0 and result.value["euid"] != 0, result.value
    assert result.value["gid"] != 0 and 0 not in result.value["groups"], result.value
    assert result.value["readable"] == ["/etc/passwd"]  # world-readable yes, root-only no


def test_hidden_paths_are_out_of_sight(tmp_path: Path) -> None:
    """A caller's ``hide`` (dataset files with labels) wins even inside a folder the
    interpreter needs, such as site-packages."""
    import sklearn.datasets

    labels = Path(sklearn.datasets.__file__).parent / "data"
    digits = labels / "digits.csv.gz"
    assert digits.is_file()
    seen = run_function(f"{MOD}:call", {"fn": "identity", "paths": [str(digits)]},
                        limits=FAST, preload=("sklearn.datasets",), hide=[labels])  # fmt: skip
    assert seen.status == "ok", seen
    assert seen.value["readable"] == []
    control = run_function(f"{MOD}:call", {"fn": "identity", "paths": [str(digits)]},
                           limits=FAST, preload=("sklearn.datasets",))  # fmt: skip
    assert control.value["readable"] == [str(digits)]  # the test itself can fail


def _unprivileged_user_namespaces() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read()) > 0
    except (OSError, ValueError):
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not _unprivileged_user_namespaces(),
                    reason="needs root to become an unprivileged user, and user namespaces")
def test_the_hostile_suite_holds_for_an_unprivileged_user() -> None:
    """This whole module again, as uid 65534: every attack must be contained by what an
    unprivileged user's sandbox can build (a user namespace instead of root's namespaces)."""
    repo = Path(__file__).resolve().parents[2]
    base = Path(tempfile.mkdtemp(prefix="nnrag-nobody-", dir="/tmp"))
    os.chown(base, 65534, 65534)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NNRAG_", "PYTEST_"))}
    env.update(HOME=str(base), PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "tests.sandbox._as_nobody", sys.executable, "-m", "pytest",
               "-q", "-p", "no:cacheprovider", f"--basetemp={base}/t", str(Path(__file__)),
               "-k", "not unprivileged_user"]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=280)  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert " passed" in done.stdout and " failed" not in done.stdout, tail


@pytest.mark.skipif(os.geteuid() == 0, reason="what an unprivileged caller gets")
def test_an_unprivileged_caller_gets_a_user_namespace() -> None:
    layers = {layer.name: layer for layer in check().layers}
    assert layers["user namespace"].active, layers["user namespace"]
    assert layers["unprivileged uid"].active, layers["unprivileged uid"]
