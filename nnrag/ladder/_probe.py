"""Probe-input inference: which tensors to feed a freshly built block.

The forward signature alone rarely says the expected shape (``x`` is everything from
``[B, C, H, W]`` to ``[B, N, C]`` or channels-last ``[B, H, W, C]``), so the primary layout
is read off the first parametrised leaf layer (the one most likely to touch the input),
then alternatives come from the constructor arguments and the forward parameter names.
Probes are small (batch 2, spatial <= 32 first, sequence length 8) to keep a block cheap.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnrag.ladder._multiscale import LAYOUT_NAMES, kernel_inputs, multiscale_inputs
from nnrag.ladder._probe_args import (
    _AUDIO,
    _IDS,
    _PACKED,
    _ROUTE_IDX,
    _SIDE,
    BATCH,
    SEQ,
    _container,
    _is_hw,
    forward_params,
)
from nnrag.ladder.rules._forward_args import ArgContext, fill
from nnrag.ladder.rules._layouts import LEAF_LAYOUTS

_IN_DIM = re.compile(
    r"(in_channels|in_chs|inplanes|in_planes|in_features|in_dim|input_dim|^dim$|hidden_size|"
    r"embed_dim|d_model|^channels$|^inp$|num_features|in_chans|^width$|^c_in$)"
)
_SPATIAL = re.compile(r"(img_size|image_size|input_size|input_resolution|resolution|feat_size)")
Shape = tuple[int, ...]


@dataclass
class Probe:
    """One candidate call: ``module(*args, **kwargs)``, with a readable description."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    desc: str = ""


