"""Constructor-argument inference for emitted blocks.

A block emitted by nnrag is a bare class: nobody tells us how to build it. Rung 4 of the
validation ladder therefore guesses keyword arguments from the ``__init__`` signature
(defaults, then annotations, then parameter names) and tries the guesses in order. The
tables here are tuned on real torchvision/timm/transformers signatures: the names that
occur most often without a default are ``dim``, ``in_chs``/``in_channels``, ``out_chs``,
``num_heads``, ``kernel_size``, ``in_features``, ``depth``, ``inplanes``/``planes`` and
``config``.

Related sizes are guessed together through *profiles* (index ``i`` picks the i-th value of
every role) so that e.g. ``dim`` and ``num_heads`` stay divisible and ``inplanes`` equals
``planes * expansion`` for ResNet-style identity shortcuts.
"""

from __future__ import annotations

import builtins
import collections.abc
import contextlib
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from torch import nn

from nnrag.ladder._configs import SMALL_CONFIG, build_configs, dedupe, sub_configs

_EMPTY = inspect.Parameter.empty

# Role -> value per profile. Profile 0 is the most plausible combination.
ROLE_VALUES: dict[str, tuple[Any, ...]] = {
    "dim": (64, 64, 32, 16),
    "out": (64, 16, 32, 8),
    "planes": (64, 16, 32, 16),
    "hidden": (128, 64, 64, 32),
    "heads": (4, 4, 2, 2),
    "head_dim": (16, 16, 16, 8),
    "classes": (10, 10, 8, 8),
    "depth": (1, 2, 1, 1),
}
N_PROFILES = 4

