"""Small instances of configuration classes (transformers ``*Config``, dataclass configs).

Transformers blocks take one ``config`` argument whose defaults describe a 7B model; the
ladder needs the same architecture at toy size, so only keys the config accepts are
overridden with small values, and attention is forced to eager.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from nnrag.ladder.rules._config_fixes import CONFIG_FIXES
from nnrag.ladder.rules._small import SMALL_CONFIGS, is_config, small_overrides

InferArgs = Callable[..., list[dict[str, Any]]]

_CORE_KEYS = (
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "intermediate_size",
    "vocab_size",
    "d_model",
    "n_embd",
    "n_head",
    "n_layer",
    "num_layers",
    "dim",
    "n_heads",
    "n_layers",
    "num_heads",
)


_DEPTH_KEYS = frozenset(
    {"num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers"}
)


_is_config = is_config


def _accepted_keys(cls: type, default: Any) -> set[str]:
    params: list[inspect.Parameter]
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        params = []
    keys = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if any(p.kind is p.VAR_KEYWORD for p in params) and default is not None:
        keys |= set(vars(default))
    return keys


def set_eager(cfg: Any) -> None:
    """Force eager attention (SDPA/flash kernels hide shape errors and may be missing)."""
    for c in [cfg, *[v for v in vars(cfg).values() if _is_config(v)]]:
        with contextlib.suppress(Exception):
            c._attn_implementation = "eager"


def build_configs(
    cls: type, depth: int = 0, namespace: Mapping[str, Any] | None = None,
    infer: InferArgs | None = None,
) -> list[Any]:
    """Instantiate a config class small: tiny overrides, then core overrides, then defaults.

    ``infer`` synthesises the required fields of a config without defaults (torchvision's
    ``MBConvConfig``) the way a block's own arguments are synthesised; the caller passes it
    in, so this module stays the lower half of that recursion.
    """
    try:
        default = cls()
    except Exception:
        default = None
    accepted = _accepted_keys(cls, default)

    def nested(sub: type) -> list[Any]:
        return build_configs(sub, depth + 1, namespace, infer)

    small, source = small_overrides(accepted, default, nested if depth < 2 else None)
    core = {k: v for k, v in small.items() if k in _CORE_KEYS}
    # Defaults indexed by layer (``per_layer_config``, ``layer_types``) need the default depth.
    deep = {k: v for k, v in small.items() if k not in _DEPTH_KEYS}
    tries: list[dict[str, Any]] = [small, core, deep]
    hidden = getattr(default, "hidden_size", 0)
    if default is not None and (not isinstance(hidden, int) or hidden <= 1024):
        tries.append({})
    if infer is not None and namespace is not None and depth < 2 and default is None:
        # Config with required fields (torchvision's MBConvConfig): infer them like a block.
        tries += infer(cls, namespace, limit=6, _depth=depth + 1)
    for kwargs in dedupe(tries):
        for _ in range(4):  # a validator's message may say which value it wants
            try:
                cfg = cls(**kwargs)
            except Exception as exc:
                fixed = _fix_from_message(kwargs, str(exc), accepted)
                if fixed is None:
                    break
                kwargs = fixed
                continue
            set_eager(cfg)
            with contextlib.suppress(Exception):  # per-layer configs refuse global head_dim reads
                fit_rope_sections(cfg)
            for name in dict.fromkeys(source[k] for k in kwargs if k in source):
                SMALL_CONFIGS.record(name)
            return [cfg, *_mha_variant(cls, kwargs, cfg)]
    return []


def _key(d: Mapping[str, Any]) -> tuple[Any, ...]:
    def one(v: Any) -> Any:
        if isinstance(v, int | float | str | bool | type(None) | tuple):
            return (type(v).__name__, repr(v))
        if isinstance(v, type):
            return ("type", v.__qualname__)
        return ("obj", id(v))

    return tuple(sorted((k, one(v)) for k, v in d.items()))


def dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[Any, ...]] = set()
    result = []
    for d in items:
        k = _key(d)
        if k not in seen:
            seen.add(k)
            result.append(d)
    return result



def fit_rope_sections(cfg: Any) -> None:
    """Scale multimodal rotary sections (``mrope_section``, written for the default head
    width) so they add up to half the small config's head width, as the block requires."""
    for c in [cfg, *[v for v in vars(cfg).values() if _is_config(v)]]:
        heads = getattr(c, "num_attention_heads", None)
        hd = getattr(c, "head_dim", None) or (
            getattr(c, "hidden_size", 0) // heads if isinstance(heads, int) and heads else None
        )
        for attr in ("rope_parameters", "rope_scaling"):
            params = getattr(c, attr, None)
            sections = params.get("mrope_section") if isinstance(params, dict) else None
            declared = "mrope_section" in getattr(type(c), "ignore_keys_at_rope_validation", ())
            if sections is None and declared and isinstance(params, dict):
                sections = [16, 24, 24]  # the modelling code's default (t, h, w) when unset
            if not isinstance(hd, int) or not isinstance(sections, list | tuple) or not sections:
                continue
            if not isinstance(params, dict):  # sections above come from a dict only
                continue
            half = hd // 2
            if sum(sections) == half or half < len(sections):
                if declared:
                    params["mrope_section"] = list(sections)
                continue
            total = sum(sections)
            new = [max(1, s * half // total) for s in sections]
            new[-1] += half - sum(new)
            if new[-1] > 0:
                params["mrope_section"] = new


def _mha_variant(cls: type, kwargs: dict[str, Any], cfg: Any) -> list[Any]:
    """The same config with one kv head per query head, for blocks that assume it."""
    heads = getattr(cfg, "num_attention_heads", None)
    kv = getattr(cfg, "num_key_value_heads", None)
    if not isinstance(heads, int) or not isinstance(kv, int) or heads == kv:
        return []
    try:
        other = cls(**{**kwargs, "num_key_value_heads": heads})
    except Exception:
        return []
    set_eager(other)
    return [other]


def _fix_from_message(
    kwargs: dict[str, Any], text: str, accepted: set[str]
) -> dict[str, Any] | None:
    """``num_attention_heads (4) must be the same as num_key_value_heads (2)``: make it so."""
    fixed: dict[str, Any] | None = CONFIG_FIXES.first(kwargs, text, accepted)
    return fixed


_HEADER = re.compile(r"^# Scope-closed extraction of ([A-Za-z_][\w.]*)\.\w+ by ", re.M)
_SOURCE = re.compile(r"^# source: ([A-Za-z_][\w/]*?)(?:/__init__)?\.py:\d", re.M)
_PACKAGE = re.compile(r"^# package: ([A-Za-z_]\w*)", re.M)
_CONFIG_NAME = re.compile(r"(Config|Cfg)$")


def origin_configs(source: str, namespace: Mapping[str, Any]) -> dict[str, type]:
    """Config classes of the block's original module that the emitted code does not name.

    Emitted blocks keep only what their code references; an unannotated ``config`` argument
    leaves the config class out. The header names the original module, whose ``*Config``
    classes (imported there from ``configuration_*``) are the ones the block was written for.
    """
    head = source[:3000]
    pkg = _PACKAGE.search(head)
    names = [m.group(1).replace("/", ".") for m in [_SOURCE.search(head)] if m is not None]
    names = [n for n in names if pkg is None or n.split(".")[0] == pkg.group(1)]
    names += [m.group(1) for m in [_HEADER.search(head)] if m is not None]
    mod = None
    for modname in dict.fromkeys(names):
        try:
            if importlib.util.find_spec(modname.split(".")[0]) is None:
                continue
            mod = importlib.import_module(modname)
            break
        except Exception:
            continue
    if mod is None:
        return {}
    return {
        k: v
        for k, v in vars(mod).items()
        if isinstance(v, type) and _CONFIG_NAME.search(k) and k not in namespace
    }


def sub_configs(cfg: Any, owner: str) -> list[Any]:
    """Nested configs (``text_config``, ``vision_config``...), the best name match first."""
    subs = []
    with contextlib.suppress(Exception):
        subs = [v for v in vars(cfg).values() if _is_config(v)]
    own = owner.lower()

    def score(v: Any) -> int:
        name = type(v).__name__.lower().removesuffix("config")
        parts = [p for p in re.split(r"(?<=[a-z0-9])(?=[A-Z])", type(v).__name__) if p]
        hits = sum(1 for p in parts[1:-1] if p.lower() in own)
        return -(len(_prefix(name, own)) + 10 * hits)

    return sorted(subs, key=score)


def _prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