def describe(value: Any, depth: int = 0) -> str:
    """``float32[2, 3, 32, 32]``-style text for tensors and (nested) containers of them."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    if depth > 2:
        return type(value).__name__
    if isinstance(value, Mapping):
        items = [f"{k}: {describe(v, depth + 1)}" for k, v in list(value.items())[:6]]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        inner = ", ".join(describe(v, depth + 1) for v in value[:6])
        return f"({inner}{', ...' if len(value) > 6 else ''})"
    return repr(value)[:60]


def first_leaf(module: nn.Module) -> nn.Module | None:
    """First registered leaf layer that owns parameters (or a norm/embedding type)."""
    for m in module.modules():
        if next(m.children(), None) is None and next(m.parameters(False), None) is not None:
            return m
    return None


def _shapes_from_leaf(leaf: nn.Module | None) -> list[tuple[str, int]]:
    """``(layout, size)`` guesses for the input of ``leaf`` (the ``leaf_layouts`` rules)."""
    found: list[tuple[str, int]] | None = None if leaf is None else LEAF_LAYOUTS.first(leaf)
    return found or []


def _hints(module: nn.Module, init_kwargs: Mapping[str, Any]) -> tuple[list[int], list[int], int]:
    """Feature dims, spatial sides and a vocabulary bound from args, configs and attributes."""
    dims: list[int] = []
    sides: list[int] = []
    vocab = 100
    cfgs = [v for v in init_kwargs.values() if hasattr(v, "hidden_size") or hasattr(v, "to_dict")]
    for name, v in init_kwargs.items():
        if isinstance(v, int) and not isinstance(v, bool) and _IN_DIM.search(name.lower()):
            dims.append(v)
        elif (
            isinstance(v, list | tuple)
            and v
            and isinstance(v[0], int)
            and not isinstance(v[0], bool)
            and _IN_DIM.search(name.lower())
        ):
            dims.append(v[0])
        if _SPATIAL.search(name.lower()):
            sides.extend(_sides(v))
        if "vocab" in name.lower() and isinstance(v, int):
            vocab = min(vocab, v)
    for cfg in cfgs:
        for attr in ("hidden_size", "d_model", "n_embd", "embed_dim", "num_channels"):
            if isinstance(getattr(cfg, attr, None), int):
                dims.append(getattr(cfg, attr))
        sides.extend(_sides(getattr(cfg, "image_size", None)))
        if isinstance(getattr(cfg, "vocab_size", None), int):
            vocab = min(vocab, cfg.vocab_size)
    for m in list(module.modules())[:50]:
        for attr in ("img_size", "image_size", "input_resolution", "input_size"):
            sides.extend(_sides(getattr(m, attr, None)))
        if isinstance(m, nn.Embedding):
            vocab = min(vocab, m.num_embeddings)
    return list(dict.fromkeys(dims)), list(dict.fromkeys(s for s in sides if 2 <= s <= 256)), vocab


def _sides(v: Any) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return [v]
    if isinstance(v, tuple | list) and v and all(isinstance(i, int) for i in v):
        return [int(v[-1])] if len(set(v)) == 1 or len(v) <= 3 else []
    return []


def _tensor(layout: str, d: int, side: int, seq: int) -> torch.Tensor:
    if layout == "ids":
        return torch.randint(0, max(1, d), (BATCH, seq))
    shape = {
        "cf1": (BATCH, d, side),
        "cf2": (BATCH, d, side, side),
        "cf3": (BATCH, d, max(2, side // 4), side // 2, side // 2),
        "seq": (BATCH, seq, d),
        "seqT": (seq, BATCH, d),
        "flat": (BATCH, d),
        "packed": (seq, d),  # variable-length batches flattened to tokens (``cu_seqlens``)
        "cl2": (BATCH, side, side, d),
    }[layout]
    return torch.randn(*shape)


def infer_probes(
    module: nn.Module,
    init_kwargs: Mapping[str, Any],
    namespace: Mapping[str, Any],
    limit: int = 12,
    allow_large: bool = True,
) -> list[Probe]:
    """Ordered candidate inputs for ``module``'s forward, most plausible first."""
    params = [p for p in forward_params(module) if p.kind is not p.VAR_KEYWORD]
    first = params[0] if params else None
    rest = params[1:]
    dims, sides, vocab = _hints(module, init_kwargs)
    layouts = _shapes_from_leaf(first_leaf(module))
    name = first.name.lower() if first is not None else "x"
    if _IDS.search(name) or (layouts and layouts[0][0] == "ids"):
        layouts = [("ids", min([vocab] + [d for lay, d in layouts if lay == "ids"]))]
    else:
        layouts = [lay for lay in layouts if lay[0] != "ids"]
        image_like = re.search(r"(img|image|pixel|^x$|^input|^inputs$)", name)
        for d in dims or ([] if layouts else [64]):
            layouts += [("cf2", d), ("seq", d)] if image_like else [("seq", d), ("cf2", d)]
        if image_like or not layouts:
            layouts.append(("cf2", 3))
        layouts += [("seq", 64), ("flat", 64)] if not layouts else []
    if any(_ROUTE_IDX.match(p.name) for p in rest):  # MoE experts take [tokens, hidden]
        layouts += [("flat", d) for lay, d in layouts if lay == "seq"]
    if any(_PACKED.match(p.name) for p in rest):  # varlen attention: one [tokens, hidden] row
        layouts = [("packed", d) for lay, d in layouts if lay == "seq"] + layouts
    layouts = list(dict.fromkeys(layouts))
    side_opts = list(dict.fromkeys([*sides, 32, 64, 8] + ([224] if allow_large else [])))
    hw_needed = any(_SIDE.match(p.name) or _is_hw(p) for p in rest)
    combos: list[tuple[str, int, int, int]] = []
    for lay, d in layouts:
        if lay in ("cf1", "cf2", "cf3", "cl2"):
            opts = side_opts if lay != "cl2" else [*sides, 8, 16, 7, 14, 32]
            combos += [(lay, d, s, SEQ) for s in dict.fromkeys(opts)]
        elif lay in ("seq", "seqT") and hw_needed:
            combos += [(lay, d, s, s * s) for s in [4, *sides[:1], 8]]
        elif lay in ("seq", "seqT"):
            extra = [s * s for s in sides[:1] if s * s <= 1024]
            combos += [(lay, d, 8, n) for n in dict.fromkeys([SEQ, *extra, 16, 64])]
        else:
            combos.append((lay, d, 8, SEQ))
    # Interleave layouts so that a wrong first layout does not eat the whole budget.
    ordered = _interleave(combos, key=lambda c: (c[0], c[1]))
    probes: list[Probe] = []
    eos = next((getattr(v, "eos_token_id", None) for v in init_kwargs.values()
                if hasattr(v, "to_dict")), None)
    for lay, d, side, seq in ordered[:limit]:
        x = _tensor(lay, d, side, seq)
        if lay == "ids" and isinstance(eos, int) and 0 <= eos < d:
            x[:, -1] = eos  # sequence classifiers pool at the last <eos>
        args: list[Any] = [_container(first, x, side)] if first is not None else []
        kwargs: dict[str, Any] = {}
        for p in rest:
            if p.name == "use_cache":  # no KV cache: hybrid caches reject a fresh probe
                kwargs[p.name] = False
                continue
            use, val = fill(ArgContext(p, x, side, namespace, init_kwargs, module))
            if not use:
                continue
            if p.kind is p.POSITIONAL_ONLY or p.kind is p.VAR_POSITIONAL:
                args.append(val)
            else:
                kwargs[p.name] = val
        for k, v in multiscale_inputs(module, init_kwargs, x, {p.name for p in rest}).items():
            if k in LAYOUT_NAMES or kwargs.get(k) is None:  # layouts beat generic guesses
                kwargs[k] = v
        kernel = kernel_inputs(x, {p.name for p in rest}) if args else None
        if kernel is not None:
            args[0] = kernel[0]
            kwargs.update(kernel[1])
        parts = [f"{first.name if first else '*'}: {describe(args[0] if args else x)}"]
        parts += [f"{k}: {describe(v)}" for k, v in kwargs.items()]
        probes.append(Probe(tuple(args), kwargs, "; ".join(parts)))
    return _extra_probes(probes, first, params, init_kwargs, limit)