# (regex on the lower-cased name, role or None, fixed candidate values). First match wins.
_NAME_RULES: list[tuple[str, str | None, tuple[Any, ...]]] = [
    (r"^(layer_idx|layer_id|layer_index|block_idx|layer_number|idx)$", None, (0, 1)),
    (r"(^|_)(num_classes|n_classes|num_labels|nclass(es)?)$", "classes", ()),
    (r"(^|_)(num_heads|n_heads?|nheads?|heads|num_attention_heads|nhead)$", "heads", ()),
    (r"(num_key_value_heads|num_kv_heads|kv_heads)$", None, (2, 4)),
    (r"(^|_)(head_dim|dim_head|key_dim|qk_dim|attn_head_dim)$", "head_dim", ()),
    (r"(kernel_size|^kernel|^ksize|^k$)", None, (3, 1)),
    (r"^(stride|strides)$", None, (1, 2)),
    (r"^(padding|pad)$", None, (1, 0)),
    (r"^(dilation|dilation_rate)$", None, (1,)),
    (r"^(groups|num_groups|group_size|groups_num)$", None, (1, 4)),
    (r"(mlp_ratio|ffn_ratio|attn_ratio)$", None, (4.0, 2.0)),
    (r"(expansion|expand_ratio|expansion_ratio|exp_ratio|expand)$", None, (4, 2, 1)),
    (r"(se_ratio|rd_ratio|squeeze_ratio)$", None, (0.25,)),
    (r"(drop|dropout|drop_rate|drop_path|_prob$|^p$|^prob$|attention_dropout)", None, (0.0,)),
    (r"(^|_)eps$|epsilon$", None, (1e-5,)),
    (r"^(bias|use_bias|affine)$", None, (True, False)),
    (r"^inplace$", None, (False, True)),
    (r"(norm_layer|^norm$|norm_fn|normalization|^norm_cls$)", None, ("<norm>",)),
    (r"(act_layer|activation_layer|^act$|^activation$|act_fn|nonlinearity)", None, ("<act>",)),
    (
        r"^(depths|layers|num_blocks|blocks_per_stage|stage_blocks|layer_nums)$",
        None,
        ((1, 1, 1, 1),),
    ),
    (
        r"^(dims|embed_dims|hidden_dims|widths|stage_channels|channels_list|out_channels_list|width_list|hidden_sizes)$",
        None,
        ((16, 32, 64, 128),),
    ),
    (r"^(block|block_fn|block_cls|block_type|residual_block)$", None, ("<block>",)),
    (r"^(transforms|fns|functions|callables|module_list|modules)$", None, ("<modules>",)),
    (
        r"^(fn|module|layer|m|net|body|submodule|model|backbone|inner|wrapped|sublayer|op)$",
        None,
        ("<module>",),
    ),
    (r"(window_size|win_size)$", None, (4, 2)),
    (r"shift_size$", None, (0, 2)),
    (r"(patch_size|patch|stem_stride)$", None, (4, 2)),
    (r"(img_size|image_size|input_size|imgsize|img_res)$", None, (32, 64, 224)),
    (
        r"(input_resolution|resolution|feat_size|feature_size|grid_size|spatial_size|hw)$",
        None,
        ((8, 8), 8),
    ),
    (
        r"(seq_len|seq_length|max_len|max_length|max_position_embeddings|num_positions|max_seq_len|num_patches|context_length|n_ctx|block_size)$",
        None,
        (64,),
    ),
    (r"(vocab_size|num_embeddings|num_tokens|n_vocab|vocab|ntoken)$", None, (100,)),
    (
        r"^(num_layers|n_layers|nlayers|depth|num_blocks|num_hidden_layers|n_layer|num_stages)$",
        "depth",
        (),
    ),
    (r"(reduction|reduction_ratio|squeeze_factor|rd_divisor|n_div)$", None, (4,)),
    (r"(growth_rate)$", None, (16,)),
    (r"(bn_size)$", None, (4,)),
    (r"(num_anchors)$", None, (3,)),
    (r"(output_size|out_size|pool_size)$", None, (4, 1)),
    (r"(init_value|init_values|layer_scale|scale_init|scale)$", None, (1.0, 1e-5)),
    (r"(temperature|tau|alpha|beta|gamma|momentum|margin)$", None, (1.0, 0.1)),
    (r"(mode|pad_type|padding_mode)$", None, ("",)),
    (
        r"(hidden_features|hidden_dim|hidden_channels|mid_chs|mid_channels|intermediate_size|ffn_dim|mlp_dim|dim_feedforward|inter_chs|ff_dim|hidden_chs|d_ff|inner_dim|bottleneck_channels)$",
        "hidden",
        (),
    ),
    (
        r"(out_channels|out_chs|out_features|out_dim|dim_out|output_dim|oup|c_out|out_planes|outplanes|output_channels|n_out|width_out|out_ch|out_c|nout)",
        "out",
        (),
    ),
    (r"^(planes|mid_planes)$", "planes", ()),
    (
        r"(in_channels|in_chs|inplanes|in_planes|in_features|in_dim|input_dim|c_in|^dim$|hidden_size|embed_dim|d_model|channels$|^width|num_features|^inp$|^c$|chans|in_ch|in_c$|input_channels|num_input_features|features$|_dim$|^n_embd$|^d_|emb_dim|width_in|^nin$|normalized_shape|normalization_shape|in_channel)",
        "dim",
        (),
    ),
]
_COMPILED = [(re.compile(p), role, vals) for p, role, vals in _NAME_RULES]

_CONFIG_CLASS = re.compile(r"(Config|Cfg|Args|Params|Options|Settings|HParams|Hparams)$")
_CONFIG_NAMES = re.compile(r"^(config|cfg|conf|args|opt|opts|hparams|model_args|params)$")


def values_for_name(name: str, profile: int = 0) -> tuple[str | None, list[Any]]:
    """Return ``(role, candidates)`` guessed from a parameter name alone.

    Placeholders ``"<norm>"``, ``"<act>"``, ``"<block>"`` and ``"<module>"`` are resolved by
    :func:`param_candidates`, which knows the owning class and its module namespace.
    """
    low = name.lower()
    for rx, role, vals in _COMPILED:
        if rx.search(low):
            if role is not None:
                return role, [ROLE_VALUES[role][min(profile, N_PROFILES - 1)]]
            return None, list(vals)
    return None, []


