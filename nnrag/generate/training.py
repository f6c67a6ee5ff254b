"""What ``nnrag generate`` shows a model, offered to the learning loop (injected, not imported).

``nnrag learn`` fine-tunes a model on examples that must look exactly like the prompts
``nnrag generate`` sends, and scores what a model writes the way ``generate`` reads it.
``learn`` is a sibling stage and may not import ``generate``; the workspace hands it a
:class:`TrainingFormat` built here instead. It renders the completion-style architecture
prompt (task, dataset, shape, references, contract) for a set of references, rewrites a
proven program into the answer a model continuing that prompt would write (the prompt
opens ``class Net`` with the contract's ``__init__`` signature, so the answer starts
inside ``__init__``), extracts code from a completion as the pipeline does, and probes
programs in the sandbox with the pipeline's probe (build, forward, backward on the
dataset's shape).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from nnrag.exceptions import ContextOverflowError
from nnrag.generate.backends.base import Backend, Completion, Prompt, Sampling
from nnrag.generate.compact import _span, compact_code
from nnrag.generate.fixes import fix_code, structural_problem
from nnrag.generate.parsing import ParseError, extract_code
from nnrag.generate.prompts import (
    CODE_PREFIX,
    NET_PREFIX,
    BlockRef,
    Reference,
    architecture_prompt,
    repair_prompt,
    template,
)

ANSWER_END = "```\n"  # the completion prompt opened a fence; generate stops at its close
# What an "improve" example's repair prompt says about its parent (in place of a failure).
IMPROVE_NOTE = ("it trains to test {metric} {score:.4f} on {dataset}; change it so that it "
                "trains better")
PROBE_ENTRY = "nnrag.generate._probe:run"
_CANONICAL_IMPORTS = ("import torch", "from torch import nn")


class ProgramLike(Protocol):
    """A reference program: what the learning loop's programs provide."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def code(self) -> str: ...

    @property
    def source(self) -> str: ...


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (code is ~3.5 characters a token for BPE vocabularies)."""
    return max(1, int(len(text) / 3.5))


class _Counter(Backend):
    """A backend that only counts tokens: prompt fitting without a loaded model."""

    name = "count-only"

    def __init__(self, count: Callable[[str], int], context: int, model_id: str) -> None:
        self._count, self.context_length, self.model_id = count, context, model_id
        self.style = "completion"

    def count_tokens(self, prompt: Prompt) -> int:
        return self._count(prompt.flat())

    def generate(self, prompt: Prompt, sampling: Sampling,
                 schema: dict[str, Any] | None = None) -> Completion:
        raise NotImplementedError("a token counter does not generate")


def as_answer_program(code: str) -> str | None:
    """``code`` rewritten to start with the prompt's ``NET_PREFIX`` (None: not possible).

    Compacted as references are (no docstrings or comments, no harness methods), ``Net``
    first with the contract's ``__init__`` signature, every other top-level statement after
    it in its order (``Net`` is only built after the whole module ran). Whether the
    rewritten module still runs is the probe's question, not this function's.
    """
    code = compact_code(code)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = code.splitlines()
    net = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Net"), None)
    if (net is None or net.decorator_list
            or lines[net.lineno - 1].strip() != "class Net(nn.Module):"):
        return None
    init = net.body[0]
    if not (isinstance(init, ast.FunctionDef) and init.name == "__init__") or init.decorator_list:
        return None
    args = init.args
    names = [a.arg for a in args.args]
    if (names != ["self", "in_shape", "out_shape", "prm", "device"] or args.vararg or args.kwarg
            or args.kwonlyargs or args.defaults or init.col_offset != 4):
        return None
    first = init.body[0].lineno - 1
    if first < init.lineno:  # body on the def line
        return None
    body = lines[first: net.end_lineno]
    others = []
    for node in tree.body:
        if node is net:
            continue
        start, end = _span(node)
        text = "\n".join(lines[start:end])
        if text.strip() in _CANONICAL_IMPORTS:
            continue
        others.append(text)
    program = NET_PREFIX + "\n".join(body) + "\n"
    if others:
        program += "\n\n" + "\n\n".join(others) + "\n"
    try:
        ast.parse(program)
    except SyntaxError:
        return None
    return program


class TrainingFormat:
    """The generate prompt format for one task and dataset, at a given context size."""

    def __init__(self, task: str, dataset: str, *, max_length: int = 1024,
                 count_tokens: Callable[[str], int] | None = None, tokenizer_id: str = "approx",
                 probe_wall_s: float = 60.0, jobs: int = 1, blocks: int = 0,
                 index_db: Path | None = None) -> None:
        from nnrag.generate.pipeline import task_text

        self.task, self.info = task_text(task, dataset)
        # ``--blocks``: retrieved from the index at ``index_db`` exactly as generate's
        # pipeline retrieves them for a prompt's references (none without an index)
        self.blocks, self.index_db = blocks, index_db
        self._retrieved: dict[tuple[str, ...], list[BlockRef]] = {}
        self.max_length = max_length
        self.count = count_tokens or approx_tokens
        self.tokenizer_id = tokenizer_id
        self.probe_wall_s, self.jobs = probe_wall_s, jobs
        self.in_shape = (8, *(int(v) for v in self.info.in_shape))
        self.num_classes = int(self.info.num_classes)

    def describe(self) -> dict[str, Any]:
        """What fixes the format (the dataset manifest records it)."""
        text = "".join(template(n) for n in ("architecture.completion.txt", "contract.md",
                                              "spec_format.md")) + NET_PREFIX
        return {"task": self.task.task, "dataset": self.task.dataset, "style": "completion",
                "in_shape": list(self.in_shape), "num_classes": self.num_classes,
                "max_length": self.max_length, "tokenizer": self.tokenizer_id,
                "blocks": self.blocks,
                "index": str(self.index_db) if self.blocks and self.index_db else None,
                "blocks_template_sha1": hashlib.sha1(template("blocks.txt").encode()).hexdigest(),
                "templates_sha1": hashlib.sha1(text.encode()).hexdigest(),
                "improve_template_sha1": hashlib.sha1((template("repair.completion.txt")
                                                       + IMPROVE_NOTE).encode()).hexdigest()}

    def answer(self, code: str) -> str | None:
        """The completion that continues the prompt with ``code`` (then closes the fence)."""
        program = as_answer_program(code)
        return None if program is None else program[len(NET_PREFIX):] + ANSWER_END

    def program(self, answer: str) -> str:
        """The module an answer stands for (the prompt's prefix plus the answer's code)."""
        return NET_PREFIX + answer.split("```", 1)[0]

    def prompt(self, references: Sequence[ProgramLike], answer: str) -> str | None:
        """The architecture prompt showing ``references``, cut to fit ``max_length`` with the
        answer (as ``generate`` cuts it for a small context); None when it cannot fit."""
        refs = [Reference(r.name, r.family, compact_code(r.code), r.source, full_code=r.code)
                for r in references]
        counter = _Counter(self.count, self.max_length, self.tokenizer_id)
        try:
            fitted = architecture_prompt(counter, self.task, refs, self._blocks_for(refs),
                                         self.count(answer))
        except ContextOverflowError:
            return None
        if not fitted.references and refs:
            return None
        return fitted.prompt.text

    def _blocks_for(self, refs: list[Reference]) -> list[BlockRef]:
        """The blocks generate's pipeline retrieves for a prompt showing ``refs`` (lexical
        search of the index: deterministic), cached by the references' names as there."""
        if self.blocks <= 0 or self.index_db is None:
            return []
        from nnrag.generate.references import retrieve_blocks

        key = tuple(r.name for r in refs)
        if key not in self._retrieved:
            self._retrieved[key] = retrieve_blocks(self.index_db, self.task.task, refs,
                                                   self.blocks)[0]
        return list(self._retrieved[key])

    def blocks_in(self, prompt: str) -> bool:
        """Whether ``prompt`` shows retrieved blocks (its blocks section survived fitting)."""
        heading = template("blocks.txt").strip().splitlines()[0]
        return heading in prompt

    def improve_prompt(self, references: Sequence[ProgramLike], parent: str, score: float,
                       answer: str, metric: str = "accuracy") -> str | None:
        """generate's repair prompt (completion style) asking to improve ``parent`` (an
        answer, as :meth:`answer` gives it) that trained to ``score``; its context is the
        architecture prompt showing ``references``, as generate's repair prompt is; ``score``
        is the parent's best ``metric``. Cut to
        fit ``max_length`` with :meth:`improve_completion` of ``answer``; None when it
        cannot fit. Ends with the opened fence and :data:`CODE_PREFIX`."""
        refs = [Reference(r.name, r.family, compact_code(r.code), r.source, full_code=r.code)
                for r in references]
        counter = _Counter(self.count, self.max_length, self.tokenizer_id)
        new_tokens = self.count(self.improve_completion(answer))
        note = IMPROVE_NOTE.format(metric=metric, score=score, dataset=self.task.dataset)
        try:
            fitted = architecture_prompt(counter, self.task, refs, self._blocks_for(refs),
                                         new_tokens)
            prompt, _prefix = repair_prompt(counter, self.task, fitted, self.program(parent),
                                            note, new_tokens)
        except ContextOverflowError:
            return None
        return prompt.text

    def improve_completion(self, answer: str) -> str:
        """The completion of an improve prompt that writes ``answer``'s program: the repair
        prompt opens the module with :data:`CODE_PREFIX`, so ``Net``'s head comes first."""
        return NET_PREFIX[len(CODE_PREFIX):] + answer

    def code_from(self, completion: str) -> str | None:
        """The code of a completion as ``generate`` reads it (None: no parse)."""
        try:
            code, _ = extract_code(completion, prefix="```python\n" + NET_PREFIX)
        except ParseError:
            return None
        fixed, _ = fix_code(code)
        try:
            ast.parse(fixed)
        except SyntaxError:
            return None
        return None if structural_problem(fixed) else fixed

    def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]:
        """generate's sandbox probe (build, forward, backward) of each program."""
        from nnrag.sandbox import Limits, run_many
        from nnrag.train.spec import DECLARED_DEFAULTS, Hyperparameters

        if not codes:
            return []
        hp = Hyperparameters()
        prm = {**DECLARED_DEFAULTS, **hp.prm(), "batch": hp.batch_size, "transform": "norm"}
        payloads = [{"code": code, "module_name": f"nnrag_learn_{i}",
                     "in_shape": list(self.in_shape), "num_classes": self.num_classes,
                     "prm": prm} for i, code in enumerate(codes)]
        results = run_many(PROBE_ENTRY, payloads,
                           limits=Limits(wall_s=self.probe_wall_s, memory_mb=2048),
                           jobs=max(1, self.jobs), keep_workers=True)
        out = []
        for result in results:
            if result.ok and isinstance(result.value, dict):
                out.append(dict(result.value))
            else:
                out.append({"ok": False, "stage": result.status,
                            "error": (f"{result.error_type}: {result.error_message}"
                                      if result.error_type else result.status)})
        return out


def base_id(model: str | None) -> str:
    """The id the transformers backend reports for ``--model`` (what adapters are keyed by),
    without loading or converting anything."""
    from nnrag.generate.models import EMBEDDED_NAME, local_model_path

    if model is None:
        return EMBEDDED_NAME
    path = local_model_path(model)
    return model if path is None else str(path)


def base_source(model: str | None) -> tuple[str, str]:
    """``(folder or hub id that transformers loads, display id)`` for ``--model``, as the
    transformers backend resolves it (the embedded GGUF becomes its cached bf16 folder)."""
    from nnrag.generate.backends.base import BackendConfig
    from nnrag.generate.backends.hf import TransformersBackend

    # a bf16 load always resolves to a folder (GGUF files are converted once, cached)
    source, _gguf, display = TransformersBackend._source(BackendConfig(model=model, dtype="bf16"))
    return source, display


__all__ = ["ANSWER_END", "CODE_PREFIX", "IMPROVE_NOTE", "NET_PREFIX", "ProgramLike",
           "TrainingFormat", "approx_tokens", "as_answer_program", "base_id", "base_source"]
