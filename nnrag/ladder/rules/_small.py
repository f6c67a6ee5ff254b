"""Small-config overrides (``small_configs``): every rule applies, in order.

Transformers blocks take one ``config`` whose defaults describe a 7B model; the ladder
needs the same architecture at toy size. Each rule contributes overrides for the keys the
config class accepts (one rule per model family's spelling of the sizes), then the rules
that derive values from the config's defaults or from earlier overrides run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from nnrag.ladder.rules._registry import Registry

SMALL_CONFIGS = Registry(
    "small_configs", "config class -> small keyword overrides; all rules apply, in order"
)
Nested = Callable[[type], list[Any]] | None

# (name, overrides, why, example config); the union is ``SMALL_CONFIG``.
_GROUPS: list[tuple[str, dict[str, Any], str, str]] = [
    ("decoder_sizes", {
        "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 1, "vocab_size": 128,
        "max_position_embeddings": 64, "head_dim": 16,
    }, "the common transformers size names, with grouped kv heads", "transformers LlamaConfig"),
    ("vision_sizes", {"image_size": 32, "patch_size": 4, "num_channels": 3},
     "a 32-pixel RGB image in 4-pixel patches", "transformers ViTConfig"),
    ("encoder_decoder_sizes", {
        "d_model": 64, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 4,
        "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
    }, "seq2seq configs spell sizes per side", "transformers BartConfig"),
    ("gpt2_sizes", {"n_embd": 64, "n_head": 4, "n_layer": 1, "n_positions": 64, "n_inner": 128},
     "GPT-2's n_* spelling", "transformers GPT2Config"),
    ("moe_sizes", {
        "num_experts": 4, "num_local_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
    }, "few, narrow experts", "transformers MixtralConfig"),
    ("projection_sizes", {"embed_dim": 64, "projection_dim": 32},
     "contrastive towers' embedding and projection widths", "transformers CLIPConfig"),
    ("t5_sizes", {"num_layers": 1, "d_ff": 128, "d_kv": 16, "num_heads": 4},
     "T5's d_ff/d_kv spelling", "transformers T5Config"),
    ("latent_attention_sizes", {
        "kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
        "v_head_dim": 16,
    }, "multi-head latent attention's low-rank widths", "transformers DeepseekV3Config"),
    ("sliding_window", {"sliding_window": 16}, "a window shorter than the default",
     "transformers MistralConfig"),
    ("dense_first_layers", {"first_k_dense_replace": 0},
     "the one small layer is a MoE layer, not a dense one", "transformers DeepseekV3Config"),
    ("llama_reference_sizes", {
        "dim": 64, "n_heads": 4, "n_kv_heads": 2, "n_layers": 1, "multiple_of": 16,
        "max_seq_len": 64,
    }, "reference-implementation ModelArgs spelling", "llama ModelArgs"),
    ("misc_sizes", {"num_key_value_groups": 2, "pad_token_id": 0},
     "derived group counts; a pad id inside the small vocabulary", "transformers GemmaConfig"),
]
SMALL_CONFIG: dict[str, Any] = {k: v for _, group, _, _ in _GROUPS for k, v in group.items()}


def _overrides(group: Mapping[str, Any]) -> Callable[..., dict[str, Any] | None]:
    def pick(accepted: set[str], default: Any, small: dict[str, Any], nested: Nested) -> Any:
        return {k: v for k, v in group.items() if k in accepted} or None

    return pick


for _i, (_name, _group, _doc, _example) in enumerate(_GROUPS):
    SMALL_CONFIGS.add(_name, _overrides(_group), doc=_doc, example=_example, order=10 * (_i + 1))


def is_config(v: Any) -> bool:
    """A config instance: a ``*Config`` class that serialises or is a dataclass."""
    return type(v).__name__.endswith("Config") and (
        hasattr(v, "to_dict") or dataclasses.is_dataclass(v)
    )


@SMALL_CONFIGS.register(
    "one_block_per_stage", order=1000, example="transformers ConvNextConfig",
    doc="per-stage depth lists keep their stage count but one block each",
)
def _stage_depths(accepted: set[str], default: Any, small: dict[str, Any], nested: Nested) -> Any:
    if default is None:
        return None
    return {
        name: [1] * len(val)
        for name, val in vars(default).items()
        if name in ("depths", "num_layers_per_stage") and isinstance(val, list | tuple)
    } or None


@SMALL_CONFIGS.register(
    "small_sub_configs", order=1010, example="transformers CLIPConfig",
    doc="nested configs (text_config, vision_config) are built small too",
)
def _sub_configs(accepted: set[str], default: Any, small: dict[str, Any], nested: Nested) -> Any:
    if default is None or nested is None:
        return None
    out = {}
    for name, val in vars(default).items():
        if is_config(val) and name in accepted:
            subs = nested(type(val))
            if subs:
                out[name] = subs[0]
    return out or None


@SMALL_CONFIGS.register(
    "latent_attention_full_kv_heads", order=1020, example="transformers DeepseekV3Config",
    doc="multi-head latent attention expands k/v per query head: no grouped kv heads",
)
def _mla_heads(accepted: set[str], default: Any, small: dict[str, Any], nested: Nested) -> Any:
    if "kv_lora_rank" in accepted and "num_attention_heads" in small:
        return {"num_key_value_heads": small["num_attention_heads"]}
    return None


def small_overrides(
    accepted: set[str], default: Any, nested: Nested
) -> tuple[dict[str, Any], dict[str, str]]:
    """The overrides of every rule, later rules over earlier, and which rule set each key."""
    small: dict[str, Any] = {}
    source: dict[str, str] = {}
    for rule in SMALL_CONFIGS:
        found = rule.fn(accepted, default, small, nested)
        if found:
            small.update(found)
            source.update(dict.fromkeys(found, rule.name))
    return small, source
