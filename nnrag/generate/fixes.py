"""Auto-fixes, structural checks and block splicing for generated model code.

Minor, mechanical problems are fixed and noted (a missing ``import torch``, a missing
``supported_hyperparameters``, a reference constant the code reads but never defines; the
spec's fixes are in ``spec_fixes``). Structural problems
(no ``class Net``, a constructor that does not take the contract's arguments) are returned
as a diagnostic for one re-prompt. Nothing here executes the code: it is only parsed.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import io
import re
import tokenize
from dataclasses import dataclass

from nnrag.generate.compact import parsed_or
from nnrag.train.contract import ContractError, check_source

# -- code ---------------------------------------------------------------------------

_AUTO_IMPORTS = {"torch": "import torch", "nn": "from torch import nn",
                 "F": "import torch.nn.functional as F", "math": "import math",
                 "np": "import numpy as np", "Iterable": "from collections.abc import Iterable"}
_BUILTINS = set(dir(builtins))


def _bound_and_used(tree: ast.Module) -> tuple[set[str], set[str]]:
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for a in node.names:
                bound.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                args = node.args
                for param in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg,
                              args.kwarg):
                    if param is not None:
                        bound.add(param.arg)
        elif isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store | ast.Del) else used).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            pass
    return bound, used


def unbound_names(code: str) -> set[str]:
    """Names the module reads but never binds (nor are builtins): candidates for splicing."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    bound, used = _bound_and_used(tree)
    return used - bound - _BUILTINS


CONTRACT_ARGS = ("in_shape", "out_shape", "prm", "device")


def complete_init_signature(code: str) -> tuple[str, str | None]:
    """``Net.__init__`` given the contract's trailing arguments it left out, with ``None`` defaults.

    Small models often write ``__init__(self, in_shape, out_shape, prm)``: the harness
    always passes all four, so a prefix of the contract's arguments is completed (and
    noted); any other signature is left for the structural check's re-prompt.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, None
    net = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Net"), None)
    init = next((n for n in (net.body if net else [])
                 if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None or init.args.vararg is not None or init.args.posonlyargs:
        return code, None
    names = [a.arg for a in init.args.args]
    given = names[1:]
    if not names or len(given) >= len(CONTRACT_ARGS) or tuple(given) != CONTRACT_ARGS[:len(given)]:
        return code, None
    missing = CONTRACT_ARGS[len(given):]
    last: ast.arg | ast.expr = init.args.args[-1]
    if init.args.defaults:
        last = init.args.defaults[-1]
    assert last.end_lineno is not None and last.end_col_offset is not None
    lines = code.splitlines(keepends=True)
    row = lines[last.end_lineno - 1]
    added = "".join(f", {name}=None" for name in missing)
    lines[last.end_lineno - 1] = row[:last.end_col_offset] + added + row[last.end_col_offset:]
    fixed = parsed_or("".join(lines), code)
    return fixed, (f"Net.__init__ lacked {', '.join(missing)}: added with default None"
                   if fixed != code else None)


def rename_model_class(code: str) -> tuple[str, str | None]:
    """The one top-level class whose ``__init__`` takes ``(in_shape, out_shape, ...)``, renamed
    ``Net`` when the module defines no ``Net``.

    Chat models often name the model after what it is (``SimpleNet``, ``CNN``); the contract
    builds ``Net``, so without this the answer costs a re-prompt that often renames nothing.
    Every use of the name is renamed (``super(CNN, self)``), attributes and strings are not.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, None
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if any(c.name == "Net" for c in classes):
        return code, None
    fits = []
    for c in classes:
        init = next((f for f in c.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"),
                    None)
        if init is not None and [a.arg for a in init.args.args[1:3]] == list(CONTRACT_ARGS[:2]):
            fits.append(c.name)
    if len(fits) != 1:
        return code, None
    old = fits[0]
    lines = code.splitlines(keepends=True)
    spots: list[tuple[int, int]] = []
    previous = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if (tok.type == tokenize.NAME and tok.string == old
                    and not (previous and previous.string == ".")):
                spots.append(tok.start)
            if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                                tokenize.DEDENT):
                previous = tok
    except (tokenize.TokenError, SyntaxError):
        return code, None
    for row, col in reversed(spots):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + "Net" + line[col + len(old):]
    return "".join(lines), f"model class {old} renamed to Net (the contract builds Net)"


