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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnrag.ladder._multiscale import LAYOUT_NAMES, kernel_inputs, multiscale_inputs
from nnrag.ladder._probe_args import (
    _LIST_ANN,
    _RESIDUAL,
    _SIDE,
    _STR_LIST_ANN,
    _ann_text,
    _container,
    _is_hw,
    _levels,
    _listed_choice,
    _residual,
    _unpacked,
)

BATCH = 2
SEQ = 8
_EMPTY = inspect.Parameter.empty
_IDS = re.compile(
    r"(input_ids|^ids$|token_ids|^tokens$|^idx$|^indices$|^labels$|decoder_input_ids)"
)
_MASK = re.compile(r"(mask|^attn_bias$|^bias$)")
_POS_IDS = re.compile(r"^(position_ids|pos_ids|positions)$")
_ROPE = re.compile(r"(position_embeddings|rotary|freqs_cis|^rope|^pos_emb|^cos_sin$)")
_PACKED = re.compile(r"^cu_(window_)?seq_?lens$")  # cumulative sequence starts of a packed batch
_SAME = re.compile(
    r"^(k|v|q|key|value|query|y|x2|x_2|skip|residual|context|memory|encoder_hidden_states|"
    r"cond|condition|other|feat|features|z|h|emb|x_left|x_right|x1)$"
)
_TENSORISH = re.compile(
    r"(^x|feat|emb|tok|hidden|state|cls|img|input|query|key|value|skip|enc|dec|src|tgt)"
)
_IN_DIM = re.compile(
    r"(in_channels|in_chs|inplanes|in_planes|in_features|in_dim|input_dim|^dim$|hidden_size|"
    r"embed_dim|d_model|^channels$|^inp$|num_features|in_chans|^width$|^c_in$)"
)
_ROUTE_IDX = re.compile(r"^(top_k_index|selected_experts|router_indices|expert_indices)$")
_ROUTE_W = re.compile(r"^(top_k_weights|routing_weights)$")
_AUDIO = re.compile(r"^(input_values|input_features)$")
_SPATIAL = re.compile(r"(img_size|image_size|input_size|input_resolution|resolution|feat_size)")


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
    """``(layout, size)`` guesses for the input of ``leaf``; layouts name a tensor family."""
    if leaf is None:
        return []
    if isinstance(leaf, nn.Conv1d | nn.ConvTranspose1d):
        return [("cf1", leaf.in_channels)]
    if isinstance(leaf, nn.Conv3d | nn.ConvTranspose3d):
        return [("cf3", leaf.in_channels)]
    if isinstance(leaf, nn.Conv2d | nn.ConvTranspose2d):
        return [("cf2", leaf.in_channels)]
    if isinstance(leaf, nn.Embedding | nn.EmbeddingBag):
        return [("ids", leaf.num_embeddings)]
    if isinstance(leaf, nn.Linear):
        return [("seq", leaf.in_features), ("flat", leaf.in_features), ("cl2", leaf.in_features)]
    if isinstance(leaf, nn.MultiheadAttention):
        return [("seq" if leaf.batch_first else "seqT", leaf.embed_dim), ("seq", leaf.embed_dim)]
    if isinstance(leaf, nn.BatchNorm1d):
        return [("flat", leaf.num_features), ("cf1", leaf.num_features)]
    if isinstance(leaf, nn.BatchNorm3d):
        return [("cf3", leaf.num_features)]
    if isinstance(leaf, nn.BatchNorm2d | nn.InstanceNorm2d):
        return [("cf2", leaf.num_features)]
    if isinstance(leaf, nn.GroupNorm):
        return [("cf2", leaf.num_channels), ("seq", leaf.num_channels)]
    shape = getattr(leaf, "normalized_shape", None)
    if isinstance(shape, tuple | list) and len(shape) == 1:
        d = int(shape[0])
        if re.search(r"2d|channels?first|cf", type(leaf).__name__, re.I):
            return [("cf2", d), ("seq", d)]
        return [("seq", d), ("cl2", d), ("flat", d), ("cf2", d)]
    weight = getattr(leaf, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 1:  # RMSNorm-style custom norms
        return [("seq", weight.shape[0]), ("cf2", weight.shape[0]), ("flat", weight.shape[0])]
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:  # custom linear
        return [("seq", weight.shape[1]), ("flat", weight.shape[1])]
    return []


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


def forward_params(module: nn.Module) -> list[inspect.Parameter]:
    """Parameters of ``module.forward`` (bound, so without ``self``).

    TorchScript-era code (torchvision's detection heads) annotates with a type comment,
    ``# type: (list[Tensor]) -> Tensor``; those types fill parameters without annotations.
    """
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    comment = _type_comment(module.forward)
    if comment is None or len(comment) != len(params):
        return params
    return [p.replace(annotation=t) if p.annotation is _EMPTY else p for p, t in zip(params, comment, strict=True)]


_TYPE_COMMENT = re.compile(r"^\s*#\s*type:\s*\((.*)\)\s*->", re.M)


def _type_comment(fn: Any) -> list[str] | None:
    """Argument types of a ``# type: (A, B) -> R`` comment right below the ``def`` line."""
    try:
        lines = inspect.getsource(fn).splitlines()
    except (OSError, TypeError):
        return None
    body = [ln for ln in lines[1:6] if ln.strip()]
    m = _TYPE_COMMENT.match(body[0]) if body else None
    if m is None:
        return None
    parts, depth, cur = [], 0, ""
    for ch in m.group(1):
        depth += ch in "[(" and 1 or 0
        depth -= ch in ")]" and 1 or 0
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _safe_attr(cfg: Any, name: str) -> Any:
    """A config field, or None: heterogeneous (per-layer) configs raise on global reads."""
    try:
        return getattr(cfg, name, None)
    except Exception:
        return None


def _rope(namespace: Mapping[str, Any], init_kwargs: Mapping[str, Any], x: torch.Tensor) -> Any:
    """(cos, sin) for transformers attention: from a RotaryEmbedding class if one exists."""
    cfg = next((v for v in init_kwargs.values() if hasattr(v, "to_dict")), None)
    seq = x.shape[1] if x.dim() >= 2 else SEQ
    pos = torch.arange(seq).unsqueeze(0).expand(BATCH, seq)
    heads = _safe_attr(cfg, "num_attention_heads") or _safe_attr(cfg, "num_heads") or 4
    width = _safe_attr(cfg, "hidden_size") or _safe_attr(cfg, "embed_dim") or 64
    hd = _safe_attr(cfg, "head_dim") or width // heads
    if cfg is not None:
        for name, cls in namespace.items():
            if isinstance(cls, type) and name.endswith("RotaryEmbedding"):
                try:
                    rot = cls(config=cfg)
                    cos, sin = rot(x if x.is_floating_point() else x.float(), pos)
                except Exception:
                    continue
                if cos.shape[-1] == hd:  # a text rotary next to a vision block has other widths
                    return (cos, sin)
    lead = tuple(x.shape[:-1]) if x.is_floating_point() and x.dim() in (2, 3) else (BATCH, seq)
    return (torch.ones(*lead, hd), torch.zeros(*lead, hd))


def _fill(
    p: inspect.Parameter,
    x: torch.Tensor,
    side: int,
    ns: Mapping[str, Any],
    kw: Mapping[str, Any],
    module: nn.Module | None = None,
) -> tuple[bool, Any]:
    """Value for a secondary forward parameter; ``(False, None)`` leaves the default."""
    name = p.name
    required = p.default is _EMPTY and p.kind is not p.VAR_KEYWORD
    if _ROPE.search(name):
        ann = _ann_text(p).lower()
        if not ann or "tuple" in ann or _unpacked(module, name):  # (cos, sin) for rotary
            return True, _rope(ns, kw, x)
        if not required:  # an optional additive embedding (DETR) or rope table (timm)
            return False, None
        return True, x.clone()
    if not required:
        return False, None
    if _PACKED.match(name) and x.dim() == 2 and x.is_floating_point():
        return True, torch.tensor([0, x.shape[0]], dtype=torch.int32)
    if _ROUTE_IDX.match(name) or _ROUTE_W.match(name):
        return True, _routing(name, x, kw, module)
    seq = x.shape[1] if x.dim() >= 2 else SEQ
    if _IDS.search(name) and name != "labels" and x.is_floating_point():  # ids beside images
        return True, torch.randint(0, 4, (x.shape[0] if x.dim() else BATCH, SEQ))
    if _POS_IDS.match(name):
        return True, torch.arange(seq).unsqueeze(0).expand(BATCH, seq)
    if _MASK.search(name):
        return True, None
    ann = _ann_text(p)
    if _LIST_ANN.match(ann):  # per-level maps beside per-level maps (FPN extra blocks)
        return True, _levels(x)
    if _STR_LIST_ANN.match(ann):  # their names
        return True, [str(i) for i in range(len(_levels(x)))]
    if _SIDE.match(name):
        return True, side
    if _is_hw(p):
        return True, (side, side)
    if name == "device" or ann.endswith("device") or "device|" in ann:
        return True, x.device
    if name == "dtype" or ann.endswith("dtype"):
        return True, x.dtype
    choice = _listed_choice(name, kw, module)
    if choice is not None:
        return True, choice
    if re.search(r"(^t$|timestep|time|^sigma|noise_level)", name):
        return True, torch.rand(BATCH)
    if _RESIDUAL.match(name) and module is not None:
        return True, _residual(module, x)
    if _SAME.match(name) or "Tensor" in str(p.annotation) or _TENSORISH.search(name):
        return True, x.clone()
    if "int" in str(p.annotation) or re.search(r"(^p$|size$|^ws$|^n$)", name):
        return True, 4  # partition/window sizes: divides every probe side
    return True, None


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
            use, val = _fill(p, x, side, namespace, init_kwargs, module)
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


def _routing(
    name: str, x: torch.Tensor, kw: Mapping[str, Any], module: nn.Module | None
) -> torch.Tensor:
    """MoE routing inputs: expert ids in ``[0, num_experts)`` or softmaxed weights."""
    cfg = next((v for v in kw.values() if hasattr(v, "to_dict")), None)
    n_exp = getattr(module, "num_experts", None)
    for attr in ("num_local_experts", "num_experts", "n_routed_experts"):
        if not isinstance(n_exp, int) or n_exp <= 0:
            n_exp = getattr(cfg, attr, None)
    n_exp = n_exp if isinstance(n_exp, int) and n_exp > 0 else 4
    top_k = getattr(cfg, "num_experts_per_tok", None) or getattr(module, "top_k", None) or 2
    top_k = max(1, min(int(top_k), n_exp))
    gen = torch.Generator().manual_seed(0)
    paired = module is not None and any(_ROUTE_IDX.match(p.name) for p in forward_params(module))
    if x.dim() == 4 and _ROUTE_W.match(name) and not paired:  # conditional conv: per expert
        return torch.softmax(torch.randn(x.shape[0], n_exp, generator=gen), dim=-1)
    tokens = x.reshape(-1, x.shape[-1]).shape[0] if x.dim() >= 2 else BATCH
    if _ROUTE_IDX.match(name):
        return torch.stack([torch.randperm(n_exp, generator=gen)[:top_k] for _ in range(tokens)])
    return torch.softmax(torch.randn(tokens, top_k, generator=gen), dim=-1)


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