def _resolve_annotation(ann: Any, namespace: Mapping[str, Any]) -> Any:
    """Evaluate a string annotation in the block's namespace; return ``_EMPTY`` on failure."""
    if not isinstance(ann, str):
        return ann
    env = {**vars(typing), **vars(builtins), **dict(namespace)}
    try:
        return eval(ann, env)  # noqa: S307 - annotations come from the code under test
    except Exception:
        return ann  # keep the string; _annotation_kind parses it textually


def _annotation_kind(ann: Any) -> tuple[str, Any]:
    """Classify an annotation as ``(kind, detail)``: int/float/bool/str/seq/layer/class/..."""
    if ann is _EMPTY or ann is None:
        return "none", None
    if isinstance(ann, str):
        s = ann.replace(" ", "")
        for prefix, kind in (
            ("Optional[", "optional"),
            ("int", "int"),
            ("float", "float"),
            ("bool", "bool"),
            ("str", "str"),
            ("Tuple", "seq"),
            ("tuple", "seq"),
            ("List", "seql"),
            ("list", "seql"),
            ("Sequence", "seq"),
            ("Callable", "layer"),
            ("Type", "layer"),
            ("type", "layer"),
        ):
            if s.startswith(prefix):
                return ("seq", "list") if kind == "seql" else (kind, None)
        return ("config", s) if s.endswith("Config") else ("none", None)
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return ("optional", args) if args else ("none", None)
    if origin in (tuple, list, collections.abc.Sequence):
        return "seq", "list" if origin is list else "tuple"
    if origin in (collections.abc.Callable, type):
        return "layer", None
    if ann in (int, float, bool, str):
        return ann.__name__, None
    if ann in (tuple, list):
        return "seq", ann.__name__
    if isinstance(ann, type):
        if issubclass(ann, nn.Module):
            return "module", ann
        if ann.__name__.endswith("Config") or dataclasses.is_dataclass(ann):
            return "config", ann
    return "none", None


def _norm_for(cls_name: str, other_params: set[str]) -> list[Any]:
    """Pick BatchNorm2d for conv-looking blocks, LayerNorm for token-looking ones."""
    convish = any(re.search(r"chs|channels|planes|kernel|^inp$", p) for p in other_params)
    convish = convish or bool(re.search(r"conv|res|bottleneck|stem|2d|cnn", cls_name.lower()))
    if re.search(r"3d|temporal|video|volumetric", cls_name.lower()):
        return [nn.BatchNorm3d, nn.BatchNorm2d, nn.LayerNorm]
    return [nn.BatchNorm2d, nn.LayerNorm] if convish else [nn.LayerNorm, nn.BatchNorm2d]


def _block_classes(namespace: Mapping[str, Any]) -> list[type]:
    """BasicBlock-style classes: nn.Module subclasses with an ``expansion`` attribute."""
    found = [
        v
        for v in namespace.values()
        if isinstance(v, type) and issubclass(v, nn.Module) and hasattr(v, "expansion")
    ]
    return sorted(found, key=lambda c: (getattr(c, "expansion", 1), c.__name__))


def config_classes(namespace: Mapping[str, Any], target: str) -> list[type]:
    """Config-like classes visible in the module, the best-matching name prefix first."""
    found = [
        v
        for v in namespace.values()
        if isinstance(v, type) and _CONFIG_CLASS.search(v.__name__) and not issubclass(v, nn.Module)
    ]

    def score(c: type) -> tuple[int, str]:
        name = c.__name__.removesuffix("Config")
        common = len(_common_prefix(name.lower(), target.lower()))
        return (-common, c.__name__)

    return sorted(dict.fromkeys(found), key=score)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _layer_for(name: str, cls_name: str, others: set[str]) -> list[Any]:
    low = name.lower()
    if "norm" in low:
        return _norm_for(cls_name, others)
    if "act" in low or "nonlin" in low:
        return [nn.ReLU, nn.GELU]
    return [nn.Identity]


