"""Config validators say which value they want: before/after table for ``_fix_from_message``."""

from __future__ import annotations

import pytest

from nnrag.ladder._configs import _fix_from_message

ACCEPTED = {"hidden_size", "num_attention_heads", "num_key_value_heads", "num_heads",
            "head_dim", "expand", "adapter_input_size"}
CASES = [
    # (kwargs before, validator message, kwargs after)
    ({"num_attention_heads": 4, "num_key_value_heads": 2},
     "num_attention_heads (4) must be the same as num_key_value_heads (2)",
     {"num_attention_heads": 4, "num_key_value_heads": 4}),
    ({"hidden_size": 64, "num_heads": 4, "head_dim": 16},
     "Inconsistent configuration: hidden_size * expand (128) must equal num_heads * head_dim "
     "(64).", {"hidden_size": 64, "num_heads": 8, "head_dim": 16}),
    ({"hidden_size": 64}, "ValueError: adapter_input_size must match hidden_size",
     {"hidden_size": 64, "adapter_input_size": 64}),
]


@pytest.mark.parametrize(("before", "message", "after"), CASES)
def test_validator_message_fixes_config(before: dict, message: str, after: dict) -> None:
    assert _fix_from_message(before, message, ACCEPTED) == after


def test_unfixable_messages_give_nothing() -> None:
    assert _fix_from_message({"hidden_size": 64}, "expects a linear layer", ACCEPTED) is None
    # a factor we did not set cannot be solved for; an unknown key is not invented
    assert _fix_from_message({}, "a * b (128) must equal c * d (64)", ACCEPTED) is None
    assert _fix_from_message({"hidden_size": 8}, "foo must match hidden_size", ACCEPTED) is None
