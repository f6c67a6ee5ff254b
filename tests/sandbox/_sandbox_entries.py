"""Trusted entry functions for the sandbox tests; each one misbehaves in a specific way.

They run only inside the sandbox child (never in the pytest process).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any


def echo(payload: dict[str, Any]) -> Any:
    return {"echo": payload, "cwd": os.getcwd(), "pid": os.getpid()}


def env(payload: dict[str, Any]) -> dict[str, str]:
    return dict(os.environ)


def raise_value_error(payload: dict[str, Any]) -> None:
    raise ValueError(f"bad input {payload.get('x')}")


def loop_forever(payload: dict[str, Any]) -> None:
    while True:
        pass


def sleep(payload: dict[str, Any]) -> float:
    time.sleep(payload["seconds"])
    return payload["seconds"]


def allocate_bytes(payload: dict[str, Any]) -> int:
    return len(bytearray(payload["gb"] * 2**30))


def allocate_torch(payload: dict[str, Any]) -> int:
    import torch

    return int(torch.ones(payload["gb"] * 2**28).sum())  # float32: 4 bytes each


def connect(payload: dict[str, Any]) -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2)
    sock.connect(("127.0.0.1", payload["port"]))
    return "connected"


def fork_bomb(payload: dict[str, Any]) -> None:
    while True:
        os.fork()


def system(payload: dict[str, Any]) -> int:
    return os.system("echo pwned > /tmp/nnrag-sandbox-pwned")


def subprocess_run(payload: dict[str, Any]) -> str:
    import subprocess

    return subprocess.run(["id"], capture_output=True, text=True).stdout


def write_file(payload: dict[str, Any]) -> str:
    path = Path(payload["path"]).expanduser()
    path.write_text("hello")
    return str(path.resolve())


def write_os_open(payload: dict[str, Any]) -> None:
    fd = os.open(payload["path"], os.O_WRONLY | os.O_CREAT)
    os.close(fd)


def remove_file(payload: dict[str, Any]) -> None:
    os.remove(payload["path"])


def write_via_dir_fd(payload: dict[str, Any]) -> None:
    dir_fd = os.open(payload["dir"], os.O_RDONLY)
    fd = os.open(payload["name"], os.O_WRONLY | os.O_CREAT, dir_fd=dir_fd)
    os.close(fd)


def exit_code(payload: dict[str, Any]) -> None:
    os._exit(payload.get("code", 3))


def kill_self(payload: dict[str, Any]) -> None:
    os.kill(os.getpid(), 9)


def kill_parent(payload: dict[str, Any]) -> None:
    os.kill(os.getppid(), 9)


def print_big(payload: dict[str, Any]) -> str:
    chunk = "x" * 1023 + "\n"
    for _ in range(payload["mb"] * 1024):
        print(chunk, end="")
    os.write(2, b"to stderr\n")
    return "done"


def torch_conv(payload: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    x = torch.randn(4, 3, 16, 16)
    loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    with torch.no_grad():  # a manual SGD step: torch.optim would lazily import torch._dynamo
        for p in net.parameters():
            p -= 0.1 * p.grad
    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        torch.save(net.state_dict(), f.name)
        state = torch.load(f.name)
    return {"loss": loss.item(), "threads": torch.get_num_threads(), "keys": len(state)}


def sqlite_write(payload: dict[str, Any]) -> bool:
    import sqlite3

    sqlite3.connect(payload["path"]).execute("create table t(x)")
    return os.path.exists(payload["path"])


def torch_save(payload: dict[str, Any]) -> bool:
    import torch

    torch.save({"a": torch.ones(2)}, payload["path"])  # native code writes the file
    return os.path.exists(payload["path"])


def ctypes_fork(payload: dict[str, Any]) -> int:
    import ctypes

    return ctypes.CDLL(None).fork()


def netns(payload: dict[str, Any]) -> str:
    return os.readlink("/proc/self/ns/net")


def call(payload: dict[str, Any]) -> Any:
    """Dispatch to another entry by name, so one batch (one worker) can mix behaviours."""
    return globals()[payload["fn"]](payload)


def parent_pid(payload: dict[str, Any]) -> int:
    """The fork server's pid: equal across tasks exactly when they ran in the same worker.

    Read from the worker's memory the task inherited: in its own PID namespace the task's
    parent is the namespace's init, and the worker is out of sight."""
    from nnrag.sandbox import _worker

    return _worker.SERVER_PID
