"""Probe repair from forward error messages: before/after table, property, end to end."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnrag.ladder._adapt import MAX_NUMEL, adapt, candidate_shapes
from nnrag.ladder._probe import Probe

from .test_ladder_child import assert_ok, climb


@pytest.fixture(autouse=True)
def _scratch(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """``climb`` writes the block module into the working folder: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)

CASES = [
    # (message, input shape, one of the first two suggested shapes)
    ("The size of tensor a (8) must match the size of tensor b (197) at non-singleton "
     "dimension 1", (2, 8, 64), (2, 197, 64)),
    ("The size of tensor a (64) must match the size of tensor b (49) at non-singleton "
     "dimension 2", (2, 32, 8, 8), (2, 32, 7, 7)),
    ("mat1 and mat2 shapes cannot be multiplied (2x512 and 2048x10)", (2, 512), (2, 2048)),
    ("mat1 and mat2 shapes cannot be multiplied (2x2048 and 8192x10)", (2, 32, 8, 8),
     (2, 128, 8, 8)),
    ("Given groups=1, weight of size [16, 3, 3, 3], expected input[2, 64, 32, 32] to have 3 "
     "channels, but got 64 channels instead", (2, 64, 32, 32), (2, 3, 32, 32)),
    ("Sizes of tensors must match except in dimension 1. Expected size 16 but got size 15 "
     "for tensor number 2 in the list.", (2, 8, 15, 15), (2, 8, 16, 16)),
    ("split_with_sizes expects split_sizes to sum exactly to 64 (input tensor's size at "
     "dimension -1), but got split_sizes=[32, 32, 32]", (2, 8, 64), (2, 8, 96)),
    ("Given normalized_shape=[64], expected input with shape [*, 64], but got input of "
     "size[2, 64, 8, 8]", (2, 64, 8, 8), (2, 8, 8, 64)),
    ("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
     "[2, 16, 32]", (2, 16, 32), (2, 32, 4, 4)),
    ("expected 4D input (got 3D input)", (2, 64, 8), (2, 64, 8, 8)),
    ("Calculated padded input size per channel: (2 x 2). Kernel size: (3 x 3). Kernel size "
     "can't be greater than actual input size", (2, 8, 2, 2), (2, 8, 4, 4)),
    ("Input height (32) doesn't match model (224).", (2, 3, 32, 32), (2, 3, 224, 224)),
    ("Input height (30) should be divisible by patch size (4).", (2, 3, 30, 30),
     (2, 3, 32, 32)),
    ("Whisper expects the mel input features to be of length 3000, but found 100.",
     (2, 80, 100), (2, 80, 3000)),
    # the block adds the channel axis itself (``x.unsqueeze(1)``): drop the probe's
    ("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
     "[2, 1, 1, 32, 32]", (2, 1, 32, 32), (2, 32, 32)),
    # ``B, C, H, W = x.shape`` on tokens, ``B, N, C = x.shape`` on a map
    ("not enough values to unpack (expected 4, got 3)", (2, 64, 16), (2, 16, 8, 8)),
    ("too many values to unpack (expected 3)", (2, 16, 8, 8), (2, 16, 64)),
    # multiple choice: ``logits.view(-1, input_ids.shape[1])`` wants [B, choices, L] ids
    ("shape '[-1, 8]' is invalid for input of size 2", (2, 8), (2, 2, 8)),
    ("Input image tensor permitted channel values are [1, 3], but found 64", (2, 64, 32, 32),
     (2, 3, 32, 32)),
]


@pytest.mark.parametrize(("message", "before", "after"), CASES)
def test_message_suggests_shape(message: str, before: tuple, after: tuple) -> None:
    assert after in candidate_shapes(message, before)[:2]


def test_unrelated_message_suggests_nothing() -> None:
    assert candidate_shapes("division by zero", (2, 8, 64)) == []
    assert adapt(Probe((torch.randn(2, 3),)), ZeroDivisionError("division by zero")) == []


def test_lookalike_tensors_and_sizes_follow_the_primary() -> None:
    x = torch.randn(2, 8, 64)
    probe = Probe((x,), {"key": x.clone(), "ids": torch.arange(8).expand(2, 8), "n": 8,
                         "flag": True, "mask": None})
    exc = RuntimeError("The size of tensor a (8) must match the size of tensor b (16) at "
                       "non-singleton dimension 1")
    (new, *_) = adapt(probe, exc)
    assert new.args[0].shape == (2, 16, 64)
    assert new.kwargs["key"].shape == (2, 16, 64)
    assert new.kwargs["ids"].shape == (2, 16) and new.kwargs["ids"].dtype == torch.long
    assert int(new.kwargs["ids"].max()) < 8  # ids stay inside the original range
    assert new.kwargs["n"] == 16 and new.kwargs["flag"] is True and new.kwargs["mask"] is None
    assert "float32[2, 16, 64]" in new.desc


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.integers(1, 300), min_size=2, max_size=5).map(tuple),
    st.integers(0, 5000),
    st.integers(0, 5000),
    st.sampled_from([m for m, _, _ in CASES]),
)
def test_suggestions_are_new_positive_and_bounded(
    shape: tuple, a: int, b: int, template: str
) -> None:
    import re

    numbers = iter([a, b] * 8)
    message = re.sub(r"\d+", lambda _: str(next(numbers)), template)
    for new in candidate_shapes(message, shape):
        assert new != shape
        assert all(isinstance(d, int) and d > 0 for d in new)
        assert torch.Size(new).numel() <= MAX_NUMEL


