"""Ladder rules added in ladder version 8, each with a block that needs it.

Each fixture is a small copy of a pattern that made real library blocks fail: a ratio that
is only an int where it is used (timm RepViT), configs that lack a field the block reads
or leave a required one unset (transformers composite and time-series configs), defaults
indexed by layer (``per_layer_config``), packed variable-length batches (``cu_seqlens``),
mutually exclusive inputs, and a bare ``h`` that is a hidden state, not a height.
"""

from __future__ import annotations

import pytest

from nnrag.ladder._adapt import adapt
from nnrag.ladder._configs import build_configs
from nnrag.ladder._probe import Probe
from nnrag.ladder._repair import repair

from .test_ladder_child import assert_ok, climb


@pytest.fixture(autouse=True)
def _scratch(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)


RATIO = """
class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc = nn.Conv2d(dim, hidden, 1)
        self.out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.out(self.fc(x))


class RatioBlock(nn.Module):
    # the ratio is annotated float but only works as an int: the failing line is inside
    # Conv2d (called from Mlp); the line that passed the bad value is further out
    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x):
        return x + self.mlp(x)
"""


def test_constructor_repair_reads_the_outer_traceback_lines() -> None:
    r = climb(RATIO, "RatioBlock")
    assert_ok(r)
    assert r["init_args"]["mlp_ratio"] == "4"


CONFIG_FIELDS = """
class TinyConfig:
    def __init__(self, hidden_size=64, prediction_length=None):
        self.hidden_size = hidden_size
        self.prediction_length = prediction_length

    def to_dict(self):
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in ("hidden_size", "prediction_length")})

    def __getattr__(self, name):
        raise AttributeError(f"'TinyConfig' object has no attribute '{name}'")


class Forecaster(nn.Module):
    def __init__(self, config: TinyConfig):
        super().__init__()
        if config.prediction_length is None:
            raise ValueError("The `prediction_length` config needs to be specified.")
        self.drop = nn.Dropout(config.dropout_rate)  # only the parent config defines it
        self.head = nn.Linear(config.hidden_size, config.prediction_length)

    def forward(self, x):
        return self.head(self.drop(x))
"""


def test_config_fields_the_block_asks_for_are_filled() -> None:
    r = climb(CONFIG_FIELDS, "Forecaster")
    assert_ok(r)
    assert r["output_desc"].endswith(", 4]")  # an unset length gets a small, usable value


class _Cfg:
    def __init__(self, hidden_size: int = 64) -> None:
        self.hidden_size = hidden_size

    def to_dict(self) -> dict:
        return dict(vars(self))


def test_config_field_repair_table() -> None:
    cfg = _Cfg()
    fixed = repair(object, {"config": cfg},
                   AttributeError("'_CfgConfig' object has no attribute 'x'"))
    assert fixed is None  # another class's message: not ours to change
    fixed = repair(type("A", (), {}), {"config": cfg},
                   AttributeError("'Holder' object has no attribute 'dropout_rate'"))
    assert fixed is None  # not a *Config/*Cfg class name in the message: left alone

    class TinyConfig(_Cfg):
        pass

    tiny = TinyConfig()
    fixed = repair(object, {"config": tiny},
                   AttributeError("'TinyConfig' object has no attribute 'dropout_rate'"))
    assert fixed is not None and fixed["config"].dropout_rate == 0.0
    assert not hasattr(tiny, "dropout_rate")  # the original config is not touched
    fixed = repair(object, {"config": tiny},
                   AttributeError("'TinyConfig' object has no attribute 'hidden_size'"))
    assert fixed is None  # already set: the message is about something else


class LayeredConfig:
    """Defaults indexed by layer: only the default depth is valid."""

    def __init__(self, hidden_size: int = 1536, num_hidden_layers: int = 4,
                 per_layer: dict | None = None) -> None:
        self.per_layer = per_layer or {3: "global"}
        if any(k >= num_hidden_layers for k in self.per_layer):
            raise ValueError("per_layer keys must be layer indices in range")
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers

    def to_dict(self) -> dict:
        return dict(vars(self))


def test_config_keeps_its_default_depth_when_small_depth_is_rejected() -> None:
    cfg = build_configs(LayeredConfig)[0]
    assert cfg.hidden_size == 64 and cfg.num_hidden_layers == 4


