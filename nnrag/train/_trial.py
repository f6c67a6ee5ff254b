"""One training trial, run inside the sandbox child: ``run(payload)`` is the entry point.

The orchestrator writes the trial's data file into scratch: training inputs and labels and
the test *inputs*; the test labels never reach this process. After each epoch the child
writes its test-set logits to a file and appends a JSON line (epoch, time, its own training
loss) to the progress file the orchestrator polls; the orchestrator scores the logits, so
no code here (or in the model) can forge a metric, and progress survives a child that dies
later. Outcomes are data: ``ok`` or ``nan`` here; ``error`` with the traceback for
exceptions; the sandbox itself reports ``timeout`` and ``oom``.

As LEMUR's trainer does, the trial fills ``prm`` with every name the model declares, moves
the model to the GPU when there is one, and calls ``model.train()`` before every ``learn``
(evaluation leaves the model in eval mode; most LEMUR models never switch back themselves).
The inputs first go through the spec's plan (:mod:`nnrag.train.transforms`: the adapters its
``shape`` needs, then its transforms), fitted on the training split.
"""

from __future__ import annotations

import json
import math
import platform
import time
import traceback
from pathlib import Path
from typing import Any


def run(payload: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nnrag.train._loader import train_loader
    from nnrag.train.contract import build_model, load_module, supported_hyperparameters
    from nnrag.train.datasets import dataset_info
    from nnrag.train.spec import TrainSpec
    from nnrag.train.transforms import apply_transforms

    spec = TrainSpec.model_validate(payload["spec"])
    run_id = int(payload.get("run_id", 0))
    progress = Path(payload["progress"]) if payload.get("progress") else None
    stop = payload.get("stop") or {}  # early stopping: epochs to wait after, and how long
    wait_after = {int(e) for e in stop.get("wait", ())}
    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    start = time.perf_counter()
    result: dict[str, Any] = {"outcome": "error", "epochs": 0, "params": None, "flops": None,
                              "versions": {"torch": torch.__version__,
                                           "python": platform.python_version()}}
    try:
        train_x, train_y, test_x = _inputs(payload["data"])
        train_x, test_x = apply_transforms(spec.plan().names, train_x, test_x)
        module = load_module(payload["code"], payload.get("module_name", "nnrag_model"), Path.cwd())
        block = payload.get("block")
        prm = spec.prm(frozenset() if block else supported_hyperparameters(module))
        bs = spec.hyperparameters.batch_size
        in_shape = (bs, *train_x.shape[1:])
        device = pick_device()
        result["versions"]["device"] = device_name(device)
        classes = dataset_info(spec.dataset).num_classes
        model = build_model(module, in_shape, (classes,), prm, device, block).to(device)
        result["params"] = sum(p.numel() for p in model.parameters())
        result["flops"] = estimate_flops(model, train_x[:1].to(device))
        model.train_setup(prm)  # type: ignore[operator]  # the contract's methods
        loader = train_loader(train_x, train_y, bs, spec.seed)
        scheduler = _scheduler(model, spec)
        for epoch in range(1, spec.budget.epochs + 1):
            t0 = time.perf_counter()
            model.train()  # LEMUR's trainer does; predict() below leaves eval mode on
            loss = _number(model.learn(loader))  # type: ignore[operator]
            if scheduler is not None:
                scheduler.step()
            logits = predict(model, test_x, device)
            _save_logits(logits, run_id, epoch)
            row: dict[str, Any] = {"epoch": epoch, "epoch_s": round(time.perf_counter() - t0, 4)}
            if loss is not None:
                row["train_loss"] = loss
            result["epochs"] = epoch
            if progress is not None:
                with progress.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            if not bool(torch.isfinite(logits).all()) or not _finite(model):
                result["outcome"] = "nan"
                result["error"] = f"non-finite logits or weights after epoch {epoch}"
                break
            if epoch in wait_after and _told_to_stop(epoch, float(stop.get("wait_s", 60))):
                result["outcome"] = "stopped"
                break
        else:
            result["outcome"] = "ok"
    except Exception as exc:  # the model's own failure is a result, with its traceback
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
            result["outcome"] = "oom"  # hit the sandbox's address-space limit
        result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        result["traceback"] = traceback.format_exc()[-6000:]
    result["duration_s"] = round(time.perf_counter() - start, 3)
    return result


def _told_to_stop(epoch: int, wait_s: float) -> bool:
    """Wait (at most ``wait_s``) for the parent's answer to epoch ``epoch``: ``stop`` ends
    the trial here, ``go-<epoch>`` lets it go on; no answer in time goes on too (the parent
    still decides what it scores)."""
    from nnrag.train.stopping import STOP_NAME, go_name

    go, stop = Path(go_name(epoch)), Path(STOP_NAME)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if stop.exists():
            return True
        if go.exists():
            return False
        time.sleep(0.02)
    return False


def _inputs(name: str) -> tuple[Any, Any, Any]:
    """The parent's data file: training inputs and labels, test inputs (no test labels)."""
    import numpy as np
    import torch

    with np.load(Path(name), allow_pickle=False) as data:
        return (torch.from_numpy(data["train_x"]), torch.from_numpy(data["train_y"]),
                torch.from_numpy(data["test_x"]))


def predict(model: Any, x: Any, device: Any) -> Any:
    """Test-set logits as float32 on the CPU; the parent, holding the labels, scores them."""
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + 512].to(device)).float().cpu()
                          for i in range(0, len(x), 512)])


def pick_device() -> Any:
    """The GPU when this process can use one (the sandbox may hide it), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: Any) -> str:
    """What the run store records: ``cpu`` or ``cuda (<GPU name>)``."""
    import torch

    if device.type != "cuda":
        return str(device)
    return f"cuda ({torch.cuda.get_device_name(device)})"[:80]


def _save_logits(logits: Any, run_id: int, epoch: int) -> None:
    """Written whole, then renamed: the parent never reads half a file."""
    import numpy as np

    from nnrag.train._channel import logits_name

    target = Path(logits_name(run_id, epoch))
    tmp = target.with_suffix(".tmp")
    with tmp.open("wb") as f:
        np.save(f, logits.numpy().astype(np.float32, copy=False))
    tmp.replace(target)


def _number(value: Any) -> float | None:
    """What ``learn`` returned, if it is a loss; self-reported, never ranked on."""
    try:
        if isinstance(value, bool) or value is None:
            return None
        return float(value) if isinstance(value, int | float) or value.numel() == 1 else None
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None


def estimate_flops(model: Any, x: Any) -> int | None:
    """Multiply-accumulates of one sample, counted on conv and linear layers by hooks."""
    import torch
    from torch import nn

    total = 0

    def hook(m: Any, _inp: Any, out: Any) -> None:
        nonlocal total
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            total += out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except Exception:
        return None
    finally:
        for h in handles:
            h.remove()
    return int(total)


def _finite(model: Any) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _scheduler(model: Any, spec: Any) -> Any:
    import torch

    opt = getattr(model, "optimizer", None)
    kind = spec.hyperparameters.scheduler
    if opt is None or kind == "none":
        return None
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.budget.epochs)
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, spec.budget.epochs // 3),
                                           gamma=0.1)
