"""Probe rules read off forward signatures and configs: before/after, end to end."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnrag.ladder._probe import infer_probes

from .test_ladder_child import assert_ok, climb


@pytest.fixture(autouse=True)
def _scratch(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)


class _Swin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)

    def forward(self, hidden_states, input_dimensions: tuple[int, int]):  # type: ignore[no-untyped-def]
        h, w = input_dimensions
        return self.norm(hidden_states).view(hidden_states.shape[0], h, w, -1)


class _PosEmbed(nn.Module):
    def forward(self, shape: torch.Size, device: torch.device | str, dtype: torch.dtype):  # type: ignore[no-untyped-def]
        b, _, h, w = shape
        return torch.zeros(b, h, w, device=device, dtype=dtype)


class _Rope(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.full_inv_freq = torch.ones(4)

    def forward(self, x, position_ids, layer_type):  # type: ignore[no-untyped-def]
        return getattr(self, f"{layer_type}_inv_freq") * x.mean()


class _CondConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.num_experts = 3
        self.weight = nn.Parameter(torch.randn(3, 8 * 3 * 3 * 3))  # RGB in, 8 out

    def forward(self, x, routing_weights):  # type: ignore[no-untyped-def]
        b, c, h, w = x.shape
        weight = (routing_weights @ self.weight).view(b * 8, c, 3, 3)
        out = nn.functional.conv2d(x.reshape(1, b * c, h, w), weight, groups=b, padding=1)
        return out.view(b, 8, h, w)


class _MisannotatedRope(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(64, 16)  # one 16-wide head

    def forward(self, hidden_states, position_embeddings: torch.Tensor):  # type: ignore[no-untyped-def]
        cos, sin = position_embeddings
        return self.q(hidden_states) * cos + sin


class _SidesEmbed(nn.Module):
    def forward(self, width: int, height: int, device: torch.device | str, dtype: torch.dtype):  # type: ignore[no-untyped-def]
        return torch.zeros(width * height, 4, device=device, dtype=dtype)


class _Fourier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(2, 4, 1)

    def forward(self, B: int, H: int, W: int):  # type: ignore[no-untyped-def]  # noqa: N803
        y = torch.arange(1, H + 1).float().unsqueeze(1).repeat(1, 1, W)
        return self.proj(torch.stack((y, y), 1).expand(B, 2, H, W))


class _Table(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(64, 4))

    def forward(self, seqlen):  # type: ignore[no-untyped-def]
        return self.table[:seqlen, :]


class _Captioner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.embed = nn.Embedding(10, 8)

    def forward(self, pixel_values, input_ids):  # type: ignore[no-untyped-def]
        return self.conv(pixel_values).mean((2, 3))[:, None] + self.embed(input_ids)


def _first_ok(module: nn.Module, kwargs: dict, limit: int = 12) -> object:
    for p in infer_probes(module, kwargs, {}, limit):
        try:
            module(*p.args, **p.kwargs)
            return p
        except Exception:
            continue
    return None


RULES = [
    # (module, init kwargs, text the first working probe's description must contain)
    (_Swin(), {}, "input_dimensions: (4, 4)"),  # a (height, width) pair, tokens = h * w
    (_PosEmbed(), {}, "shape: (2, "),  # ``torch.Size`` primary: the probe's shape
    (_Rope(), {"config": SimpleNamespace(layer_types=["full", "sliding"], to_dict=dict)},
     "layer_type: 'full'"),  # the first entry of the config's ``layer_types``
    (_CondConv(), {}, "routing_weights: float32[2, 3]"),  # one weight per expert per sample
    # annotated as one tensor, but unpacked as ``cos, sin = position_embeddings``: a pair
    (_MisannotatedRope(), {}, "position_embeddings: (float32["),
    (_SidesEmbed(), {}, "width: "),  # int sides, not tensors
    (_Table(), {}, "seqlen: 8"),  # a length by name
    (_Captioner(), {}, "input_ids: int64[2, 8]"),  # ids beside an image, not a float copy
    (_Fourier(), {}, "H: "),  # ``B: int`` (a class annotation, not a string) is an int too
]


@pytest.mark.parametrize(("module", "kwargs", "expected"), RULES)
def test_signature_rules_give_a_working_probe(module: nn.Module, kwargs: dict, expected: str):
    probe = _first_ok(module, kwargs)
    assert probe is not None
    assert expected in probe.desc  # type: ignore[attr-defined]


def test_device_and_dtype_follow_the_probe() -> None:
    probe = _first_ok(_PosEmbed(), {})
    assert probe.kwargs["device"] == torch.device("cpu")  # type: ignore[attr-defined]
    assert probe.kwargs["dtype"] == torch.float32  # type: ignore[attr-defined]


SINE = """
class SineEmbed(nn.Module):
    # builds an embedding for a feature map it only knows by shape
    def forward(self, shape: torch.Size, device: torch.device, dtype: torch.dtype):
        b, _, h, w = shape
        y = torch.arange(h, dtype=dtype, device=device)[None, :, None].expand(b, h, w)
        return torch.stack((y.sin(), y.cos()), 1)
"""


def test_ladder_passes_a_shape_only_position_embedding() -> None:
    r = climb(SINE, "SineEmbed")
    assert_ok(r)
    assert r["input_desc"].startswith("shape: (2, ")


LEGACY_TUPLE = """
class Block(nn.Module):
    # legacy annotation: one tensor, typed as a tuple of tensors
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, hidden_states: tuple[torch.Tensor] | None):
        return self.norm(hidden_states)
"""


def test_ladder_unwraps_a_list_used_as_a_tensor() -> None:
    r = climb(LEGACY_TUPLE, "Block")
    assert_ok(r)
    assert r["input_desc"].startswith("float32[")


COMPOSE = """
class Compose(nn.Module):
    # a container of callables: an int guess for ``transforms`` breaks at ``t(x)``
    def __init__(self, transforms):
        super().__init__()
        self.transforms = transforms
        self.proj = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        for t in self.transforms:
            x = t(x)
        return self.proj(x)
"""


def test_ladder_builds_a_container_of_callables() -> None:
    r = climb(COMPOSE, "Compose")
    assert_ok(r)
    assert "Identity" in r["init_args"]["transforms"]


class _Deformable(nn.Module):
    """Multi-scale deformable attention in miniature: the layout must match the values."""

    def __init__(self) -> None:
        super().__init__()
        self.n_levels = 3
        self.value_proj = nn.Linear(16, 16)

    def forward(self, hidden_states, encoder_hidden_states=None, reference_points=None,  # type: ignore[no-untyped-def]
                spatial_shapes=None, spatial_shapes_list=None, level_start_index=None):
        assert sum(h * w for h, w in spatial_shapes_list) == encoder_hidden_states.shape[1]
        assert spatial_shapes.shape == (self.n_levels, 2) and level_start_index[0] == 0
        value = self.value_proj(encoder_hidden_states)
        pts = reference_points[:, :, :, None, :].expand(-1, -1, -1, 1, -1)
        assert pts.shape[2] == self.n_levels
        return value * pts.mean()


def test_deformable_attention_gets_a_consistent_multiscale_layout() -> None:
    probe = _first_ok(_Deformable(), {"hidden_size": 16})
    assert probe is not None
    shapes = probe.kwargs["spatial_shapes_list"]  # type: ignore[attr-defined]
    assert len(shapes) == 3
    assert "reference_points: float32[2, " in probe.desc  # type: ignore[attr-defined]
