"""Tests of the subprocess sandbox: every misbehaviour must come back as a result."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from nnrag.exceptions import SandboxError
from nnrag.sandbox._runner import (
    Limits,
    SandboxResult,
    isolation_report,
    run_function,
    run_many,
    shutdown_pool,
)

from . import _sandbox_entries

MOD = _sandbox_entries.__name__
FAST = Limits(wall_s=10.0)


def entry(name: str) -> str:
    return f"{MOD}:{name}"


def run(name: str, payload: dict | None = None, **kwargs) -> SandboxResult:
    kwargs.setdefault("preload", ())
    kwargs.setdefault("limits", FAST)
    return run_function(entry(name), payload or {}, **kwargs)


@pytest.fixture(autouse=True, scope="module")
def _no_kept_workers() -> None:
    """Workers other test modules kept warm are our children too: the process-count checks
    below are about what a trial leaves behind, so start from none."""
    shutdown_pool()


def children_of_self() -> list[int]:
    pids: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.extend(int(p) for p in f.read().split())
    return pids


def test_ok_value_round_trip_and_scratch_removed() -> None:
    payload = {"a": [1, 2.5, None, "x"], "b": {"nested": True}}
    result = run("echo", payload)
    assert result.status == "ok", result
    assert result.value["echo"] == payload
    assert result.value["pid"] != os.getpid()
    assert result.error_type is None and result.traceback is None
    assert not Path(result.value["cwd"]).exists()  # the per-task scratch is gone
    assert result.duration_s > 0


def test_exception_becomes_error_with_traceback() -> None:
    result = run("raise_value_error", {"x": 42})
    assert result.status == "error"
    assert result.value is None
    assert result.error_type == "ValueError"
    assert result.error_message == "bad input 42"
    assert "raise_value_error" in result.traceback
    assert "ValueError" in result.traceback


def test_missing_entry_is_an_error_not_a_crash() -> None:
    result = run_function(f"{MOD}_nope:f", {}, preload=(), limits=FAST)
    assert result.status == "error"
    assert result.error_type == "ModuleNotFoundError"


def test_infinite_loop_times_out() -> None:
    start = time.monotonic()
    result = run("loop_forever", limits=Limits(wall_s=1.0))
    assert result.status == "timeout"
    assert result.error_type == "Timeout"
    assert 1.0 <= result.duration_s < 2.0
    assert time.monotonic() - start < 5.0


def test_memory_bomb_is_oom() -> None:
    result = run("allocate_bytes", {"gb": 8}, limits=Limits(wall_s=10, memory_mb=512))
    assert result.status == "oom", result
    assert result.error_type == "MemoryError"


def test_socket_to_local_listener_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = run("connect", {"port": port})
        assert result.status == "error", result
        assert result.error_type in {"PermissionError", "OSError", "ConnectionRefusedError"}
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()


def _unshare_possible() -> bool:
    code = "import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare(0x40000000) != 0)"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_worker_runs_in_its_own_network_namespace() -> None:
    if not _unshare_possible():
        pytest.skip("unshare(CLONE_NEWNET) is not permitted here; only the audit hook applies")
    result = run("netns")
    assert result.status == "ok"
    assert result.value != os.readlink("/proc/self/ns/net")
    opened = run("netns", limits=Limits(wall_s=10, network=True))
    assert opened.value == os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize("name", ["fork_bomb", "ctypes_fork", "system", "subprocess_run"])
def test_process_creation_is_contained(name: str) -> None:
    marker = Path("/tmp/nnrag-sandbox-pwned")
    marker.unlink(missing_ok=True)
    result = run(name, limits=Limits(wall_s=3.0))
    assert result.status in {"error", "timeout"}, result
    if result.status == "error":
        assert result.error_type == "PermissionError"
    assert not marker.exists()
    assert children_of_self() == []  # the worker and everything below it is gone


def test_killing_other_processes_is_refused() -> None:
    result = run("kill_parent")
    assert result.status == "error"
    assert result.error_type == "PermissionError"


def test_writes_outside_scratch_are_refused(tmp_path: Path) -> None:
    outside = Path(f"/tmp/outside-file-{uuid.uuid4().hex}")
    in_home = Path.home() / f".nnrag-sandbox-{uuid.uuid4().hex}"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    cases = [
        ("write_file", {"path": str(outside)}),
        ("write_file", {"path": str(in_home)}),
        ("write_file", {"path": "../../escape.txt"}),
        ("write_os_open", {"path": str(outside)}),
        ("remove_file", {"path": str(victim)}),
        ("write_via_dir_fd", {"dir": "/tmp", "name": outside.name}),
        ("sqlite_write", {"path": str(outside)}),  # native writes: only the ro mount stops them
    ]
    results = run_many(entry("call"), [{"fn": fn, **p} for fn, p in cases], preload=(), limits=FAST)
    native = isolation_report()["fs"] == "ro-mountns"
    for (fn, p), result in zip(cases, results, strict=True):
        if fn == "sqlite_write" and not native:
            continue  # without a read-only mount namespace native writes are not stopped
        assert result.status == "error", (fn, p, result)
        if fn != "sqlite_write":
            assert result.error_type == "PermissionError", (fn, p, result)
    assert not in_home.exists()
    assert not outside.exists() or not native
    assert victim.read_text() == "keep me"


def test_writes_inside_scratch_succeed(tmp_path: Path) -> None:
    relative = run("write_file", {"path": "sub.txt"})
    assert relative.status == "ok", relative
    home = run("write_file", {"path": "~/in-home.txt"})  # HOME points into the scratch
    assert home.status == "ok", home
    given = run("write_file", {"path": "kept.txt"}, scratch=tmp_path)
    assert given.status == "ok", given
    # a caller's scratch is kept; the task worked in its own folder of it
    assert (tmp_path / "task-0" / "kept.txt").read_text() == "hello"


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNRAG_TEST_SECRET_TOKEN", "hunter2")
    result = run("env")
    assert result.status == "ok"
    env = result.value
    assert "NNRAG_TEST_SECRET_TOKEN" not in env
    assert "hunter2" not in str(env)
    assert env["PYTHONHASHSEED"] == "0" and env["OMP_NUM_THREADS"] == "1"
    assert env["HOME"] == env["TMPDIR"]
    assert set(env) <= {
        "PATH", "LANG", "LC_ALL", "LC_CTYPE", "HOME", "TMPDIR", "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
        "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NO_PROXY",
    }  # fmt: skip


def test_exit_and_signals_are_crashes() -> None:
    payloads = [{"fn": "exit_code", "code": 3}, {"fn": "kill_self"}, {"fn": "echo"}]
    exited, killed, fine = run_many(entry("call"), payloads, preload=(), limits=FAST)
    assert (exited.status, exited.error_type) == ("crashed", "Exit 3")
    assert (killed.status, killed.error_type) == ("crashed", f"Signal {signal.SIGKILL}")
    assert fine.status == "ok"  # the worker itself survived both


def test_big_output_is_truncated() -> None:
    limits = Limits(wall_s=10, max_output_bytes=1000)
    result = run("print_big", {"mb": 10}, limits=limits)
    assert result.status == "ok"
    assert result.value == "done"
    assert len(result.stdout) == 1000 and set(result.stdout) <= {"x", "\n"}
    assert result.stderr == "to stderr\n"


def test_run_many_order_and_callbacks() -> None:
    payloads = [{"fn": "sleep", "seconds": s} for s in (1.0, 0.0, 0.2, 0.0, 0.1, 0.0)]
    seen: list[int] = []
    results = run_many(
        entry("call"),
        payloads,
        preload=(),
        jobs=2,
        limits=FAST,
        on_result=lambda i, r: seen.append(i),
    )
    assert [r.value for r in results] == [p["seconds"] for p in payloads]
    assert sorted(seen) == list(range(len(payloads)))
    assert seen != list(range(len(payloads)))  # completion order, not payload order


def test_worker_crash_mid_batch_is_replaced() -> None:
    def on_result(i: int, result: SandboxResult) -> None:
        if i == 0:  # kill the worker while it runs task 2 (a long sleep)
            threading.Timer(
                1.0, lambda: [os.kill(pid, signal.SIGKILL) for pid in children_of_self()]
            ).start()

    payloads = [{"fn": "echo"}, {"fn": "echo"}, {"fn": "sleep", "seconds": 20}]
    payloads += [{"fn": "echo", "i": i} for i in range(3)]
    start = time.monotonic()
    results = run_many(
        entry("call"), payloads, preload=(), limits=Limits(wall_s=30), on_result=on_result
    )
    assert [r.status for r in results] == ["ok", "ok", "crashed", "ok", "ok", "ok"]
    assert results[2].error_type == "WorkerDied"
    assert [r.value["echo"]["i"] for r in results[3:]] == [0, 1, 2]
    assert time.monotonic() - start < 15.0  # the sleeping task did not run to its end


def test_preload_failure_raises_sandbox_error() -> None:
    with pytest.raises(SandboxError, match="could not start"):
        run_function(entry("echo"), {}, preload=("nnrag_no_such_module",))


def test_torch_conv_and_oom_under_all_protections() -> None:
    outside = f"/tmp/outside-{uuid.uuid4().hex}.pt"
    payloads = [{"fn": "torch_conv"}, {"fn": "allocate_torch", "gb": 8}, {"fn": "torch_conv"}]
    payloads += [{"fn": "torch_save", "path": outside}, {"fn": "torch_save", "path": "in.pt"}]
    results = run_many(entry("call"), payloads, preload=("torch",), limits=Limits(wall_s=30))
    conv, oom, again, saved_outside, saved_inside = results
    assert saved_inside.status == "ok" and saved_inside.value is True
    if isolation_report()["fs"] == "ro-mountns":
        assert saved_outside.status == "error", saved_outside
        assert not Path(outside).exists()
    else:
        Path(outside).unlink(missing_ok=True)
    assert conv.status == "ok", conv
    assert conv.value["threads"] == 1 and conv.value["keys"] == 9
    assert again.value == conv.value  # deterministic: each task forks from the same state
    assert oom.status == "oom", oom
    assert "allocate" in oom.error_message


def test_empty_batch() -> None:
    assert run_many(entry("echo"), [], preload=()) == []


def test_isolation_report_and_light_import() -> None:
    report = isolation_report()
    assert set(report) == {"net", "fs"}
    assert isolation_report(network=True)["net"] == "off"
    code = "import sys, nnrag.sandbox._runner; sys.exit('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0
    )


def _parent_pid(_payload: dict) -> int:
    return os.getppid()


def test_kept_workers_are_reused_across_calls() -> None:
    from nnrag.sandbox import _runner as sandbox
    from nnrag.sandbox._kept import KEPT

    entry = f"{__name__}:_parent_pid"
    try:
        first = sandbox.run_many(entry, [{}], keep_workers=True, preload=())
        second = sandbox.run_many(entry, [{}, {}], keep_workers=True, preload=())
        assert first[0].value == second[0].value == second[1].value  # the same fork server
        assert len(KEPT) == 1
    finally:
        sandbox.shutdown_pool()
    assert KEPT.workers() == [] and len(KEPT) == 0
