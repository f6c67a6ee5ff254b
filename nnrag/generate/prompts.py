"""Prompt templates (data files under ``templates/``) and fitting a prompt into the context.

One template per pipeline step and style: ``architecture``, ``spec`` and ``repair``, each as
``.completion.txt`` (base models: the text ends where the model's code begins) and
``.chat.txt`` (instruct models: ``[system]``/``[user]`` sections become chat messages).
Templates use ``$name`` placeholders (:class:`string.Template`), so code braces need no
escaping. When a prompt is too long, references are truncated, then dropped, then blocks;
the task, the contract and the output format are never cut.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from nnrag.exceptions import ContextOverflowError, GenerateError
from nnrag.generate.backends.base import Backend, Prompt, Style
from nnrag.generate.compact import cap_lines

CODE_PREFIX = "import torch\nfrom torch import nn\n"  # completion prompts start the module
# A base model shown references with helpers above ``Net`` writes helpers until its token
# budget runs out and never reaches ``Net``; opening ``Net`` in the prompt makes it start there
# (helpers may follow: ``Net`` is only built after the whole module has run).
NET_PREFIX = (CODE_PREFIX + "\n\nclass Net(nn.Module):\n"
              "    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, "
              "device: torch.device) -> None:\n")
MIN_REFERENCE_LINES = 12


@cache
def template(name: str) -> str:
    """The text of ``templates/<name>`` (package data)."""
    try:
        return resources.files("nnrag.generate").joinpath("templates", name).read_text(
            encoding="utf-8")
    except FileNotFoundError:
        raise GenerateError(f"no prompt template {name!r} in nnrag/generate/templates") from None


def render(kind: str, style: Style, values: dict[str, str]) -> Prompt:
    """Fill ``<kind>.<style>.txt``; chat templates split into messages at ``[role]`` lines."""
    text = string.Template(template(f"{kind}.{style}.txt")).safe_substitute(values)
    if style == "completion":
        return Prompt("completion", text=text)
    messages = []
    for m in re.finditer(r"^\[(system|user|assistant)\]\n(.*?)"
                         r"(?=^\[(?:system|user|assistant)\]\n|\Z)", text, re.S | re.M):
        messages.append({"role": m.group(1), "content": m.group(2).strip()})
    if not messages:
        raise GenerateError(f"chat template {kind}.chat.txt has no [system]/[user] sections")
    return Prompt("chat", messages=tuple(messages))


@dataclass(frozen=True)
class Reference:
    """A reference implementation shown to the model (few-shot)."""

    name: str
    family: str
    code: str
    source: str  # "corpus:<file>" or "run:<id>"
    score: float | None = None  # best metric on the task, when trained
    full_code: str | None = None  # before compaction (a verbatim copy of either is no new model)

    def heading(self) -> str:
        acc = f", test accuracy {self.score:.3f}" if self.score is not None else ""
        return f"{self.name} ({self.source}{acc})"


@dataclass(frozen=True)
class BlockRef:
    """A retrieved block: shown by signature, spliced in by name if the model uses it."""

    name: str
    qualname: str
    summary: str  # class line, docstring, __init__ signature
    code: str  # the scope-closed module


def _fence(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def _reference_section(refs: list[Reference], style: Style) -> str:
    if not refs:
        return "(none)\n"
    if style == "completion":
        return "".join(f"\n### {r.heading()}\n\n{_fence(r.code)}\n" for r in refs)
    return "".join(f"\n{i}. {r.heading()}\n{_fence(r.code)}\n" for i, r in enumerate(refs, 1))


def _blocks_section(blocks: list[BlockRef]) -> str:
    if not blocks:
        return ""
    listing = "".join(f"\n{_fence(b.summary)}\n" for b in blocks)
    return string.Template(template("blocks.txt")).safe_substitute(blocks=listing)


@dataclass(frozen=True)
class TaskText:
    task: str
    dataset: str
    dataset_description: str
    in_shape: str
    num_classes: int

    def values(self) -> dict[str, str]:
        return {"task": self.task, "dataset": self.dataset,
                "dataset_description": self.dataset_description,
                "in_shape": self.in_shape, "num_classes": str(self.num_classes),
                "contract": template("contract.md").strip(),
                "spec_format": template("spec_format.md").strip()}


@dataclass(frozen=True)
class Fitted:
    """A prompt that fits, and what had to be cut to make it fit."""

    prompt: Prompt
    tokens: int
    references: tuple[Reference, ...]
    blocks: tuple[BlockRef, ...]
    cuts: tuple[str, ...]
    code_prefix: str


def architecture_prompt(backend: Backend, task: TaskText, references: list[Reference],
                        blocks: list[BlockRef], max_new_tokens: int) -> Fitted:
    """The few-shot architecture prompt, cut down until it fits the model's context."""
    style = backend.style
    prefix = NET_PREFIX if style == "completion" else ""
    refs, blks = list(references), list(blocks)
    cuts: list[str] = []
    budget = backend.context_length - max_new_tokens
    while True:
        values = {**task.values(), "references": _reference_section(refs, style),
                  "blocks_section": _blocks_section(blks), "code_prefix": prefix.rstrip("\n"),
                  "new_heading": "New architecture"}
        prompt = render("architecture", style, values)
        if style == "completion":  # the code the model continues starts on a fresh line
            prompt = Prompt("completion", text=prompt.text.rstrip("\n") + "\n")
        tokens = backend.count_tokens(prompt)
        if tokens <= budget:
            return Fitted(prompt, tokens, tuple(refs), tuple(blks), tuple(cuts), prefix)
        longest = max(refs, key=lambda r: r.code.count("\n"), default=None)
        if longest is not None and longest.code.count("\n") > 2 * MIN_REFERENCE_LINES:
            keep = max(MIN_REFERENCE_LINES, longest.code.count("\n") // 2)
            refs[refs.index(longest)] = replace(longest, code=cap_lines(longest.code, keep))
            cuts.append(f"truncated reference {longest.name} to {keep} lines")
        elif len(refs) > 1:
            cuts.append(f"dropped reference {refs.pop().name}")
        elif blks:
            cuts.append(f"dropped block {blks.pop().name}")
        elif refs:
            cuts.append(f"dropped reference {refs.pop().name}")
        else:
            raise ContextOverflowError(
                f"the prompt's fixed part (task, contract, format) takes {tokens} tokens; with "
                f"{max_new_tokens} new tokens it exceeds the {backend.context_length}-token "
                f"context of {backend.model_id}: use a model with a longer context (--context) "
                "or fewer --max-new-tokens")


def completion_context(fitted: Fitted) -> str:
    """The architecture prompt up to and including its opening code fence."""
    text = fitted.prompt.text
    return (text[: len(text) - len(fitted.code_prefix)]
            if fitted.code_prefix and text.endswith(fitted.code_prefix) else text)


def spec_prompt(backend: Backend, task: TaskText, fitted: Fitted, code: str) -> Prompt:
    values = {**task.values(), "code": code.strip("\n") + "\n"}
    if backend.style == "completion":
        values["context"] = completion_context(fitted)
    return render("spec", backend.style, values)


def repair_prompt(backend: Backend, task: TaskText, fitted: Fitted, code: str, error: str,
                  max_new_tokens: int) -> tuple[Prompt, str]:
    """A prompt asking to fix ``code`` given ``error``; ``(prompt, code prefix)``."""
    style = backend.style
    prefix = CODE_PREFIX if style == "completion" else ""
    values = {**task.values(), "code": code.strip("\n") + "\n", "error": error.strip()[-2500:],
              "code_prefix": prefix.rstrip("\n")}
    for context in ((completion_context(fitted),) if style == "completion" else ("",)) + (
            f"# {task.task} on {task.dataset}\n\n{task.values()['contract']}\n\n```python\n",):
        prompt = render("repair", style, {**values, "context": context})
        if style == "completion":
            prompt = Prompt("completion", text=prompt.text.rstrip("\n") + "\n")
        if backend.count_tokens(prompt) + max_new_tokens <= backend.context_length:
            return prompt, prefix
    raise ContextOverflowError(
        f"the repair prompt does not fit the {backend.context_length}-token context "
        f"of {backend.model_id}")
