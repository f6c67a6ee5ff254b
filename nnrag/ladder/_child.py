"""The validation ladder, run inside the sandbox child: parse -> ... -> backward.

``run(payload)`` is the sandbox entry point. It climbs the rungs for one emitted block and
stops at the first failure, reporting *why* in a coarse ``cause`` so that benchmark
failures can be attributed to the resolver (``resolver_gap``), the environment
(``missing_package``), our argument/probe guessing (``needs_arguments``,
``shape_inference``), the sandbox refusing what the block tried (``sandbox_denied``: a
file, a device or a system call it may not use) or the block itself (``genuine_error``).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import errno
import importlib
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from nnrag.ladder.rules import fired_names, recording

RUNGS = ("none", "parse", "compile", "import", "instantiate", "forward", "backward")
MAX_MSG = 2000
MAX_INSTANCES = 4  # successful constructions to try probes on
MAX_INIT = 12
MAX_PROBES = 12
MAX_REPAIRS = 5
MAX_FALLBACK_INSTANCES = 2  # constructions from fallback_candidates (optional configs/layers)
MAX_ADAPT = 6  # probes rebuilt from forward error messages, per instance

_SHAPE_RX = re.compile(
    r"(shape|size|mat1|mat2|expected input|channels?\b|dimension|dim\b|must match|broadcast|"
    r"reshape|view|unpack|out of range|index|divisible|but got|scalar type|dtype|"
    r"to have|invalid for input|expected .* got|Long|Float|Half|positional argument|"
    r"NoneType|rank|doesn't match|does not match|mismatch|padding|kernel|too small|"
    r"must be Tensor, not|'(?:list|tuple)' object has no attribute|but found|of length|"
    r"must be given|is required|must be provided|(?:have|has) to (?:specify|be provided)|"
    r"must specify|cannot be None|should not be none|specify both)",
    re.IGNORECASE,
)


def _mark(rung: int) -> None:
    """Tell the orchestrator how far we got, in case the block then hangs until killed."""
    print(f"NNRAG_RUNG={rung}", flush=True)


def _result(rung: int, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rung": rung,
        "rung_name": RUNGS[rung],
        "failed_rung": None,
        "error_type": None,
        "error_message": None,
        "cause": None,
        "init_args": None,
        "input_desc": None,
        "output_desc": None,
        "param_count": None,
        "attempts": 0,
    }
    out.update(extra)
    return out


def _fail(
    out: dict[str, Any], rung: int, exc: BaseException | None, cause: str, msg: str = ""
) -> dict:
    out["rung"] = rung - 1
    out["rung_name"] = RUNGS[rung - 1]
    out["failed_rung"] = RUNGS[rung]
    out["error_type"] = type(exc).__name__ if exc is not None else None
    text = msg or (f"{exc}" if exc is not None else "")
    out["error_message"] = text[:MAX_MSG]
    out["cause"] = cause
    if isinstance(exc, ImportError) and exc.name:
        out["missing_module"] = exc.name
    return out


def classify(exc: BaseException, rung: str) -> str:
    """Map an exception raised at ``rung`` to a cause (see module docstring).

    An import that fails is never about our arguments or probes, whichever rung runs it (a
    function-local import runs at ``instantiate`` or ``forward``). An emitted module has no
    parent package, so a relative import left in it is the resolver's fault; whether a
    missing module is one the index holds is decided by the orchestrator, which sees the
    index (the result's ``missing_module``).
    """
    if isinstance(exc, NameError) and not isinstance(exc, UnboundLocalError):
        return "resolver_gap"
    if isinstance(exc, ImportError) and "relative import" in str(exc):
        return "resolver_gap"
    if isinstance(exc, ImportError):
        return "missing_package"
    if denied(exc):
        return "sandbox_denied"
    if rung == "instantiate":
        return "needs_arguments"
    if rung == "forward" and is_shape_error(exc):
        return "shape_inference"
    return "genuine_error"


def denied(exc: BaseException) -> bool:
    """Did the sandbox refuse this (a read-only or hidden path, a blocked system call)? Not
    an argument the ladder guessed wrong, nor the block's own bug: it would run outside."""
    return isinstance(exc, PermissionError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS))


def is_shape_error(exc: BaseException) -> bool:
    """Heuristic: did this forward error come from a wrong probe rather than the block?"""
    if isinstance(exc, IndexError | AssertionError | NotImplementedError):
        return True
    if isinstance(exc, RuntimeError | ValueError | TypeError | AttributeError | KeyError):
        return bool(_SHAPE_RX.search(str(exc)))
    return False