PACKED = """
class VarlenBlock(nn.Module):
    # tokens of all sequences in one [total, dim] matrix, split by cumulative starts
    def __init__(self, dim=64):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, hidden_states, cu_seqlens):
        seq_length = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, -1).unbind(1)
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        outs = [torch.softmax(a @ b.T, -1) @ c for a, b, c in
                zip(q.split(lengths), k.split(lengths), v.split(lengths))]
        return torch.cat(outs)
"""


def test_packed_batches_get_a_token_matrix_and_cumulative_starts() -> None:
    r = climb(PACKED, "VarlenBlock")
    assert_ok(r)
    assert r["input_desc"].startswith("hidden_states: float32[8, 64]")
    assert "cu_seqlens: int32[2]" in r["input_desc"]


HIDDEN = """
class GRUCell2d(nn.Module):
    # ``h`` is the recurrent state, a map like ``x``; ``height`` would be a size
    def __init__(self, hidden=32):
        super().__init__()
        self.convz = nn.Conv2d(hidden, hidden, 3, padding=1)

    def forward(self, h, x):
        z = torch.sigmoid(self.convz(h) + x)
        return (1 - z) * h
"""


def test_a_bare_h_is_a_hidden_state_not_a_side() -> None:
    r = climb(HIDDEN, "GRUCell2d")
    assert_ok(r)
    assert r["input_desc"].startswith("h: float32[2, 32,")


def test_mutually_exclusive_inputs_drop_the_derived_one() -> None:
    import torch

    x = torch.zeros(2, 8, dtype=torch.long)
    probe = Probe((x,), {"decoder_input_ids": x, "decoder_inputs_embeds": torch.zeros(2, 8, 4)}, "")
    exc = ValueError("You cannot specify both decoder_input_ids and decoder_inputs_embeds "
                     "at the same time")
    (fixed,) = adapt(probe, exc)
    assert set(fixed.kwargs) == {"decoder_input_ids"}
    assert adapt(Probe((x,), {}, ""), exc) == []  # nothing to drop


KERNEL = """
class DeformKernel(nn.Module):
    # the raw multi-scale deformable attention kernel: every input must agree with value
    def forward(self, value, value_spatial_shapes, value_spatial_shapes_list, level_start_index,
                sampling_locations, attention_weights, im2col_step):
        batch, _, heads, dim = value.shape
        _, queries, heads, levels, points, _ = sampling_locations.shape
        parts = value.split([h * w for h, w in value_spatial_shapes_list], dim=1)
        grids = 2 * sampling_locations - 1
        out = []
        for i, (h, w) in enumerate(value_spatial_shapes_list):
            v = parts[i].flatten(2).transpose(1, 2).reshape(batch * heads, dim, h, w)
            g = grids[:, :, :, i].transpose(1, 2).flatten(0, 1)
            out.append(F.grid_sample(v, g, align_corners=False))
        w = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
        return (torch.stack(out, dim=-2).flatten(-2) * w).sum(-1)
"""


def test_deformable_kernel_gets_per_head_values_and_a_matching_grid() -> None:
    r = climb(KERNEL, "DeformKernel")
    assert_ok(r)
    assert r["input_desc"].startswith("value: float32[2, 8, 2, ")


def test_multimodal_rope_sections_fit_the_small_head_width() -> None:
    from nnrag.ladder._configs import fit_rope_sections

    class TextConfig:
        ignore_keys_at_rope_validation = frozenset({"mrope_section"})

        def __init__(self) -> None:
            self.hidden_size, self.num_attention_heads = 64, 4
            self.rope_parameters = {"rope_type": "default"}  # the code defaults to [16, 24, 24]

        def to_dict(self) -> dict:
            return dict(vars(self))

    cfg = TextConfig()
    fit_rope_sections(cfg)
    assert cfg.rope_parameters["mrope_section"] == [2, 3, 3]  # sums to head_dim / 2 = 8
    cfg.rope_parameters["mrope_section"] = [32, 48, 48]
    fit_rope_sections(cfg)
    assert sum(cfg.rope_parameters["mrope_section"]) == 8


