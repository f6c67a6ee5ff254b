"""Sandbox entry: is generated model code executable? (build, forward, backward).

Runs inside the sandbox child only (the code is untrusted LLM output). Builds ``Net`` for
the task's shapes, runs a forward pass on a small random batch, checks the logits' shape,
runs ``train_setup`` and one backward pass and checks the gradients are finite. Failures
are results with the traceback the repair prompt shows the LLM.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path
from typing import Any


def run(payload: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nnrag.train.contract import build_model, load_module

    torch.set_num_threads(1)
    torch.manual_seed(0)
    start = time.perf_counter()
    in_shape = tuple(int(v) for v in payload["in_shape"])  # (batch, C, H, W) or (batch, C, L)
    classes = int(payload["num_classes"])
    stage = "import"
    try:
        module = load_module(payload["code"], payload.get("module_name", "nnrag_candidate"),
                             Path.cwd())
        stage = "build"
        model = build_model(module, in_shape, (classes,), dict(payload["prm"]), torch.device("cpu"))
        params = sum(p.numel() for p in model.parameters())
        if params == 0:
            raise ValueError("the model has no trainable parameters")
        stage = "forward"
        x = torch.randn(min(4, in_shape[0]), *in_shape[1:])
        model.train()
        out = model(x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"forward returned {type(out).__name__}, expected a tensor of logits")
        if tuple(out.shape) != (x.shape[0], classes):
            raise ValueError(f"forward returned shape {tuple(out.shape)}, "
                             f"expected {(x.shape[0], classes)}"
                             f" for input {tuple(x.shape)}")
        stage = "backward"
        model.train_setup(dict(payload["prm"]))  # type: ignore[operator]  # the contract's method
        loss = torch.nn.functional.cross_entropy(out, torch.randint(0, classes, (x.shape[0],)))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            raise ValueError("backward produced no gradients")
        if not all(torch.isfinite(g).all() for g in grads) or not math.isfinite(float(loss)):
            raise ValueError("non-finite loss or gradients")
        return {"ok": True, "stage": "backward", "params": params,
                "seconds": round(time.perf_counter() - start, 3)}
    except Exception as exc:
        return {"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"[:1000],
                "traceback": _model_traceback(exc),
                "seconds": round(time.perf_counter() - start, 3)}


def _model_traceback(exc: BaseException, limit: int = 2500) -> str:
    """The traceback without nnrag's own frames: the LLM should see its code's lines."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/nnrag/execute/" not in f.filename and "/nnrag/generate/" not in f.filename]
    text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    text += "".join(traceback.format_exception_only(type(exc), exc))
    return text[-limit:]
