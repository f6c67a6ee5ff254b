"""How one ``forward`` argument's value is shaped from its name and annotation.

The probe builder (``_probe.py``) decides *which* arguments a block needs; this module
holds the vocabulary of names and annotations that say *what kind* of value one is (a
(height, width) pair, a side length, a list or dict of feature maps, a residual) and turns
the primary probe tensor into it. Kept apart so that vocabulary can grow without the
builder growing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

BATCH = 2
SEQ = 8
_EMPTY = inspect.Parameter.empty
_SIDE = re.compile(r"^(h|w|height|width|H|W|hh|ww)$", re.I)
_HW = re.compile(
    r"^(hw|size|hw_shape|feat_size|spatial_shape|shape|hw_size|x_size|resolution|"
    r"(input|image|img|feat|grid|patch)_(dimensions|dims|resolution|shape|hw))$"
)
_PAIR_ANN = re.compile(r"^(Tuple|tuple)\[int,int\]")  # ``tuple[int, int]``: a (height, width)
_LENGTH = re.compile(r"^(seqlen|seq_len|seq_length|length|num_tokens|num_positions)$")
_SIZE_ANN = re.compile(r"(^|[.'<])Size('>)?$")  # ``torch.Size``: the probe's own shape


_LIST_ANN = re.compile(r"^(typing\.)?(List|list|Sequence|Tuple|tuple|Iterable)\[.*Tensor")
_STR_LIST_ANN = re.compile(r"^(typing\.)?(List|list|Sequence)\[str\]$")
_DICT_ANN = re.compile(r"^(typing\.)?(Dict|dict|Mapping|OrderedDict)\[.*Tensor")
_RESIDUAL = re.compile(r"^(input_tensor|residual|shortcut|identity|skip|res)$")
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
_ROUTE_IDX = re.compile(r"^(top_k_index|selected_experts|router_indices|expert_indices)$")
_ROUTE_W = re.compile(r"^(top_k_weights|routing_weights)$")
_AUDIO = re.compile(r"^(input_values|input_features)$")


def _ann_text(p: inspect.Parameter) -> str:
    ann = p.annotation
    if ann is _EMPTY:
        return ""
    if isinstance(ann, type):  # ``int``, ``torch.Size``: the name, not "<class 'int'>"
        return ann.__name__
    text = ann if isinstance(ann, str) else str(ann)
    return text.strip("'\"").replace(" ", "").removeprefix("typing.")


def _levels(x: torch.Tensor) -> list[torch.Tensor]:
    """Two feature levels (the second at half resolution) for multi-scale heads."""
    if x.dim() in (3, 4, 5) and x.is_floating_point() and min(x.shape[2:]) >= 2:
        pool = {3: nn.functional.avg_pool1d, 4: nn.functional.avg_pool2d}.get(x.dim())
        small = pool(x, 2) if pool is not None else nn.functional.avg_pool3d(x, 2)
        return [x, small.contiguous()]
    return [x, x.clone()]


def _unpacked(module: nn.Module | None, name: str) -> bool:
    """``cos, sin = position_embeddings`` in ``forward``: a pair, whatever the annotation."""
    if module is None:
        return False
    try:
        text = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False
    return re.search(rf"^\s*\w+\s*,\s*\w+\s*=\s*{re.escape(name)}\s*$", text, re.M) is not None


def _is_hw(p: inspect.Parameter) -> bool:
    """A (height, width) pair: by name (``input_dimensions``) or by ``tuple[int, int]``."""
    return bool(_HW.match(p.name) or _PAIR_ANN.match(_ann_text(p)))


def _listed_choice(name: str, kw: Mapping[str, Any], module: nn.Module | None) -> Any:
    """``layer_type`` when the config (or block) lists ``layer_types``: the first listed."""
    owners = [v for v in kw.values() if hasattr(v, "to_dict")] + [module]
    for owner in owners:
        values = getattr(owner, f"{name}s", None)
        if isinstance(values, list | tuple) and values and isinstance(values[0], str | int):
            return values[0]
    return None


def _container(p: inspect.Parameter, x: torch.Tensor, side: int = 8) -> Any:
    """Wrap the primary tensor when ``forward`` is annotated to take a list or dict of maps.

    Position-embedding builders take only what they describe: a primary annotated
    ``torch.Size`` gets the probe tensor's shape, an ``int`` (``width``, ``seqlen``) a side or
    a sequence length.
    """
    text = _ann_text(p)
    if _SIZE_ANN.search(text):
        return x.shape
    # a bare ``h`` is a hidden state
    named = (_SIDE.match(p.name) and len(p.name) > 2) or _LENGTH.match(p.name)
    if text == "int" or (named and not text):
        return side if _SIDE.match(p.name) or x.dim() < 3 else x.shape[1]
    if _LIST_ANN.match(text):
        return _levels(x)
    if _DICT_ANN.match(text):
        return {str(i): t for i, t in enumerate(_levels(x))}
    return x


def _residual(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Residual input of a projection block: shaped like the output of its last linear."""
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is not None and x.dim() >= 2 and x.shape[-1] == last.in_features:
        return torch.randn(*x.shape[:-1], last.out_features)
    return x.clone()


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
    return [p.replace(annotation=t) if p.annotation is _EMPTY else p
            for p, t in zip(params, comment, strict=True)]


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
