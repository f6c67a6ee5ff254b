"""Build a contract model at one input shape and run one forward pass: a sandbox entry point.

Says whether a model (LEMUR's ``Net(in_shape, out_shape, prm, device)``) can take inputs
of a given ``[C, H, W]`` at all, without a dataset or a training step: what
``benchmarks/lemur_shapes.py`` counts to choose a spec's ``shape``. Runs inside the sandbox
only (model code is untrusted); ``prm`` is filled as a trial fills it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def forward(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"code", "shape": [C, H, W], "classes", "batch"?}`` -> ``{"stage", "error", ...}``.

    ``stage`` is where it stopped: ``load`` (the module does not import), ``prm`` (declared
    names nnrag cannot fill), ``build``
    (``Net(...)`` raised), ``forward`` (the forward pass raised) or ``ok``; ``out_shape`` is
    the main output's shape when there is one.
    """
    import torch

    from nnrag.train.contract import _main_output, build_model, load_module
    from nnrag.train.contract import supported_hyperparameters as declared
    from nnrag.train.spec import TrainSpec

    torch.set_num_threads(1)
    torch.manual_seed(0)
    shape, batch = tuple(int(n) for n in payload["shape"]), int(payload.get("batch", 2))
    started = time.perf_counter()
    stage = "load"
    try:
        module = load_module(payload["code"], "nnrag_probe_model", Path.cwd())
        stage = "prm"
        spec = TrainSpec.model_validate({"model": {"code": "class Net: pass"},
                                         "hyperparameters": {"dropout": 0.2,
                                                             "batch_size": batch}})
        prm = spec.prm(declared(module))
        stage = "build"
        model = build_model(module, (batch, *shape), (int(payload["classes"]),), prm,
                            torch.device("cpu"))
        stage = "forward"
        model.eval()
        with torch.no_grad():
            out = _main_output(model(torch.randn(batch, *shape)))
        result: dict[str, Any] = {"stage": "ok", "error": None,
                                  "out_shape": list(out.shape) if hasattr(out, "shape") else None}
    except Exception as exc:  # the model's failure is the answer
        result = {"stage": stage, "error": f"{type(exc).__name__}: {exc}"[:300],
                  "out_shape": None}
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result