def param_candidates(
    param: inspect.Parameter,
    owner: type,
    namespace: Mapping[str, Any],
    others: set[str],
    profile: int = 0,
    depth: int = 0,
) -> tuple[str | None, list[Any]]:
    """Candidate values for one required parameter, most plausible first."""
    ann = _resolve_annotation(param.annotation, namespace)
    kind, detail = _annotation_kind(ann)
    name = param.name
    if kind == "optional" and detail is not None and not isinstance(detail, str):
        sub = inspect.Parameter(name, param.kind, annotation=detail[0])
        role, vals = param_candidates(sub, owner, namespace, others, profile, depth)
        return role, [*vals, None]
    if kind == "config" or (kind == "none" and _CONFIG_NAMES.match(name.lower())):
        classes = (
            [detail] if isinstance(detail, type) else config_classes(namespace, owner.__name__)
        )
        if isinstance(detail, str):
            classes = [c for c in classes if c.__name__ == detail] or classes
        if isinstance(detail, list):
            classes = [c for c in detail if isinstance(c, type)]
        cfgs = [cfg for c in classes[:3] for cfg in build_configs(c, depth, namespace, infer=init_candidates)]
        subs = [sub for cfg in cfgs[:1] for sub in sub_configs(cfg, owner.__name__)[:2]]
        return None, [*cfgs[:1], *subs, *cfgs[1:]]
    if kind == "module" and detail is not None:
        # ``block: Union[BasicBlock, Bottleneck]`` is annotated as an instance but is a class
        as_class = isinstance(detail, type) and re.search(r"(block|layer|_fn$|cls|type)", name)
        return None, [detail, nn.Identity()] if as_class else [nn.Identity()]
    role, vals = values_for_name(name, profile)
    vals = [_placeholder(v, name, owner, namespace, others) for v in vals]
    vals = [v for group in vals for v in (group if isinstance(group, list) else [group])]
    if kind == "layer" and not vals:
        vals = _layer_for(name, owner.__name__, others)
    if kind == "seq":
        vals = [v if isinstance(v, tuple | list) else (v, v) for v in vals] or [(1, 1, 1, 1)]
        if detail == "list":  # callers may .copy()/.append() a list-typed argument
            vals = [list(v) for v in vals]
    if kind in ("int", "float") and not vals:
        vals = [2, 1, 4] if re.match(r"(num|n)_", name.lower()) else [16, 8, 1]
        vals = [float(v) for v in vals] if kind == "float" else vals
    if kind == "bool" and not vals:
        vals = [False, True]
    if kind == "str" and not vals:
        vals = ["relu"] if "act" in name.lower() else [""]
    if not vals:
        vals = [None, 16]
    return role, vals


def _placeholder(v: Any, name: str, owner: type, ns: Mapping[str, Any], others: set[str]) -> Any:
    if v == "<norm>":
        return _norm_for(owner.__name__, others)
    if v == "<act>":
        return [nn.ReLU, nn.GELU]
    if v == "<block>":
        return _block_classes(ns) or [nn.Identity]
    if v == "<module>":
        return [nn.Identity()]
    if v == "<modules>":  # a sequence of callables (Compose, RandomChoice, per-level heads)
        return [[nn.Identity(), nn.Identity()]]
    return v


def init_parameters(cls: type) -> list[inspect.Parameter]:
    """Named ``__init__`` parameters, following ``*args/**kwargs`` pass-through up the MRO."""
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        try:
            sig = inspect.signature(klass.__init__)
        except (TypeError, ValueError):
            continue
        params = list(sig.parameters.values())[1:]
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        passthrough = len(named) < len(params)
        if named or not passthrough:
            return named
    return []


