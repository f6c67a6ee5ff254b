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

from nnrag.ladder._configs import build_configs, dedupe, sub_configs
from nnrag.ladder.rules._names import INIT_NAMES
from nnrag.ladder.rules._small import SMALL_CONFIG

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

_CONFIG_CLASS = re.compile(r"(Config|Cfg|Args|Params|Options|Settings|HParams|Hparams)$")
_CONFIG_NAMES = re.compile(r"^(config|cfg|conf|args|opt|opts|hparams|model_args|params)$")


def values_for_name(
    name: str, profile: int = 0, record: bool = True
) -> tuple[str | None, list[Any]]:
    """Return ``(role, candidates)`` guessed from a parameter name alone (``init_names``).

    ``record=False`` asks without marking the rule fired (a question, not a guess used).

    Placeholders ``"<norm>"``, ``"<act>"``, ``"<block>"`` and ``"<module>"`` are resolved by
    :func:`param_candidates`, which knows the owning class and its module namespace.
    """
    hit = INIT_NAMES.first(name.lower(), record=record)
    if hit is None:
        return None, []
    role, vals = hit
    if role is not None:
        return role, [ROLE_VALUES[role][min(profile, N_PROFILES - 1)]]
    return None, list(vals)


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
        cfgs = [cfg for c in classes[:3]
                for cfg in build_configs(c, depth, namespace, infer=init_candidates)]
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
            sig = inspect.signature(vars(klass)["__init__"])
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
    return values_for_name(name, record=False)[0] is not None


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
