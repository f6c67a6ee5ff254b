"""The search space: defaults from the declared names, YAML overrides, one-line errors."""

from __future__ import annotations

import pytest

from nnrag.exceptions import SearchSpaceError
from nnrag.tune import default_space, parse_space
from nnrag.tune.space import signature


def test_defaults_follow_the_declared_names() -> None:
    assert set(default_space({"lr", "momentum"})) == {
        "lr", "momentum", "batch_size", "optimizer", "scheduler", "transform"}
    space = default_space({"lr", "momentum", "dropout"})
    assert space["dropout"].high == 0.5 and space["lr"].log and space["lr"].low == 1e-4
    assert space["batch_size"].choices == (16, 32, 64, 128)
    assert space["optimizer"].choices == ("sgd", "adam", "adamw")
    assert space["scheduler"].choices == ("none", "cosine", "step")
    assert space["transform"].choices == ("none", "standardize")


def test_a_point_becomes_a_training_spec_the_engine_accepts() -> None:
    from nnrag.train import parse_spec
    from nnrag.tune.space import trial_spec

    base = {"model": {"file": "m.py"}, "dataset": "digits", "budget": {"epochs": 1},
            "hyperparameters": {"weight_decay": 0.001}}
    spec = trial_spec(base, {"lr": 0.01, "optimizer": "adam", "scheduler": "cosine",
                             "transform": "standardize"})
    assert spec["transform"] == "standardize" and "transform" not in spec["hyperparameters"]
    parsed = parse_spec(spec, "tune")
    assert parsed.transform == "standardize"
    assert (parsed.hyperparameters.optimizer, parsed.hyperparameters.scheduler) == (
        "adam", "cosine")
    assert parsed.hyperparameters.weight_decay == 0.001


def test_overrides_replace_and_add_dimensions() -> None:
    space = parse_space({"lr": {"low": 0.01, "high": 0.05}, "optimizer": {"choices": ["sgd"]},
                         "norm_eps": {"low": 1e-6, "high": 1e-4, "log": True}},
                        {"lr", "norm_eps"})
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (0.01, 0.05, False)
    assert space["optimizer"].choices == ("sgd",) and space["norm_eps"].log
    assert signature(space) != signature(default_space({"lr", "norm_eps"}))


@pytest.mark.parametrize(("data", "words"), [
    ({"lr": {"low": 0.1, "high": 0.01}}, "greater than high"),
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "above 0"),
    ({"lr": {"low": -1, "high": 0.1, "log": True}}, "above 0"),
    ({"lr": {"choices": []}}, "non-empty"),
    ({"lr": {"high": 0.1}}, "both low and high"),
    ({"lr": {"low": 0.1, "high": 0.2, "step": 2}}, "unknown key"),
    ({"lr": 0.1}, "low, high"),
    ({"dropout_aux": {"low": 0, "high": 0.5}}, "not a hyperparameter this model supports"),
    (["lr"], "a mapping"),
])
def test_bad_spaces_are_one_line_errors(data: object, words: str) -> None:
    with pytest.raises(SearchSpaceError, match=words) as info:
        parse_space(data, {"lr", "momentum"})
    assert "\n" not in str(info.value)
