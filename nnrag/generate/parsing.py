"""Pull the model code and the training spec out of messy LLM output.

LLM answers mix prose, several fenced blocks (``python``, ``py``, bare, ``json``,
``yaml``), tags (``<code>``, ``<spec>``), unterminated fences (the model ran out of tokens
or a stop string cut the closing fence) and truncated code. Parsing never executes
anything: it reads text, and the code only ever runs later in the sandbox.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from nnrag.exceptions import GenerateError


class ParseError(GenerateError):
    """No usable code (or spec) in an LLM answer; the message says what was found instead."""


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*$", re.M)
_TAG = re.compile(r"<(code|python|nn|spec|json|yaml)>\s*(.*?)\s*(?:</\1>|\Z)", re.S | re.I)
_CODE_LANGS = {"python", "py", "python3", "", "pytorch", "torch"}
_SPEC_LANGS = {"json", "yaml", "yml", "jsonc"}


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    closed: bool


@dataclass(frozen=True)
class Parsed:
    """Code and spec found in one answer, with what had to be done to get them."""

    code: str | None
    spec: dict[str, Any] | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    spec_error: str | None = None


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block in order; an unterminated last fence runs to the end."""
    blocks: list[Block] = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if not m:
            break
        fence, lang = m.group(1), m.group(2).lower()
        start = m.end() + 1
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$",
                           re.M).search(text, start)
        if close is None:
            blocks.append(Block(lang, text[start:].rstrip(), False))
            break
        blocks.append(Block(lang, text[start:close.start()].rstrip("\n"), True))
        pos = close.end()
    return blocks


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^class\s+{name}\b", code, re.M) is not None


def salvage(code: str) -> tuple[str, bool]:
    """Code that parses: drop trailing lines of a truncated answer until it does.

    Returns ``(code, trimmed)``; unparseable code comes back unchanged (the contract
    check reports the syntax error with its line).
    """
    try:
        ast.parse(code)
        return code, False
    except SyntaxError:
        pass
    lines = code.splitlines()
    for cut in range(len(lines) - 1, 0, -1):
        candidate = "\n".join(lines[:cut]).rstrip()
        try:
            ast.parse(candidate)
        except SyntaxError:
            continue
        return candidate + "\n", True
    return code, False


def extract_code(text: str, *, prefix: str = "") -> tuple[str, list[str]]:
    """The model's code: the fenced (or tagged) block that defines ``Net``, else the best guess.

    ``prefix`` is the part of the answer the prompt already wrote (completion prompts end
    with an opening fence and the first lines of the module).
    """
    notes: list[str] = []
    full = prefix + text
    candidates = [b for b in fenced_blocks(full) if b.lang in _CODE_LANGS]
    candidates += [Block("tag", m.group(2), True) for m in _TAG.finditer(full)
                   if m.group(1).lower() in ("code", "python", "nn")]
    with_net = [b for b in candidates if _defines(b.body, "Net")]
    if with_net:
        best = max(with_net, key=lambda b: len(b.body))
    elif candidates:
        best = max(candidates, key=lambda b: len(b.body))
    elif re.search(r"^(class|def|import|from)\s", full, re.M):
        start = re.search(r"^(class|def|import|from)\s", full, re.M)
        assert start is not None
        best = Block("", full[start.start():], False)
        notes.append("no fenced code block: took the code from the answer's text")
    else:
        raise ParseError("no code in the answer: no fenced block, no tags, no class or def")
    if not best.closed and best.lang != "tag":
        notes.append("code block had no closing fence")
    code, trimmed = salvage(best.body.strip("\n") + "\n")
    if trimmed:
        notes.append("truncated code: dropped trailing lines that did not parse")
    return code, notes


def _load_mapping(body: str) -> dict[str, Any] | None:
    body = re.sub(r"//[^\n]*", "", body) if body.lstrip().startswith("{") else body
    for loader in (json.loads, yaml.safe_load):
        try:
            data = loader(body)
        except (ValueError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            return data
    return None


def extract_spec(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The training spec as a mapping (JSON or YAML, fenced, tagged or bare).

    Returns ``(mapping, None)`` or ``(None, why not)``.
    """
    bodies = [b.body for b in fenced_blocks(text) if b.lang in _SPEC_LANGS]
    bodies += [m.group(2) for m in _TAG.finditer(text)
               if m.group(1).lower() in ("spec", "json", "yaml")]
    if not bodies:  # a bare JSON object with hyperparameters somewhere in the prose (not in code)
        prose = text
        for b in fenced_blocks(text):
            prose = prose.replace(b.body, "")
        bodies += [m.group(0) for m in re.finditer(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", prose)
                   if re.search(r"[\"']?(lr|hyperparameters)[\"']?\s*:", m.group(0))]
    if not bodies:
        return None, "no spec block (```json or ```yaml) in the answer"
    for body in reversed(bodies):  # the last one is the model's final word
        data = _load_mapping(body)
        if data is not None:
            return data, None
    return None, "the spec block is neither valid JSON nor YAML"


def parse_answer(text: str, *, prefix: str = "") -> Parsed:
    """Code and spec from one answer; a missing spec is reported, not raised."""
    code, notes = extract_code(text, prefix=prefix)
    spec, why = extract_spec(prefix + text)
    return Parsed(code, spec, tuple(notes), why)
