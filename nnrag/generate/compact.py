"""Compact reference code for few-shot prompts: the same model in fewer tokens, forward first.

A small model continues a prompt by imitating its references, layout included. Docstrings,
comments and blank lines cost tokens twice (in the prompt and again in an answer that
copies them), and a reference whose ``forward`` comes last (after ``train_setup`` and
``learn``) leads a model with a token budget to stop before the one method the contract
cannot do without: the harness supplies ``train_setup``/``learn`` when a model has none,
but nothing supplies ``forward``. So references are shown without docstrings and comments,
with one blank line before each top-level definition only, and with ``forward`` moved right
after ``__init__``. ``Net``'s ``train_setup`` and ``learn`` are left out of references
(``drop_methods``): they are the same boilerplate in nearly every model, the harness
supplies them (with the spec's optimizer, so the spec is honoured), and copying them is
what used up a small model's answer. The code keeps its own formatting (it is edited by
lines, not re-printed), and what does not parse is returned unchanged.
"""

from __future__ import annotations

import ast
import io
import tokenize

TRUNCATION_MARK = "# ... (truncated to fit the context)"
HARNESS_METHODS = ("train_setup", "learn")  # supplied by nnrag.train.contract.DefaultTraining


def _span(node: ast.stmt) -> tuple[int, int]:
    """0-based ``[start, end)`` line range of a statement, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)]) - 1
    assert node.end_lineno is not None
    return start, node.end_lineno


def forward_first(code: str) -> str:
    """Each class's ``forward`` moved right after its ``__init__`` (nothing else moves)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    moves: list[tuple[int, tuple[int, int]]] = []  # (insert after line, forward's span)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        names = [m.name for m in methods]
        if "__init__" not in names or "forward" not in names:
            continue
        init, fwd = methods[names.index("__init__")], methods[names.index("forward")]
        if (node.body.index(fwd) == node.body.index(init) + 1
                or node.body.index(fwd) < node.body.index(init)):
            continue
        moves.append((_span(init)[1], _span(fwd)))
    # bottom-up keeps line numbers valid
    for after, (start, end) in sorted(moves, key=lambda m: -m[1][0]):
        block = lines[start:end]
        del lines[start:end]
        lines[after:after] = block
    return parsed_or("\n".join(lines) + "\n", code)


def drop_methods(code: str, names: tuple[str, ...] = HARNESS_METHODS, owner: str = "Net") -> str:
    """``code`` without the methods ``names`` of class ``owner`` (a class left empty
    gets ``pass``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines()
    spans: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == owner:
            kept = [n for n in node.body
                    if not (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                            and n.name in names)]
            if kept:
                spans += [_span(n) for n in node.body if n not in kept]
    for start, end in sorted(spans, reverse=True):
        del lines[start:end]
    return parsed_or("\n".join(lines) + "\n", code)


def _docstring_lines(tree: ast.Module) -> tuple[set[int], dict[int, int]]:
    """0-based lines holding docstrings; and, for bodies that are only a docstring, the
    first line and its indentation column (a ``pass`` replaces it there)."""
    drop: set[int] = set()
    replace: dict[int, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        first = body[0] if body else None
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            start, end = first.lineno - 1, first.end_lineno or first.lineno
            drop.update(range(start, end))
            if len(body) == 1 and not isinstance(node, ast.Module):
                replace[start] = first.col_offset
    return drop, replace


def _without_comments(code: str) -> str:
    """The code with every ``#`` comment removed (strings untouched)."""
    lines = code.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    for tok in reversed(tokens):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col].rstrip()
    return "\n".join(lines) + "\n"


def compact_code(code: str, drop: tuple[str, ...] = HARNESS_METHODS) -> str:
    """``code`` without docstrings, comments, most blank lines and ``Net``'s ``drop`` methods,
    with ``forward`` after ``__init__``."""
    try:
        ast.parse(code)
    except SyntaxError:
        return code
    text = _without_comments(drop_methods(forward_first(code), drop))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return code
    docstrings, replace = _docstring_lines(tree)
    out: list[str] = []
    for i, line in enumerate(text.splitlines()):
        if i in replace:
            out.append(" " * replace[i] + "pass")
        if i in docstrings or not line.strip():
            continue
        if out and not line[0].isspace() \
                and line.lstrip().startswith(("def ", "class ", "async def ", "@")) \
                and not out[-1].startswith("@"):
            out.append("")  # one blank line before a top-level definition
        out.append(line)
    return parsed_or("\n".join(out).strip("\n") + "\n", code)


def parsed_or(new: str, code: str) -> str:
    """``new`` if it still parses, else the untouched ``code``: a line edit never breaks it."""
    try:
        ast.parse(new)
    except SyntaxError:
        return code
    return new


def cap_lines(code: str, max_lines: int) -> str:
    """At most ``max_lines`` lines of ``code``, with a marker saying the rest was cut."""
    lines = code.rstrip("\n").splitlines()
    if len(lines) <= max_lines:
        return code
    return "\n".join(lines[:max_lines]) + "\n    " + TRUNCATION_MARK + "\n"
