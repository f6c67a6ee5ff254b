"""Recorded, messy LLM outputs -> the code and spec the parser must find (or a clear error)."""

from __future__ import annotations

import pytest

from nnrag.generate.parsing import (
    ParseError,
    extract_code,
    extract_spec,
    fenced_blocks,
    parse_answer,
    salvage,
)

NET = "class Net(nn.Module):\n    def forward(self, x):\n        return x\n"
HELPER = "def helper():\n    return 1\n"

CODE_CASES = [
    # (id, answer, prefix, expected code, expected note fragment or None)
    ("plain fence", f"```python\n{NET}```", "", NET, None),
    ("prose around", f"Sure! Here is the model.\n\n```python\n{NET}```\n\nIt uses a residual.",
     "", NET, None),
    ("py tag and bare fence", f"```py\n{NET}```\nspec:\n```\nlr: 0.1\n```", "", NET, None),
    ("several fences, Net in the second", f"```python\n{HELPER}```\nthen\n```python\n{NET}```",
     "", NET, None),
    ("tildes", f"~~~python\n{NET}~~~\n", "", NET, None),
    ("missing closing fence", f"```python\n{NET}", "", NET, "no closing fence"),
    ("indented fence", f"  ```python\n{NET}  ```\n", "", NET, None),
    ("code tags", f"<code>\n{NET}</code>", "", NET, None),
    ("no fence at all", f"I think this works:\n{NET}", "", NET, "no fenced code block"),
    ("completion continues the prefix",
     "    def forward(self, x):\n        return x\n```\nmore text",
     "```python\nclass Net(nn.Module):\n", NET, None),
    ("truncated mid-statement", f"```python\n{NET}    def extra(self):\n        return self.layer(",
     "", NET, "truncated code"),
    ("CRLF-free windows-ish spacing", f"```python\n\n\n{NET}\n```", "", NET, None),
]


@pytest.mark.parametrize(("answer", "prefix", "code", "note"), [c[1:] for c in CODE_CASES],
                         ids=[c[0] for c in CODE_CASES])
def test_extract_code_from_messy_answers(answer: str, prefix: str, code: str,
                                         note: str | None) -> None:
    got, notes = extract_code(answer, prefix=prefix)
    assert got.strip() == code.strip()
    if note is None:
        assert not [n for n in notes if "fence" in n or "truncated" in n]
    else:
        assert any(note in n for n in notes), notes


@pytest.mark.parametrize("answer", ["", "I cannot help with that.", "The answer is 42.\n\nThanks!"])
def test_no_code_is_a_parse_error(answer: str) -> None:
    with pytest.raises(ParseError, match="no code in the answer"):
        extract_code(answer)


SPEC_CASES = [
    ("json fence", '```json\n{"hyperparameters": {"lr": 0.1, "batch_size": 32}}\n```',
     {"hyperparameters": {"lr": 0.1, "batch_size": 32}}),
    ("yaml fence", "```yaml\nhyperparameters:\n  lr: 0.1\n  optimizer: adam\n```",
     {"hyperparameters": {"lr": 0.1, "optimizer": "adam"}}),
    ("json with comments", '```json\n{"lr": 0.1, // step size\n "batch_size": 8}\n```',
     {"lr": 0.1, "batch_size": 8}),
    ("spec tags", "<spec>{\"lr\": 0.5}</spec>", {"lr": 0.5}),
    ("bare object in prose", 'Use {"lr": 0.02, "momentum": 0.8} for training.',
     {"lr": 0.02, "momentum": 0.8}),
    ("last spec wins", '```json\n{"lr": 1}\n```\nbetter:\n```json\n{"lr": 0.1}\n```', {"lr": 0.1}),
    ("unterminated json fence", '```json\n{"lr": 0.3}', {"lr": 0.3}),
]


@pytest.mark.parametrize(("answer", "spec"), [c[1:] for c in SPEC_CASES],
                         ids=[c[0] for c in SPEC_CASES])
def test_extract_spec(answer: str, spec: dict) -> None:
    assert extract_spec(answer) == (spec, None)


@pytest.mark.parametrize(("answer", "why"), [
    ("```python\nclass Net: pass\n```", "no spec block"),
    ('```json\n{"lr": 0.1,,}\n```', "neither valid JSON nor YAML"),
    # a set literal in code is not a spec
    ("```python\nS = {'lr', 'momentum'}\n```", "no spec block"),
])
def test_spec_errors_say_why(answer: str, why: str) -> None:
    spec, reason = extract_spec(answer)
    assert spec is None and why in reason


def test_parse_answer_reports_a_missing_spec_without_raising() -> None:
    parsed = parse_answer(f"```python\n{NET}```")
    assert parsed.code is not None and parsed.spec is None and "no spec" in parsed.spec_error


def test_fenced_blocks_keep_order_and_languages() -> None:
    blocks = fenced_blocks("a\n```python\nx = 1\n```\nb\n```json\n{}\n```\n```\ntail")
    assert [(b.lang, b.body, b.closed) for b in blocks] == [("python", "x = 1", True),
                                                           ("json", "{}", True),
                                                           ("", "tail", False)]


def test_salvage_keeps_parseable_code_and_cuts_truncation() -> None:
    assert salvage("x = 1\n") == ("x = 1\n", False)
    code, trimmed = salvage("x = 1\ny = (\n")
    assert trimmed and code == "x = 1\n"
    assert salvage("(((\n") == ("(((\n", False)