DATACLASS_CFG = """
from dataclasses import dataclass


@dataclass
class WindowCfg:
    dim_head: int = 16
    window_size: tuple | None = None  # the full model fills it in from the image size
    grid_size: tuple | None = None

    def __post_init__(self):
        if self.window_size is not None:
            self.window_size = (self.window_size, self.window_size) if isinstance(self.window_size, int) else self.window_size
            if self.grid_size is None:
                self.grid_size = self.window_size


class RelBias(nn.Module):
    def __init__(self, window_size, heads):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(window_size[0] * window_size[1], heads))

    def forward(self, x):
        return x + self.table.mean()


class WindowBlock(nn.Module):
    def __init__(self, dim: int, cfg: WindowCfg = WindowCfg()):
        super().__init__()
        assert cfg.window_size == cfg.grid_size
        self.bias = RelBias(cfg.window_size, dim // cfg.dim_head)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.bias(self.proj(x))
"""  # noqa: E501


def test_unset_sizes_of_a_dataclass_config_are_filled_one_at_a_time() -> None:
    r = climb(DATACLASS_CFG, "WindowBlock")
    assert_ok(r)


TYPE_COMMENT = """
from typing import List

from torch import Tensor


class LevelHead(nn.Module):
    # TorchScript-era annotation in a type comment: x is a list of feature maps
    def __init__(self, in_channels=16):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)

    def forward(self, x):
        # type: (List[Tensor]) -> Tensor
        outs = []
        for features in x:
            n, _, h, w = self.conv(features).shape
            outs.append(self.conv(features).reshape(n, -1))
        return torch.cat(outs, dim=1)


class ExtraLevel(nn.Module):
    # per-level lists beside the primary list, and their names
    def forward(self, x: List[Tensor], y: List[Tensor], names: List[str]):
        names.append("pool")
        x.append(F.max_pool2d(x[-1], 1, 2, 0))
        return x, names
"""


@pytest.mark.parametrize("target", ["LevelHead", "ExtraLevel"])
def test_list_annotations_from_type_comments_and_secondary_parameters(target: str) -> None:
    r = climb(TYPE_COMMENT, target)
    assert_ok(r)
    assert r["input_desc"].startswith("x: (float32[2, ")


@pytest.mark.parametrize(
    ("message", "before", "after"),
    [
        # ``x.view(B, heads, -1, 49)``: attention over a fixed 7x7 grid
        ("shape '[2, 8, -1, 49]' is invalid for input of size 524288", (2, 16, 32, 32),
         (2, 16, 7, 7)),
        # ``x.view(B, 14, 14, C)`` on tokens: 196 of them
        ("shape '[2, 14, 14, 64]' is invalid for input of size 1024", (2, 16, 64), (2, 196, 64)),
    ],
)
def test_views_onto_a_fixed_grid_suggest_its_size(message: str, before: tuple,
                                                  after: tuple) -> None:
    from nnrag.ladder._adapt import candidate_shapes

    assert after in candidate_shapes(message, before)


def test_views_onto_no_square_grid_suggest_nothing() -> None:
    from nnrag.ladder._adapt import candidate_shapes

    assert candidate_shapes("shape '[2, 8, -1, 50]' is invalid for input of size 524288",
                            (2, 16, 32, 32)) == []


class PerLayerConfig:
    """Heterogeneous configs raise on a global read of a per-layer field."""

    def __init__(self, hidden_size: int = 1536, num_attention_heads: int = 8) -> None:
        self.hidden_size, self.num_attention_heads = hidden_size, num_attention_heads
        self.rope_parameters = {"mrope_section": [16, 24, 24]}

    def __getattr__(self, name: str) -> object:
        if name == "head_dim":
            raise RuntimeError("'head_dim' is a per-layer attribute")
        raise AttributeError(name)

    def to_dict(self) -> dict:
        return dict(vars(self))


def test_configs_that_refuse_global_reads_are_still_built() -> None:
    from nnrag.ladder._probe_args import _rope

    (cfg, *_) = build_configs(PerLayerConfig)
    import torch

    cos, sin = _rope({}, {"config": cfg}, torch.zeros(2, 8, 64))
    assert cos.shape == (2, 8, 16)  # hidden 64 / 4 heads from the small config
