"""Sandbox entries: record a model's structure, and check one mutant.

Both run inside the sandbox child (model code is untrusted). ``record`` builds the model from
its *instrumented* source, so every width attribute of every layer is a tagged number whose
expression says which literals it came from; it then traces the model with torch.fx
(recording stack traces, so graph nodes map back to source lines), propagates the probe's
shapes through the graph and, as a fallback that works for any model, hooks every module to
note its input and output shapes. ``check`` builds a mutant from plain source and runs the
validation rungs: instantiate, forward with the same probe, backward with finite gradients.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

#: Layer attributes that are widths, per torch.nn class name.
PORTS: dict[str, tuple[str, ...]] = {
    **{f"Conv{d}d": ("in_channels", "out_channels", "groups") for d in (1, 2, 3)},
    **{f"ConvTranspose{d}d": ("in_channels", "out_channels", "groups") for d in (1, 2, 3)},
    "Linear": ("in_features", "out_features"),
    **{f"BatchNorm{d}d": ("num_features",) for d in (1, 2, 3)},
    **{f"InstanceNorm{d}d": ("num_features",) for d in (1, 2, 3)},
    "GroupNorm": ("num_groups", "num_channels"),
    "LayerNorm": ("normalized_shape",),
    "RMSNorm": ("normalized_shape",),
    "Embedding": ("embedding_dim",),
    "MultiheadAttention": ("embed_dim", "num_heads"),
    "LSTM": ("input_size", "hidden_size"),
    "GRU": ("input_size", "hidden_size"),
    "RNN": ("input_size", "hidden_size"),
    "PReLU": ("num_parameters",),
}


def layer_kind(module: Any) -> str:
    """The torch.nn layer a module is (a ``CausalConv1d(nn.Conv1d)`` is a ``Conv1d``), else its
    own class name; only torch.nn layers have known width attributes."""
    for klass in type(module).__mro__:
        if klass.__module__.startswith("torch.nn") and klass.__name__ in PORTS:
            return klass.__name__
    return type(module).__name__


def _prm() -> dict[str, Any]:
    from nnrag.train.spec import Hyperparameters

    return Hyperparameters().prm()


def _build(source: str, payload: dict[str, Any], name: str) -> Any:
    import torch

    from nnrag.train.contract import build_model, load_module

    module = load_module(source, name, Path.cwd())
    in_shape = tuple(payload["in_shape"])
    torch.manual_seed(0)
    return build_model(module, in_shape, (payload["num_classes"],), _prm(), torch.device("cpu"),
                       payload.get("block"))


def _probe(payload: dict[str, Any]) -> Any:
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, *payload["in_shape"][1:], generator=gen)


def _port(value: Any) -> dict[str, Any] | None:
    from nnrag.mutate._expr import expr_of, plain

    if isinstance(value, tuple | list):
        if len(value) != 1:
            return None if not value else {"value": plain(value[-1]), "expr": expr_of(value[-1]),
                                           "last": True}
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return {"value": plain(value), "expr": expr_of(value)}


def _ser(value: Any, depth: int = 0) -> Any:
    import torch.fx

    from nnrag.mutate._expr import expr_of, plain

    if depth > 6:
        return {"r": "..."}
    if isinstance(value, torch.fx.Node):
        return {"n": value.name}
    expr = expr_of(value)
    if expr is not None:
        return {"v": plain(value), "e": expr}
    if value is None or isinstance(value, bool | int | float | str):
        return {"v": value}
    if isinstance(value, list | tuple):
        return {"l": [_ser(v, depth + 1) for v in value]}
    if isinstance(value, slice):
        return {"s": [_ser(value.start), _ser(value.stop), _ser(value.step)]}
    if isinstance(value, dict):
        return {"d": {str(k): _ser(v, depth + 1) for k, v in value.items()}}
    return {"r": repr(value)[:80]}


def _shape(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if (isinstance(value, tuple | list) and value
            and all(isinstance(v, torch.Tensor) for v in value)):
        return {"tuple": [list(v.shape) for v in value]}
    return None


def _target_name(node: Any) -> str:
    target = node.target
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', repr(target))}"


def _line(stack: str | None, filename: str) -> int | None:
    if not stack:
        return None
    found = None
    for part in stack.split("File \"")[1:]:
        path, _, rest = part.partition("\"")
        if path.endswith(filename) and rest.startswith(", line "):
            found = int(rest[7:].split(",")[0])
    return found


class _Positions:
    """Where each module was constructed in the model file (line, col, end line, end col)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.seen: list[tuple[Any, tuple[int, int, int, int]]] = []

    def install(self) -> Any:
        from torch import nn

        original = nn.Module.__init__
        positions = self

        def init(module: Any, *args: Any, **kwargs: Any) -> None:
            frame: FrameType | None = sys._getframe(1)
            while frame is not None:
                if (frame.f_locals.get("self") is not module
                        and frame.f_code.co_filename.endswith(positions.filename)):
                    pos = list(frame.f_code.co_positions())[frame.f_lasti // 2]
                    if None not in pos:
                        positions.seen.append((module, pos))  # type: ignore[arg-type]
                    break
                frame = frame.f_back
            original(module, *args, **kwargs)

        nn.Module.__init__ = init  # type: ignore[method-assign,assignment]  # recording hook
        return original

    def of(self, module: Any) -> list[int] | None:
        for obj, pos in self.seen:
            if obj is module:
                return list(pos)
        return None


def record(payload: dict[str, Any]) -> dict[str, Any]:
    """Structure of the model built from ``payload['instrumented']`` (see module docstring)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    import builtins

    from nnrag.mutate._expr import site, tagged_int
    from nnrag.mutate._sites import INT_FN, SITE_FN

    setattr(builtins, SITE_FN, site)
    setattr(builtins, INT_FN, tagged_int)
    name = payload.get("module_name", "nnrag_mutant")
    positions = _Positions(f"{name}_plain.py")
    original_init = positions.install()
    try:  # the plain build says where each module is constructed (exact columns)
        plain = _build(payload["source"], payload, f"{name}_plain")
        model = _build(payload["instrumented"], payload, name)
    except Exception as exc:
        return {"ok": False, "stage": "instantiate", "error": f"{type(exc).__name__}: {exc}"[:1500],
                "traceback": traceback.format_exc()[-4000:]}
    finally:
        nn.Module.__init__ = original_init  # type: ignore[method-assign]
    plain_modules = dict(plain.named_modules())
    model.eval()
    x = _probe(payload)
    shapes: dict[str, list[Any]] = {}
    handles = []
    for path, mod in model.named_modules():
        def hook(m: Any, inp: Any, out: Any, path: str = path) -> None:
            if path not in shapes:
                shapes[path] = [_shape(inp[0]) if inp else None, _shape(out)]
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        return {"ok": False, "stage": "forward", "error": f"{type(exc).__name__}: {exc}"[:1500],
                "traceback": traceback.format_exc()[-4000:]}
    finally:
        for h in handles:
            h.remove()
    modules: dict[str, Any] = {}
    for path, mod in model.named_modules():
        kind = layer_kind(mod)
        ports = {a: p for a in PORTS.get(kind, ())
                 if (p := _port(getattr(mod, a, None))) is not None}
        if kind in ("LSTM", "GRU", "RNN"):
            ports["bidirectional"] = {"value": int(bool(mod.bidirectional)), "expr": None}
        modules[path] = {
            "type": kind, "module": type(mod).__module__, "ports": ports,
            "pos": positions.of(plain_modules.get(path)), "shapes": shapes.get(path),
            "params": sum(p.numel() for p in mod.parameters(recurse=False)),
            "leaf": not any(True for _ in mod.children()),
        }
    graph, trace_error = _trace(model, x, f"{name}.py")
    return {
        "geometry": sorted(_geometry_sites(model)), "ok": True, "out_shape": _shape(out),
        "params": sum(p.numel() for p in model.parameters()),
        "flops": _flops(model, x), "modules": modules, "graph": graph, "trace_error": trace_error,
    }


#: Layer attributes that set spatial geometry: literals behind them are not widths.
GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "output_size", "scale_factor", "size")


def _geometry_sites(model: Any) -> set[int]:
    from nnrag.mutate._expr import expr_of, sites

    found: set[int] = set()
    for mod in model.modules():
        for attr in GEOMETRY:
            value = getattr(mod, attr, None)
            for item in value if isinstance(value, tuple | list) else (value,):
                expr = expr_of(item)
                if expr is not None:
                    found |= sites(expr)
    return found


def _trace(model: Any, x: Any, filename: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        tracer = torch.fx.Tracer()
        tracer.record_stack_traces = True
        graph = tracer.trace(model)
        gm = torch.fx.GraphModule(model, graph)
        ShapeProp(gm).propagate(x)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    nodes = []
    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        shape: list[Any] | dict[str, Any] | None
        if meta is None:
            shape = None
        elif hasattr(meta, "shape"):
            shape = list(meta.shape)
        elif isinstance(meta, tuple | list):
            shape = {"tuple": [list(m.shape) if hasattr(m, "shape") else None for m in meta]}
        else:
            shape = None
        nodes.append({
            "name": node.name, "op": node.op, "target": _target_name(node),
            "args": _ser(list(node.args))["l"], "kwargs": _ser(dict(node.kwargs))["d"],
            "shape": shape, "line": _line(node.stack_trace, filename),
        })
    return nodes, None


def _flops(model: Any, x: Any) -> int | None:
    from nnrag.train import estimate_flops

    return estimate_flops(model, x[:1])


def check(payload: dict[str, Any]) -> dict[str, Any]:
    """Validate one mutant: instantiate, forward (same probe, same output shape), backward."""
    import torch

    torch.set_num_threads(1)
    result: dict[str, Any] = {"rung": "import"}
    try:
        model = _build(payload["source"], payload, payload.get("module_name", "nnrag_mutant"))
        result["rung"] = "instantiate"
        x = _probe(payload)
        model.train()
        out = model(x)
        if list(out.shape) != list(payload["out_shape"]):
            raise ValueError(f"output shape {list(out.shape)} != original {payload['out_shape']}")
        if not bool(torch.isfinite(out).all()):
            raise FloatingPointError("non-finite forward output")
        result["rung"] = "forward"
        out.float().pow(2).mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads or not all(bool(torch.isfinite(g).all()) for g in grads):
            raise FloatingPointError("missing or non-finite gradients")
        result["rung"] = "backward"
    except Exception as exc:
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:1500],
                      traceback=traceback.format_exc()[-3000:])
        return result
    ports: dict[str, dict[str, int]] = {}
    for path, mod in model.named_modules():
        if layer_kind(mod) in PORTS:
            got = {a: p["value"] for a in PORTS[layer_kind(mod)]
                   if (p := _port(getattr(mod, a, None))) is not None}
            ports[path] = got
    result.update(ok=True, params=sum(p.numel() for p in model.parameters()),
                  flops=_flops(model, x), ports=ports)
    return result
