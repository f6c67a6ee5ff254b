"""The llm sampler's asker: the space's schema reaches a backend that can constrain
decoding (a small model left free rarely writes a valid point), and not one that cannot."""

from __future__ import annotations

from typing import Any

import pytest

from nnrag import tune_sources
from nnrag.generate.backends import Completion
from nnrag.tune.samplers import schema, validate
from nnrag.tune.space import default_space


class FakeBackend:
    style = "completion"

    def __init__(self, supports: bool, answer: str) -> None:
        self.supports_schema = supports
        self.answer = answer
        self.schemas: list[Any] = []

    def generate(self, prompt: Any, sampling: Any, schema: Any = None) -> Any:
        self.schemas.append(schema)
        return Completion(self.answer, 1, 1, 0.0, sampling, "fake", "fake", schema is not None)


@pytest.mark.parametrize("supports", [True, False])
def test_schema_reaches_only_a_backend_that_enforces_it(monkeypatch: pytest.MonkeyPatch,
                                                        supports: bool) -> None:
    space = default_space(None)
    fake = FakeBackend(supports, '{"batch_size": 32, "lr": 0.01, "momentum": 0.9}')
    monkeypatch.setattr("nnrag.generate.make_backend", lambda config: fake)
    ask, parse = tune_sources.llm_asker("llama-cpp", None, 0, schema(space))
    text = ask("tune this")
    assert fake.schemas == [schema(space) if supports else None]
    assert validate(parse(text), space) == {"batch_size": 32, "lr": 0.01, "momentum": 0.9}


@pytest.mark.parametrize(("text", "expected"), [
    ('{"lr": 0.01}', {"lr": 0.01}),                       # constrained: the object itself
    ('{"lr": 0.02}\n```\nmore text', {"lr": 0.02}),      # completion: the fence's body
    ('Sure:\n```json\n{"lr": 0.03}\n```', {"lr": 0.03}),  # chat: a fenced block
    ("no json here", None),
])
def test_parse_reads_raw_fenced_and_unfenced_answers(monkeypatch: pytest.MonkeyPatch,
                                                     text: str, expected: Any) -> None:
    monkeypatch.setattr("nnrag.generate.make_backend", lambda config: FakeBackend(False, ""))
    _, parse = tune_sources.llm_asker("llama-cpp", None, 0)
    assert parse(text) == expected