def fix_code(code: str) -> tuple[str, list[str]]:
    """Rename the model class to ``Net`` when it is plainly the model, complete the contract's
    trailing ``__init__`` arguments when only those are missing, and add the imports the code
    uses but forgot and ``supported_hyperparameters``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, []
    notes: list[str] = []
    for fix in (rename_model_class, complete_init_signature):
        code, note = fix(code)
        if note:
            notes.append(note)
    tree = ast.parse(code)  # the fixes above keep the code parseable
    bound, used = _bound_and_used(tree)
    missing = [name for name in _AUTO_IMPORTS if name in used and name not in bound]
    if "nn" in missing and "torch" not in missing and "torch" not in bound:
        missing.insert(0, "torch")
    if missing:
        lines = [_AUTO_IMPORTS[n] for n in dict.fromkeys(missing)]
        code = _insert_after_future("\n".join(lines) + "\n", code)
        notes.append("added missing " + ", ".join(f"`{line}`" for line in lines))
    if "supported_hyperparameters" not in {n.name for n in tree.body
                                           if isinstance(n, ast.FunctionDef)}:
        keys = sorted(set(re.findall(r"prm\[\s*['\"](\w+)['\"]\s*\]", code)) | {"lr", "momentum"})
        code = code.rstrip("\n") + ("\n\n\ndef supported_hyperparameters():\n    return {"
                                      + ", ".join(repr(k) for k in keys) + "}\n")
        notes.append("added missing supported_hyperparameters()")
    return code, notes


_NEVER_COPIED = frozenset({"Net", "supported_hyperparameters"})


def _top_level_definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Each top-level name a module binds, mapped to the statement that binds it last."""
    defs: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        defs[sub.id] = node
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.value is not None):
            defs[node.target.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for a in node.names:
                defs[(a.asname or a.name).split(".")[0]] = node
    return defs


def copy_reference_definitions(code: str,
                               references: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """Copy the module-level constants, helpers and imports of the references that the code
    reads but never defines (``HIDDEN``, ``INPUT_KINDS``, ``to_sequence``).

    Small models copy a reference's ``Net`` and drop the module lines above it; the name is
    then unbound and the sandbox fails with a ``NameError`` that repairs rarely fix.
    ``references`` is ``(label, source)`` in prompt order. A name comes from the reference
    that defines most of the missing names (the first one on a tie), and what a copied
    definition needs from its own module comes with it.
    Returns the code unchanged (and no note) when nothing is missing or it does not parse.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, []
    bound, used = _bound_and_used(tree)
    missing = used - bound - _BUILTINS - _NEVER_COPIED
    if not missing:
        return code, []
    modules: list[tuple[str, str, dict[str, ast.stmt]]] = []
    for label, source in references:
        try:
            modules.append((label, source, _top_level_definitions(ast.parse(source))))
        except SyntaxError:
            continue
    # the reference that defines most of the missing names first: constants that belong
    # together (``HIDDEN, LAYERS``) then come from one module, not half from each
    order = sorted(range(len(modules)), key=lambda i: -len(missing & modules[i][2].keys()))
    # id(stmt) -> (module index, stmt, its source)
    chosen: dict[int, tuple[int, ast.stmt, str]] = {}
    copied: dict[str, list[str]] = {}
    seen: set[str] = set()
    todo = sorted(missing)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        found = next(((i, modules[i][2][name]) for i in order if name in modules[i][2]), None)
        if found is None:
            continue
        i, stmt = found
        copied.setdefault(modules[i][0], []).append(name)
        if id(stmt) in chosen:
            continue
        segment = ast.get_source_segment(modules[i][1], stmt) or ""
        chosen[id(stmt)] = (i, stmt, segment)
        todo += sorted(n for n in unbound_names(segment) - bound - _NEVER_COPIED
                       if n in modules[i][2])
    if not copied:
        return code, []
    imports = [text for _, stmt, text in chosen.values()
               if isinstance(stmt, ast.Import | ast.ImportFrom)]
    bodies = [text for _, stmt, text in sorted(chosen.values(), key=lambda m: (m[0], m[1].lineno))
              if not isinstance(stmt, ast.Import | ast.ImportFrom)]
    lines = code.splitlines(keepends=True)
    at = max((n.end_lineno or n.lineno for n in tree.body
              if isinstance(n, ast.Import | ast.ImportFrom)), default=0)
    head = "".join(lines[:at]) + "".join(f"{line}\n" for line in imports)
    body = "\n\n".join(bodies)
    fixed = parsed_or(head + ("\n\n" if head and body else "") + body + ("\n\n\n" if body else "\n")
                      + "".join(lines[at:]).lstrip("\n"), code)
    if fixed == code:
        return code, []
    notes = [f"copied {', '.join(copied[label])} from reference {label}"
             for label, _, _ in modules if label in copied]
    return fixed, notes


def _insert_after_future(text: str, code: str) -> str:
    lines = code.splitlines(keepends=True)
    at = 0
    for i, line in enumerate(lines):
        if line.startswith("from __future__"):
            at = i + 1
    return "".join(lines[:at]) + text + "".join(lines[at:])


def structural_problem(code: str) -> str | None:
    """Why the code cannot follow the contract (for a re-prompt), or None.

    The code is compiled (never run): the parser accepts a ``continue`` outside a loop or a
    ``return`` outside a function, the compiler does not, and that is cheaper to learn here
    than from the sandbox.
    """
    try:
        check_source(code)
        compile(code, "<generated>", "exec", dont_inherit=True)
    except ContractError as exc:
        return str(exc)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    tree = ast.parse(code)
    net = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Net")
    if not net.bases:
        return "class Net must subclass nn.Module"
    methods = {n.name: n for n in net.body if isinstance(n, ast.FunctionDef)}
    init = methods.get("__init__")
    if init is None:
        return "class Net has no __init__(self, in_shape, out_shape, prm, device)"
    positional = [a.arg for a in (*init.args.posonlyargs, *init.args.args)]
    if len(positional) < 5 and init.args.vararg is None:
        return (f"Net.__init__ takes ({', '.join(positional)}); the contract calls "
                "Net(in_shape, out_shape, prm, device)")
    if "forward" not in methods and all(isinstance(b, ast.Attribute) and b.attr == "Module" or
                                        isinstance(b, ast.Name) and b.id == "Module"
                                        for b in net.bases):
        return "class Net defines no forward(self, x)"
    return None


def supported_names(code: str) -> set[str]:
    """The literal names ``supported_hyperparameters()`` returns (read, never run)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "supported_hyperparameters":
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Return)
                        and isinstance(sub.value, ast.Set | ast.List | ast.Tuple)):
                    return {e.value for e in sub.value.elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


# -- splicing retrieved blocks ---------------------------------------------------------

@dataclass(frozen=True)
class Splice:
    name: str
    qualname: str
    code: str


def _importable(module: str) -> bool:
    top = module.split(".")[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def splice_blocks(code: str, blocks: dict[str, Splice]) -> tuple[str, list[str]]:
    """Prepend the scope-closed code of retrieved blocks the model uses by name.

    ``blocks`` maps a block's simple name to its emitted module. Imports of those names
    from packages that are not installed (the model copied the index's module path) are
    removed first. Returns ``(code, spliced qualnames)``.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, []
    drop: list[tuple[int, int]] = []
    for node in tree.body:
        if (isinstance(node, ast.ImportFrom) and node.module and not _importable(node.module)
                and all(a.name in blocks for a in node.names)):
            drop.append((node.lineno, node.end_lineno or node.lineno))
    if drop:
        lines = code.splitlines(keepends=True)
        for start, end in sorted(drop, reverse=True):
            del lines[start - 1:end]
        code = "".join(lines)
    wanted = sorted(n for n in unbound_names(code) if n in blocks)
    if not wanted:
        return code, []
    parts = [blocks[n].code.strip("\n") for n in wanted]
    futures = sorted({line for part in [*parts, code] for line in part.splitlines()
                      if line.startswith("from __future__")})
    body = "\n\n\n".join(
        "\n".join(line for line in part.splitlines() if not line.startswith("from __future__"))
        for part in [*parts, code])
    merged = ("\n".join(futures) + "\n\n" if futures else "") + body.strip("\n") + "\n"
    return merged, [blocks[n].qualname for n in wanted]
