"""Config validator messages -> corrected config kwargs (``config_fixes``): first match wins.

Config classes check their own consistency and say which value they want
(``num_attention_heads (4) must be the same as num_key_value_heads (2)``). These rules run
when building a small config (``_configs.build_configs``), on the config's accepted keys
only. They differ from ``init_repairs``, which read a *block* constructor's exception and
traceback: a config's message names its fields, a block's failure needs its source.
"""

from __future__ import annotations

import re
from typing import Any

from nnrag.ladder.rules._registry import Registry

CONFIG_FIXES = Registry(
    "config_fixes", "config validator message -> corrected config kwargs; first match wins"
)

_SAME_AS = re.compile(
    r"\b(\w+) \((\d+)\) (?:must|should) (?:be the same as|equal|match) (\w+) \((\d+)\)"
)
_DIVISIBLE = re.compile(
    r"\b(\w+) \((\d+)\) (?:must|should) be (?:divisible by|a multiple of) (\w+) \((\d+)\)"
)
_PRODUCT = re.compile(
    r"\b(\w+) \* (\w+) \((\d+)\) (?:must|should) (?:equal|be equal to|match) "
    r"(\w+) \* (\w+) \((\d+)\)"
)
_MATCH_NAMES = re.compile(r"\b(\w+) (?:must|should) (?:match|equal|be equal to) (\w+)\b")
Kwargs = dict[str, Any]


@CONFIG_FIXES.register(
    "same_as", order=10, example="transformers Qwen2MoeConfig",
    doc="'a (4) must be the same as b (2)': give the other side the value",
)
def _same_as(kwargs: Kwargs, text: str, accepted: set[str]) -> Kwargs | None:
    if m := _SAME_AS.search(text):
        a, va, b, vb = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
        if b in accepted and kwargs.get(b) != va:
            return {**kwargs, b: va}
        if a in accepted and kwargs.get(a) != vb:
            return {**kwargs, a: vb}
    return None


@CONFIG_FIXES.register(
    "divisible", order=20, example="transformers FalconMambaConfig",
    doc="'a (6) must be divisible by b (4)': round a up to a multiple",
)
def _divisible(kwargs: Kwargs, text: str, accepted: set[str]) -> Kwargs | None:
    if m := _DIVISIBLE.search(text):
        a, va, vb = m.group(1), int(m.group(2)), int(m.group(4))
        want = max(vb, -(-va // vb) * vb)
        if a in accepted and kwargs.get(a) != want:
            return {**kwargs, a: want}
    return None


@CONFIG_FIXES.register(
    "product", order=30, example="transformers Mamba2Config",
    doc="'hidden_size * expand (128) must equal heads * dim (64)': solve for a factor we set",
)
def _product(kwargs: Kwargs, text: str, accepted: set[str]) -> Kwargs | None:
    if m := _PRODUCT.search(text):
        left, right = int(m.group(3)), int(m.group(6))
        for k in (m.group(4), m.group(5)):
            v = kwargs.get(k)
            if k in accepted and isinstance(v, int) and v > 0 and right % v == 0:
                rest = right // v  # the other factor's value, whatever set it
                if rest > 0 and left % rest == 0 and left // rest != v:
                    return {**kwargs, k: left // rest}
    return None


@CONFIG_FIXES.register(
    "match_names", order=40, example="transformers Wav2Vec2Config",
    doc="'adapter_input_size must match hidden_size': copy the named value over",
)
def _match_names(kwargs: Kwargs, text: str, accepted: set[str]) -> Kwargs | None:
    if m := _MATCH_NAMES.search(text):
        a, b = m.group(1), m.group(2)
        if a in accepted and b in kwargs and kwargs.get(a) != kwargs[b]:
            return {**kwargs, a: kwargs[b]}
    return None
