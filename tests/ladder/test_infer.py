"""Unit tests for constructor-argument and probe-input inference (pure functions)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Optional

import pytest
import torch
from torch import nn

from nnrag.ladder._infer import (
    build_configs,
    config_classes,
    describe_value,
    init_candidates,
    init_parameters,
    param_candidates,
    values_for_name,
)
from nnrag.ladder._probe import describe, first_leaf, infer_probes


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
        ("transforms", "<modules>"),  # a sequence of callables, resolved to Identity layers
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


class HFCompositeConfig:
    """transformers-style composite config: the block may want a nested sub-config."""

    def __init__(self, hidden_size=4096, **kwargs):
        self.hidden_size = hidden_size
        self.text_config = kwargs.get("text_config") or HFLikeConfig()
        self.audio_config = kwargs.get("audio_config") or HFLikeConfig()

    def to_dict(self) -> dict:
        return dict(vars(self))


def test_config_candidates_include_sub_configs() -> None:
    from nnrag.ladder._configs import sub_configs

    class HFLikeConfigAudioLayer(nn.Module):
        def __init__(self, config) -> None:
            super().__init__()

    (top,) = build_configs(HFCompositeConfig)
    subs = sub_configs(top, "HFLikeConfigAudioLayer")
    assert len(subs) == 2 and all(isinstance(s, HFLikeConfig) for s in subs)
    vals = init_candidates(HFLikeConfigAudioLayer, {"HFCompositeConfig": HFCompositeConfig})
    cfgs = [c["config"] for c in vals]
    assert isinstance(cfgs[0], HFCompositeConfig)
    assert any(isinstance(c, HFLikeConfig) for c in cfgs[1:])


def test_origin_configs_from_header(tmp_path, monkeypatch) -> None:
    from nnrag.ladder._configs import origin_configs

    (tmp_path / "nnrag_origin_pkg.py").write_text(
        "class OrigConfig:\n    hidden_size = 8\n\nclass Other:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    src = "# Scope-closed extraction of nnrag_origin_pkg.OrigLayer by nnrag 0.1.0.\nx = 1\n"
    found = origin_configs(src, {})
    assert list(found) == ["OrigConfig"]
    assert origin_configs(src, {"OrigConfig": object}) == {}  # never shadows the block's names
    assert origin_configs("x = 1\n", {}) == {}
    assert origin_configs(src.replace("nnrag_origin_pkg", "no_such_pkg_xyz"), {}) == {}
    nested = (
        "# Scope-closed extraction of nnrag_origin_pkg.Outer.Inner by nnrag 0.1.0.\n"
        "# source: nnrag_origin_pkg.py:1-3 sha1=0\n"
    )
    assert list(origin_configs(nested, {})) == ["OrigConfig"]


def test_norm_layer_for_3d_blocks_is_batchnorm3d() -> None:
    class TemporalConv(nn.Module):
        def __init__(self, in_planes, out_planes, norm_layer) -> None:
            super().__init__()

    assert init_candidates(TemporalConv, {})[0]["norm_layer"] is nn.BatchNorm3d


def test_probe_list_and_dict_of_feature_maps() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(6, 4, 3, padding=1)

        def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
            return [self.conv(t) for t in x]

    class Fpn(Head):
        def forward(self, x: "Dict[str, Tensor]") -> list[torch.Tensor]:  # noqa: F821, UP037
            return [self.conv(t) for t in x.values()]

    levels = infer_probes(Head(), {}, {})[0].args[0]
    assert isinstance(levels, list) and [t.shape[-1] for t in levels] == [32, 16]
    assert all(t.shape[1] == 6 for t in levels)
    maps = infer_probes(Fpn(), {}, {})[0].args[0]
    assert isinstance(maps, dict) and list(maps) == ["0", "1"]
    assert "[" in infer_probes(Fpn(), {}, {})[0].desc


def test_probe_residual_input_matches_output_projection() -> None:
    class BertLikeOutput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(32, 16)
            self.norm = nn.LayerNorm(16)

        def forward(self, hidden_states, input_tensor):
            return self.norm(self.dense(hidden_states) + input_tensor)

    probe = infer_probes(BertLikeOutput(), {}, {})[0]
    assert probe.args[0].shape[-1] == 32
    assert probe.kwargs["input_tensor"].shape == (*probe.args[0].shape[:-1], 16)


def test_audio_probes_feed_waveforms_and_mel_features() -> None:
    class Wave(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 8, 10, stride=5)

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            return self.conv(input_values[:, None])

    class Mel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(80, 8, 3)

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            return self.conv(input_features)

    wave = [p.args[0].shape for p in infer_probes(Wave(), {}, {})]
    assert torch.Size([2, 1600]) in wave
    mel = [p.args[0].shape for p in infer_probes(Mel(), {}, {})]
    assert torch.Size([2, 80, 100]) in mel


def test_moe_expert_probes_get_long_indices_and_softmaxed_weights() -> None:
    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 4
            self.w = nn.Parameter(torch.randn(4, 16, 16))

        def forward(self, hidden_states, top_k_index, top_k_weights):  # type: ignore[no-untyped-def]
            mask = nn.functional.one_hot(top_k_index, num_classes=self.num_experts)
            return hidden_states @ self.w[0] * (mask.sum() + top_k_weights.sum())

    module = Experts()
    probes = infer_probes(module, {"hidden_size": 16}, {})
    assert probes
    ok = False
    for p in probes:
        idx, w = p.kwargs["top_k_index"], p.kwargs["top_k_weights"]
        assert idx.dtype == torch.long and int(idx.min()) >= 0 and int(idx.max()) < 4
        assert idx.shape == w.shape and torch.allclose(w.sum(-1), torch.ones(idx.shape[0]))
        try:
            module(*p.args, **p.kwargs)
            ok = True
        except Exception:
            continue
    assert ok
    flat = [p for p in probes if p.args[0].dim() == 2]
    assert flat and flat[0].kwargs["top_k_index"].shape[0] == flat[0].args[0].shape[0]


def test_encoder_decoder_probe_adds_decoder_input_ids() -> None:
    class Seq2Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(100, 16)

        def forward(self, input_ids=None, decoder_input_ids=None):  # type: ignore[no-untyped-def]
            if decoder_input_ids is None:
                raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
            return self.emb(input_ids) + self.emb(decoder_input_ids)

    probes = infer_probes(Seq2Seq(), {}, {})
    assert "decoder_input_ids" not in probes[0].kwargs  # the generic probe comes first
    dec = [p for p in probes if "decoder_input_ids" in p.kwargs]
    assert dec and dec[0].kwargs["decoder_input_ids"].dtype == torch.long
    assert Seq2Seq()(*dec[0].args, **dec[0].kwargs).shape == (2, 8, 16)