def _extra_probes(
    probes: list[Probe],
    first: inspect.Parameter | None,
    params: list[inspect.Parameter],
    init_kwargs: Mapping[str, Any],
    limit: int,
) -> list[Probe]:
    """Append probes for audio inputs and encoder-decoder ids after the generic ones."""
    extra: list[Probe] = []
    if first is not None and _AUDIO.match(first.name):
        cfg = next((v for v in init_kwargs.values() if hasattr(v, "to_dict")), None)
        if first.name == "input_values":  # raw waveform; 1 s more survives SpecAugment masks
            xs = [torch.randn(BATCH, 1600), torch.randn(BATCH, 16000)]
        else:  # log-mel features [B, mel bins, frames]
            mel = getattr(cfg, "num_mel_bins", None)
            xs = [torch.randn(BATCH, mel if isinstance(mel, int) and mel > 0 else 80, 100)]
        extra += [Probe((x,), {}, f"{first.name}: {describe(x)}") for x in xs]
    names = {p.name for p in params}
    if "decoder_input_ids" in names:
        for pr in probes:
            x = pr.args[0] if pr.args else None
            if (
                isinstance(x, torch.Tensor)
                and not x.is_floating_point()
                and x.dim() == 2
                and "decoder_input_ids" not in pr.kwargs
            ):
                kwargs = {**pr.kwargs, "decoder_input_ids": x.clone()}
                desc = f"{pr.desc}; decoder_input_ids: {describe(x)}"
                extra.append(Probe(pr.args, kwargs, desc))
                break
    if not extra:
        return probes
    return probes[: max(0, limit - len(extra))] + extra


def _interleave(items: list[Any], key: Any) -> list[Any]:
    """Round-robin over groups (first two of the first group lead), preserving group order."""
    groups: dict[Any, list[Any]] = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    lists = list(groups.values())
    out: list[Any] = []
    if lists:
        out += lists[0][:2]
        lists[0] = lists[0][2:]
    while any(lists):
        for lst in lists:
            if lst:
                out.append(lst.pop(0))
    return out


def described(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Probe:
    """A probe of these inputs, with the description the ladder reports for it."""
    parts = [describe(a) for a in args] + [f"{k}: {describe(v)}" for k, v in kwargs.items()]
    return Probe(tuple(args), kwargs, "; ".join(parts))


def primary(probe: Probe) -> torch.Tensor | None:
    """The tensor the probe was built around (the first argument, or its first element)."""
    first = probe.args[0] if probe.args else next(iter(probe.kwargs.values()), None)
    if isinstance(first, list | tuple) and first:
        first = first[0]
    if isinstance(first, dict) and first:
        first = next(iter(first.values()))
    return first if isinstance(first, torch.Tensor) else None


def rebuild(
    probe: Probe,
    old: Shape,
    new: Shape,
    recast: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Probe:
    """``probe`` with the primary's shape changed; look-alike tensors and sizes follow.

    ``recast`` (a dtype change) replaces every float tensor shaped like the primary."""
    sizes = {o: n for o, n in zip(old[1:], new[1:], strict=False) if o != n and o != BATCH}
    if len(old) != len(new):
        sizes = {}

    def convert(value: Any, depth: int = 0) -> Any:
        if isinstance(value, torch.Tensor):
            if recast is not None and tuple(value.shape) == old and value.is_floating_point():
                return recast(value)
            return _resized(value, old, new, sizes)
        if isinstance(value, bool) or depth > 2:
            return value
        if isinstance(value, int):
            return sizes.get(value, value)
        if isinstance(value, list):
            return [convert(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return tuple(convert(v, depth + 1) for v in value)
        if isinstance(value, dict):
            return {k: convert(v, depth + 1) for k, v in value.items()}
        return value

    args = tuple(convert(a) for a in probe.args)
    kwargs = {k: convert(v) for k, v in probe.kwargs.items()}
    return described(args, kwargs)


def _resized(t: torch.Tensor, old: Shape, new: Shape, sizes: dict[int, int]) -> torch.Tensor:
    shape = tuple(t.shape)
    if shape == old:
        target = new
    elif sizes and t.dim() >= 2:
        target = (shape[0], *(sizes.get(d, d) for d in shape[1:]))
    else:
        return t
    if target == shape:
        return t
    if t.is_floating_point() or t.is_complex():
        return torch.randn(target, dtype=t.dtype)
    if t.dtype == torch.bool:
        return torch.ones(target, dtype=torch.bool)
    high = int(t.max()) + 1 if t.numel() else 2
    return torch.randint(0, max(1, high), target, dtype=t.dtype)