def _message(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        text = f"{text} (package: {exc.name.split('.')[0]})"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        text += f" [at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}]"
    return text


def _tensors(value: Any, depth: int = 0) -> list[Any]:
    """Every tensor in a (nested) output: tensors, sequences, mappings, ModelOutputs."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if depth > 4:
        return []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v, depth + 1)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v, depth + 1)]
    return []


def _copy_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return copy.deepcopy(kwargs)
    except Exception:
        return dict(kwargs)


def _load(out: dict[str, Any], source: str, module_name: str, max_rung: int) -> Any:
    """Rungs 1-3; returns the imported module or None (``out`` then holds the failure)."""
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return _fail(out, 1, exc, "genuine_error", _message(exc)) and None
    out.update(rung=1, rung_name="parse")
    _mark(1)
    if max_rung < 2:
        return None
    filename = str(Path.cwd() / f"{module_name}.py")
    try:
        compile(source, filename, "exec")
    except (SyntaxError, ValueError) as exc:
        return _fail(out, 2, exc, "genuine_error", _message(exc)) and None
    out.update(rung=2, rung_name="compile")
    _mark(2)
    if max_rung < 3:
        return None
    Path(filename).write_text(source, encoding="utf-8")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    sys.modules.pop(module_name, None)
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - any import-time failure is a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _fail(out, 3, exc, classify(exc, "import"), _message(exc)) and None
    out.update(rung=3, rung_name="import")
    _mark(3)
    return mod


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """Climb the ladder for one emitted block; see the project docs for the result schema.

    ``rules_fired`` names the heuristics (``registry.rule``) whose guesses the climb used,
    in first-use order, so a result says which rules a block needed.
    """
    with recording() as fired:
        out = _climb(payload)
    out["rules_fired"] = fired_names(fired)
    return out


def _climb(payload: dict[str, Any]) -> dict[str, Any]:
    source: str = payload["source"]
    target: str = payload["target"]
    module_name: str = payload.get("module_name") or "nnrag_block"
    max_rung = int(payload.get("max_rung", 6))
    seed = int(payload.get("seed", 0))
    budget = float(payload.get("timeout_hint_s", 30.0)) * 0.7
    start = time.monotonic()
    sys.dont_write_bytecode = True
    warnings.simplefilter("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = _result(0)
    mod = _load(out, source, module_name, max_rung)
    if mod is None or max_rung < 4:
        return out
    cls = getattr(mod, target, None)
    if cls is None:
        exc = AttributeError(f"module does not define {target!r}")
        return _fail(out, 4, exc, "resolver_gap")

    import torch

    from nnrag.ladder._adapt import adapt
    from nnrag.ladder._configs import origin_configs
    from nnrag.ladder._infer import describe_value, fallback_candidates, init_candidates
    from nnrag.ladder._probe import describe, forward_params, infer_probes
    from nnrag.ladder._repair import repair

    torch.set_num_threads(1)
    ns: dict[str, Any] = dict(vars(mod))
    with contextlib.suppress(Exception):  # best effort: the block's own names come first
        ns.update(origin_configs(source, ns))
    try:
        candidates = init_candidates(cls, ns, limit=MAX_INIT)
    except Exception as exc:  # inference must never crash the ladder
        candidates = [{}]
        out["error_message"] = f"inference failed: {exc}"[:MAX_MSG]
    try:  # tried after the regular candidates, with their own instance budget
        fallbacks = fallback_candidates(cls, ns, candidates[0] if candidates else {})
    except Exception:
        fallbacks = []
    fallback_ids = {id(d) for d in fallbacks}
    candidates = [*candidates, *fallbacks]
    attempts = 0
    init_errors: list[BaseException] = []
    fwd_errors: list[BaseException] = []
    instances = 0
    repairs = 0
    fb_instances = 0
    for kwargs in candidates:
        if time.monotonic() - start > budget:
            break
        is_fallback = id(kwargs) in fallback_ids
        if instances - fb_instances >= MAX_INSTANCES and not is_fallback:
            continue
        if fb_instances >= MAX_FALLBACK_INSTANCES:
            break
        attempts += 1
        torch.manual_seed(seed)
        try:
            block = cls(**_copy_kwargs(kwargs))
        except Exception as exc:
            init_errors.append(exc)
            repaired = repair(cls, kwargs, exc)
            if repaired is not None and repairs < MAX_REPAIRS:
                repairs += 1
                candidates.insert(candidates.index(kwargs) + 1, repaired)
            continue
        instances += 1
        fb_instances += int(is_fallback)
        out.update(rung=4, rung_name="instantiate", attempts=attempts)
        _mark(4)
        out["init_args"] = {k: describe_value(v) for k, v in kwargs.items()}
        try:
            params = list(block.parameters()) if isinstance(block, torch.nn.Module) else []
        except Exception as exc:  # e.g. a Module whose __init__ skipped super().__init__()
            return _fail(out, 5, exc, "genuine_error")
        out["param_count"] = sum(p.numel() for p in params)
        if max_rung < 5:
            return _clear(out)
        if not callable(block):
            return _fail(out, 5, TypeError(f"{target} instance is not callable"), "genuine_error")
        if isinstance(block, torch.nn.Module):
            block.train()
        try:
            probes = infer_probes(
                block, kwargs, ns, MAX_PROBES, allow_large=out["param_count"] < 30_000_000
            )
        except Exception as exc:
            fwd_errors.append(exc)
            continue
        adapted = 0
        optional = [p.name for p in forward_params(block) if p.default is None]
        i = 0
        while i < len(probes):
            probe = probes[i]
            i += 1
            if time.monotonic() - start > budget and attempts > 1:
                break
            attempts += 1
            out["attempts"] = attempts
            torch.manual_seed(seed)
            try:
                output = block(*probe.args, **probe.kwargs)
            except Exception as exc:
                fwd_errors.append(exc)
                if adapted < MAX_ADAPT and is_shape_error(exc):
                    fixes = adapt(probe, exc, optional=optional)[: MAX_ADAPT - adapted]
                    adapted += len(fixes)
                    probes[i:i] = fixes
                continue
            out.update(rung=5, rung_name="forward", input_desc=probe.desc)
            _mark(5)
            out["output_desc"] = describe(output)
            if max_rung < 6:
                return _clear(out)
            return _backward(out, block, params, output)
    out["attempts"] = attempts
    if instances == 0:
        first = init_errors[0] if init_errors else RuntimeError("no constructor candidates")
        # A missing name or module is blamed over argument errors: no guess can fix it.
        missing: BaseException | None = next(
            (e for e in init_errors if isinstance(e, NameError | ImportError)), None)
        missing = missing or next((e for e in init_errors if denied(e)), None)
        blamed = missing or first
        cause = classify(missing, "instantiate") if missing else "needs_arguments"
        return _fail(out, 4, blamed, cause, _message(blamed))
    if not fwd_errors:
        return _fail(out, 5, TimeoutError("probe budget exhausted"), "shape_inference")
    special = [e for e in fwd_errors if isinstance(e, NameError | ImportError) or denied(e)]
    if special:
        return _fail(out, 5, special[0], classify(special[0], "forward"), _message(special[0]))
    genuine = [e for e in fwd_errors if not is_shape_error(e)]
    blamed = genuine[0] if genuine else fwd_errors[0]
    return _fail(out, 5, blamed, "genuine_error" if genuine else "shape_inference",
                 _message(blamed))


def _clear(out: dict[str, Any]) -> dict[str, Any]:
    for key in ("failed_rung", "error_type", "error_message", "cause"):
        out[key] = None
    return out


def _backward(out: dict[str, Any], block: Any, params: list[Any], output: Any) -> dict[str, Any]:
    """Rung 6: sum every differentiable float output, backprop, demand finite gradients."""
    import torch

    tensors = _tensors(output)
    floats = [t for t in tensors if t.is_floating_point() or t.is_complex()]
    if not all(bool(torch.isfinite(t).all()) for t in floats):
        return _fail(out, 6, FloatingPointError("non-finite forward output"), "genuine_error")
    grad_outs = [t for t in floats if t.requires_grad]
    if not grad_outs:
        if not any(p.requires_grad for p in params) and floats:
            out["output_desc"] = f"{out['output_desc']} (parameter-free: backward skipped)"
            out.update(rung=6, rung_name="backward")
            _mark(6)
            return _clear(out)
        exc = RuntimeError("no differentiable floating-point tensor in the output")
        return _fail(out, 6, exc, "genuine_error")
    try:
        loss = sum(t.real.float().sum() if t.is_complex() else t.float().sum() for t in grad_outs)
        loss.backward()
    except Exception as exc:
        return _fail(out, 6, exc, classify(exc, "backward"), _message(exc))
    names = (
        {id(p): n for n, p in block.named_parameters()}
        if hasattr(block, "named_parameters")
        else {}
    )
    grads = [(names.get(id(p), "?"), p.grad) for p in params if p.grad is not None]
    if params and not grads:
        return _fail(out, 6, RuntimeError("no parameter received a gradient"), "genuine_error")
    bad = [n for n, g in grads if not bool(torch.isfinite(g).all())]
    if bad:
        nonfinite = FloatingPointError(f"non-finite gradient in {', '.join(bad[:5])}")
        return _fail(out, 6, nonfinite, "genuine_error")
    out.update(rung=6, rung_name="backward")
    _mark(6)
    return _clear(out)