def init_candidates(
    cls: type, namespace: Mapping[str, Any], limit: int = 12, _depth: int = 0
) -> list[dict[str, Any]]:
    """Ordered, de-duplicated keyword-argument dicts to try when instantiating ``cls``.

    Order: all defaults (when possible), then one dict per size profile, then single-parameter
    variations of profile 0 (e.g. the second norm layer or the second kernel size).
    """
    params = init_parameters(cls)
    required = [p for p in params if p.default is _EMPTY]
    # transformers layers default ``layer_idx`` to None but index caches with it.
    extra = [p for p in params if p.default is None and p.name in ("layer_idx", "layer_id")]
    out: list[dict[str, Any]] = [] if required else [{}]
    others = {p.name for p in params}
    profiles: list[dict[str, list[Any]]] = []
    for prof in range(N_PROFILES):
        table: dict[str, list[Any]] = {}
        for p in [*required, *extra]:
            if prof > 0 and p.name in profiles[0] and not _has_role(p.name):
                table[p.name] = profiles[0][p.name]  # configs are costly: build them once
            else:
                table[p.name] = param_candidates(p, cls, namespace, others, prof, _depth)[1]
        profiles.append(table)
    if required:
        for table in profiles:
            out.append({k: v[0] for k, v in table.items() if v})
    elif extra:
        out.append({k: v[0] for k, v in profiles[0].items() if v})
    base = {k: v[0] for k, v in profiles[0].items() if v}
    for k, vals in profiles[0].items():
        for v in vals[1:]:
            out.append({**base, k: v})
    return dedupe(out)[:limit]


_FACTORY = re.compile(r"^(norm_layer|act_layer|conv_layer|activation_layer|norm_fn|act_fn)$")


def fallback_candidates(
    cls: type, namespace: Mapping[str, Any], base: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Extra kwargs to try after :func:`init_candidates`: fill parameters that default to None.

    An optional ``config``/``cfg`` gets a small config instance (``BartAttention(...,
    config=None)`` reads ``config._attn_implementation``); optional layer factories the
    block calls (``norm_layer``/``act_layer``/``conv_layer``) get plain ``nn`` classes.
    """
    params = init_parameters(cls)
    others = {p.name for p in params}
    optional = [p for p in params if p.default is None and base.get(p.name) is None]
    cfg: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    for p in optional:
        kind = _annotation_kind(_resolve_annotation(p.annotation, namespace))[0]
        if _CONFIG_NAMES.match(p.name.lower()) or kind == "config":
            req = p.replace(default=_EMPTY)
            with contextlib.suppress(Exception):
                vals = [v for v in param_candidates(req, cls, namespace, others)[1] if v]
                if vals and not isinstance(vals[0], int | float | str | tuple | list):
                    cfg[p.name] = vals[0]
        elif _FACTORY.match(p.name.lower()):
            layers[p.name] = layer_factory(p.name, cls.__name__, others)
    out = [{**base, **d} for d in (cfg, layers, {**cfg, **layers}) if d]
    return dedupe(out)


def layer_factory(name: str, cls_name: str, others: set[str]) -> type[nn.Module]:
    """The plain ``nn`` class for a layer-factory argument (``norm_layer``, ``act_layer``)."""
    low = name.lower()
    if "norm" in low:
        return _norm_for(cls_name, others)[0]
    if "conv" in low:
        return nn.Conv2d
    return nn.GELU if re.search(r"act|nonlin", low) else nn.Identity


def _has_role(name: str) -> bool:
    return values_for_name(name)[0] is not None


def describe_value(v: Any) -> str:
    """Short repr for reports: configs and modules are summarised, not dumped."""
    if isinstance(v, type):
        return v.__qualname__
    if isinstance(v, nn.Module):
        return f"{type(v).__name__}()"
    if hasattr(v, "to_dict") or dataclasses.is_dataclass(v):
        keys = ("hidden_size", "num_attention_heads", "num_hidden_layers", "d_model", "dim")
        shown = ", ".join(f"{k}={getattr(v, k)!r}" for k in keys if hasattr(v, k))
        return f"{type(v).__name__}({shown})"
    return repr(v)[:200]


__all__ = [
    "ROLE_VALUES",
    "SMALL_CONFIG",
    "build_configs",
    "config_classes",
    "describe_value",
    "fallback_candidates",
    "init_candidates",
    "init_parameters",
    "param_candidates",
    "values_for_name",
]
