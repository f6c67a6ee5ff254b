"""Unit tests for constructor-argument and probe-input inference (pure functions)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Optional

import pytest
import torch
from torch import nn

from nnrag.rag._infer import (
    build_configs,
    config_classes,
    describe_value,
    init_candidates,
    init_parameters,
    param_candidates,
    values_for_name,
)
from nnrag.rag._probe import describe, first_leaf, infer_probes


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("in_channels", 64),
        ("in_chs", 64),
        ("inplanes", 64),
        ("dim", 64),
        ("hidden_size", 64),
        ("embed_dim", 64),
        ("d_model", 64),
        ("num_features", 64),
        ("inp", 64),
        ("out_channels", 64),
        ("oup", 64),
        ("num_classes", 10),
        ("num_heads", 4),
        ("num_attention_heads", 4),
        ("head_dim", 16),
        ("kernel_size", 3),
        ("stride", 1),
        ("padding", 1),
        ("groups", 1),
        ("dilation", 1),
        ("mlp_ratio", 4.0),
        ("expand_ratio", 4),
        ("drop_path", 0.0),
        ("attn_drop", 0.0),
        ("p", 0.0),
        ("eps", 1e-5),
        ("bias", True),
        ("window_size", 4),
        ("patch_size", 4),
        ("img_size", 32),
        ("max_position_embeddings", 64),
        ("vocab_size", 100),
        ("layer_idx", 0),
        ("hidden_features", 128),
        ("input_resolution", (8, 8)),
    ],
)
def test_values_for_name_first_choice(name: str, expected: object) -> None:
    role, vals = values_for_name(name)
    first = vals[0]
    assert first == expected
    assert type(first) is type(expected)


def test_profiles_keep_heads_dividing_dims() -> None:
    for prof in range(4):
        dim = values_for_name("dim", prof)[1][0]
        heads = values_for_name("num_heads", prof)[1][0]
        assert dim % heads == 0


def test_sequences_and_layers() -> None:
    assert values_for_name("layers")[1][0] == (1, 1, 1, 1)
    assert values_for_name("depths")[1][0] == (1, 1, 1, 1)
    assert values_for_name("norm_layer")[1] == ["<norm>"]
    assert values_for_name("totally_unknown_thing") == (None, [])


def _param(name: str, annotation: object = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)


class _Conv(nn.Module):
    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()


@pytest.mark.parametrize(
    ("name", "ann", "expected_first"),
    [
        ("flag", bool, False),
        ("foo", int, 16),
        ("num_things", int, 2),
        ("ratio_x", float, 16.0),
        ("mode_name", str, ""),
        ("input_resolution", tuple[int, int], (8, 8)),
        ("kernel_size", tuple[int, int], (3, 3)),
        ("norm_layer", Callable[..., nn.Module], nn.BatchNorm2d),
        ("act_layer", type[nn.Module], nn.ReLU),
        ("submodule", nn.Module, None),
        ("dim", "int", 64),
        ("dim", Optional[int], 64),  # noqa: UP045 - exercise typing.Optional explicitly
        ("dim", int | None, 64),
    ],
)
def test_param_candidates_annotations(name: str, ann: object, expected_first: object) -> None:
    _, vals = param_candidates(_param(name, ann), _Conv, {}, {"in_chs", "out_chs"})
    if name == "submodule":
        assert isinstance(vals[0], nn.Identity)
    else:
        assert vals[0] == expected_first


def test_optional_adds_none() -> None:
    _, vals = param_candidates(_param("dim", int | None), _Conv, {}, set())
    assert vals[-1] is None


def test_norm_layer_for_token_blocks_is_layernorm() -> None:
    class Attn(nn.Module):
        def __init__(self, dim: int, norm_layer: Callable) -> None:
            super().__init__()

    _, vals = param_candidates(_param("norm_layer"), Attn, {}, {"dim", "norm_layer"})
    assert vals[0] is nn.LayerNorm


def test_init_candidates_defaults_first_and_deduped() -> None:
    class AllDefaults(nn.Module):
        def __init__(self, dim: int = 8, layer_idx: int | None = None) -> None:
            super().__init__()

    cands = init_candidates(AllDefaults, {})
    assert cands[0] == {}
    assert cands[1] == {"layer_idx": 0}
    keys = [tuple(sorted((k, repr(v)) for k, v in c.items())) for c in cands]
    assert len(keys) == len(set(keys))


def test_init_candidates_resnet_block_pattern() -> None:
    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
            super().__init__()

    class Bottleneck(BasicBlock):
        expansion = 4

    class Net(nn.Module):
        def __init__(self, block, layers, num_classes: int = 10) -> None:
            super().__init__()

    ns = {"BasicBlock": BasicBlock, "Bottleneck": Bottleneck, "Net": Net}
    cands = init_candidates(Net, ns)
    assert cands[0] == {"block": BasicBlock, "layers": (1, 1, 1, 1)}
    assert {"block": Bottleneck, "layers": (1, 1, 1, 1)} in cands
    bottleneck = init_candidates(Bottleneck, ns)
    assert {"inplanes": 64, "planes": 16} in bottleneck  # 16 * expansion == 64


def test_init_parameters_follow_kwargs_passthrough() -> None:
    class Base(nn.Module):
        def __init__(self, dim: int, heads: int = 2) -> None:
            super().__init__()

    class Child(Base):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)

    assert [p.name for p in init_parameters(Child)] == ["dim", "heads"]
    assert init_candidates(Child, {})[0] == {"dim": 64}


@dataclasses.dataclass
class TinyArgs:
    dim: int = 4096
    n_heads: int = 32
    vocab_size: int = 32000


class HFLikeConfig:
    def __init__(self, hidden_size=4096, num_attention_heads=32, head_dim=None, **kwargs):
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self._attn_implementation = "sdpa"
        for k, v in kwargs.items():
            setattr(self, k, v)

    def to_dict(self) -> dict:
        return dict(vars(self))


def test_build_configs_small_overrides() -> None:
    (cfg,) = build_configs(HFLikeConfig)
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim) == (64, 4, 16)
    assert cfg._attn_implementation == "eager"
    assert not hasattr(cfg, "vocab_size")  # only accepted keys are passed
    (args,) = build_configs(TinyArgs)
    assert (args.dim, args.n_heads, args.vocab_size) == (64, 4, 128)
    assert "Config" in describe_value(cfg) or "HFLike" in describe_value(cfg)


def test_config_param_by_name_and_annotation() -> None:
    class LlamaLikeMLP(nn.Module):
        def __init__(self, config) -> None:
            super().__init__()

    ns = {"HFLikeConfig": HFLikeConfig, "TinyArgs": TinyArgs}
    assert config_classes(ns, "HFLikeMLP")[0] is HFLikeConfig
    cands = init_candidates(LlamaLikeMLP, ns)
    assert isinstance(cands[0]["config"], HFLikeConfig | TinyArgs)

    class Model(nn.Module):
        def __init__(self, args: TinyArgs) -> None:
            super().__init__()

    cands = init_candidates(Model, ns)
    assert isinstance(cands[0]["args"], TinyArgs)


def test_probe_conv_first_is_channels_first_image() -> None:
    m = nn.Sequential(nn.Conv2d(5, 8, 3), nn.ReLU())
    assert isinstance(first_leaf(m), nn.Conv2d)
    probes = infer_probes(m, {}, {})
    assert probes[0].args[0].shape == (2, 5, 32, 32)
    assert all(p.args[0].shape[1] == 5 for p in probes[:2])
    assert probes[0].desc == "input: float32[2, 5, 32, 32]"


def test_probe_linear_first_is_tokens() -> None:
    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 4)

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            return self.fc(hidden_states)

    probes = infer_probes(Mlp(), {}, {})
    shapes = [tuple(p.args[0].shape) for p in probes]
    assert shapes[0] == (2, 8, 12)
    assert (2, 12) in shapes


def test_probe_input_ids_and_extra_params() -> None:
    class Emb(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(30, 16)

        def forward(self, input_ids, position_ids, attention_mask=None, H=None):
            return self.tok(input_ids)

    (probe,) = infer_probes(Emb(), {}, {})[:1]
    ids = probe.args[0]
    assert ids.dtype == torch.long and int(ids.max()) < 30
    assert probe.kwargs["position_ids"].shape == ids.shape
    assert "attention_mask" not in probe.kwargs


def test_probe_rope_fallback_shapes() -> None:
    class Attn(nn.Module):
        def __init__(self, config) -> None:
            super().__init__()
            self.q = nn.Linear(config.hidden_size, config.hidden_size)

        def forward(self, hidden_states, position_embeddings=None):
            return self.q(hidden_states)

    (cfg,) = build_configs(HFLikeConfig)
    probe = infer_probes(Attn(cfg), {"config": cfg}, {})[0]
    cos, sin = probe.kwargs["position_embeddings"]
    assert cos.shape == sin.shape == (2, 8, 16)


def test_describe_nested() -> None:
    out = {"a": torch.zeros(2, 3), "b": (torch.ones(1, dtype=torch.long), None)}
    assert describe(out) == "{a: float32[2, 3], b: (int64[1], None)}"
