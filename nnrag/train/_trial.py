"""One training trial, run inside the sandbox child: ``run(payload)`` is the entry point.

The orchestrator prepares the dataset cache first (the child's file system is read-only
except its scratch folder). Each finished epoch is appended as a JSON line to the progress
file the orchestrator polls, so progress and heartbeats survive a child that dies later.
Outcomes are data: ``ok`` or ``nan`` here; ``error`` with the traceback for exceptions;
the sandbox itself reports ``timeout`` and ``oom``.
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

    from nnrag.train.contract import build_model, load_module
    from nnrag.train.datasets import load_dataset
    from nnrag.train.registry import metric_fn, transform_fn
    from nnrag.train.spec import TrainSpec

    spec = TrainSpec.model_validate(payload["spec"])
    progress = Path(payload["progress"]) if payload.get("progress") else None
    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    start = time.perf_counter()
    result: dict[str, Any] = {"outcome": "error", "epochs": [], "params": None, "flops": None,
                              "versions": {"torch": torch.__version__,
                                           "python": platform.python_version()}}
    try:
        data = load_dataset(spec.dataset, seed=spec.seed, limit=spec.limit)
        info = data.info
        transform = transform_fn(spec.transform)
        train_x, train_y = transform(data.train.tensors[0]), data.train.tensors[1]
        test_x, test_y = transform(data.test.tensors[0]), data.test.tensors[1]
        module = load_module(payload["code"], payload.get("module_name", "nnrag_model"), Path.cwd())
        prm = spec.hyperparameters.prm()
        bs = spec.hyperparameters.batch_size
        in_shape = (bs, *train_x.shape[1:])
        device = torch.device("cpu")
        model = build_model(module, in_shape, (info.num_classes,), prm, device,
                            payload.get("block"))
        result["params"] = sum(p.numel() for p in model.parameters())
        result["flops"] = estimate_flops(model, train_x[:1])
        model.train_setup(prm)  # type: ignore[operator]  # the contract's methods
        gen = torch.Generator().manual_seed(spec.seed)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(train_x, train_y), batch_size=bs, shuffle=True,
            generator=gen
        )
        metric = metric_fn(spec.metric)
        scheduler = _scheduler(model, spec)
        for epoch in range(1, spec.budget.epochs + 1):
            t0 = time.perf_counter()
            model.learn(loader)  # type: ignore[operator]
            if scheduler is not None:
                scheduler.step()
            row = {"epoch": epoch, **evaluate(model, test_x, test_y, metric, spec.metric),
                   "epoch_s": round(time.perf_counter() - t0, 4)}
            result["epochs"].append(row)
            if progress is not None:
                with progress.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            if (not all(math.isfinite(v) for k, v in row.items() if isinstance(v, float))
                    or not _finite(model)):
                result["outcome"] = "nan"
                result["error"] = f"non-finite loss or weights after epoch {epoch}"
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


def evaluate(model: Any, x: Any, y: Any, metric: Any, metric_name: str) -> dict[str, float]:
    import torch

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)])
        loss = float(torch.nn.functional.cross_entropy(logits.float(), y))
    return {metric_name: float(metric(logits, y)), "test_loss": loss}


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