WINDOW = """
class WindowBias(nn.Module):
    # a relative-position table for one fixed 7x7 window: the probe cannot guess the 49
    def __init__(self, dim):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 49, dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(x + self.bias)
"""


def test_ladder_repairs_a_fixed_token_count() -> None:
    r = climb(WINDOW, "WindowBias")
    assert_ok(r)
    assert "[2, 49, " in r["input_desc"]


HEAD = """
class FlatHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))
"""


def test_ladder_repairs_a_flattening_head_in_two_steps() -> None:
    r = climb(HEAD, "FlatHead")
    assert_ok(r)
    assert r["input_desc"].endswith("[2, 3, 7, 7]")


STAGES = """
class Stages(nn.Module):
    # per-stage lists: a scalar guess for ``depths`` breaks at ``for d in depths``
    def __init__(self, dims, depths, layout=2, mlp_ratio=None):
        super().__init__()
        blocks = []
        for d in layout:
            blocks += [nn.Linear(dims, dims) for _ in range(d)]
        self.blocks = nn.Sequential(*blocks)
        self.hidden = nn.Linear(dims, int(dims * mlp_ratio))

    def forward(self, x):
        return self.hidden(self.blocks(x))
"""


def test_constructor_repair_from_the_blamed_line() -> None:
    r = climb(STAGES, "Stages")
    assert_ok(r)
    args = r["init_args"]
    assert args["dims"] == "16"  # a tuple guess, narrowed by ``nn.Linear(dims, dims)``
    assert args["layout"] == "[2, 2, 2, 2]"  # ``for d in layout``
    assert args["mlp_ratio"] not in ("None", None)  # ``dims * mlp_ratio``


NEEDS_TENSOR = """
class Offsets(nn.Module):
    # ``reference_points`` has no telling name or annotation: the probe passes None first
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, reference_points):
        return self.proj(x + reference_points.sigmoid())
"""


def test_ladder_fills_a_none_argument_the_failing_line_uses() -> None:
    r = climb(NEEDS_TENSOR, "Offsets")
    assert_ok(r)
    assert "reference_points: float32[" in r["input_desc"]


def test_off_by_one_branches_suggest_odd_sides() -> None:
    message = ("Sizes of tensors must match except in dimension 1. Expected size 16 but got "
               "size 15 for tensor number 2 in the list.")
    assert (2, 8, 35, 35) in candidate_shapes(message, (2, 8, 32, 32))


OPTIONAL_MEMORY = """
class CrossAttn(nn.Module):
    # ``encoder_hidden_states`` defaults to None, but the block cannot run without it
    def __init__(self, dim):
        super().__init__()
        self.q = nn.Linear(dim, dim)

    def forward(self, x, encoder_hidden_states=None):
        return self.q(x) @ encoder_hidden_states.transpose(1, 2)
"""


def test_ladder_fills_an_optional_none_the_failing_line_uses() -> None:
    r = climb(OPTIONAL_MEMORY, "CrossAttn")
    assert_ok(r)
    assert "encoder_hidden_states: float32[" in r["input_desc"]


def test_unpack_mismatch_in_the_wrong_direction_suggests_nothing() -> None:
    assert candidate_shapes("not enough values to unpack (expected 2, got 3)", (2, 8, 4)) == []
    assert candidate_shapes("not enough values to unpack (expected 4, got 2)", (2, 8, 4)) == []


PADDING_MASK = """
class ConvFFN(nn.Module):
    # the mask multiplies the features: an attention-style [B, L] mask does not broadcast
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, padding_mask):
        return self.proj(x * padding_mask)
"""


def test_ladder_fills_a_multiplying_mask_with_broadcastable_ones() -> None:
    r = climb(PADDING_MASK, "ConvFFN")
    assert_ok(r)
    assert "padding_mask: float32[" in r["input_desc"]


def test_byte_image_ops_get_uint8_probes() -> None:
    x = torch.randn(2, 3, 8, 8)
    exc = TypeError("Only torch.uint8 image tensors are supported, but found torch.float32")
    (new,) = adapt(Probe((x,)), exc)
    assert new.args[0].dtype == torch.uint8 and new.args[0].shape == x.shape


def test_rotary_pairs_lose_their_batch_axis_when_it_lands_on_the_heads() -> None:
    x = torch.randn(2, 8, 64)
    pair = (torch.ones(2, 8, 16), torch.zeros(2, 8, 16))
    exc = RuntimeError("The size of tensor a (4) must match the size of tensor b (2) at "
                       "non-singleton dimension 1")
    (new,) = adapt(Probe((x,), {"position_embeddings": pair}), exc)
    cos, sin = new.kwargs["position_embeddings"]
    assert cos.shape == (8, 16) and sin.shape == (8, 16)
    assert new.args[0] is x
    # a clash that does not involve the batch size is a shape question, not a rope one
    other = RuntimeError("The size of tensor a (4) must match the size of tensor b (3) at "
                         "non-singleton dimension 1")
    assert all(p.kwargs["position_embeddings"][0].dim() == 3
               for p in adapt(Probe((x,), {"position_embeddings": pair}), other))


NAMED_REQUIRED = """
class Decoder(nn.Module):
    # optional in the signature, required by a validation message that names it
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, memory=None):
        if memory is None:
            raise ValueError("memory must be given for cross-attention layers")
        return self.proj(x) + memory
"""


def test_ladder_fills_an_argument_a_validation_message_asks_for() -> None:
    r = climb(NAMED_REQUIRED, "Decoder")
    assert_ok(r)
    assert "memory: float32[" in r["input_desc"]
