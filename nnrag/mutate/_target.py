"""What ``nnrag mutate TARGET`` names: a model file, a corpus model or an indexed block."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from nnrag.exceptions import NnragError
from nnrag.train.contract import input_kinds


class MutationTargetError(NnragError):
    """The target cannot be mutated (missing, not a model, no Net class, ...); says why."""


@dataclass(frozen=True)
class Target:
    """Source to mutate and how to build it: the contract's ``Net`` or a named block."""

    label: str
    source: str
    block: str | None  # None: a contract module with ``class Net``
    origin: str  # file path or indexed qualified name
    input_kinds: frozenset[str] = frozenset()  # the module's INPUT_KINDS ("image", "signal")

    def default_dataset(self) -> str:
        """Digits for image models (and when unknown), MNIST-1D for signal-only ones."""
        return "mnist1d" if self.input_kinds and "image" not in self.input_kinds else "digits"


def _module_level(source: str, label: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MutationTargetError(
            f"{label} does not parse: line {exc.lineno}, column {exc.offset}: {exc.msg}"
        ) from None
    return {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}


def from_file(path: Path, block: str | None = None) -> Target:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MutationTargetError(f"cannot read {path}: {exc}") from None
    names = _module_level(source, str(path))
    if block is None and "Net" not in names:
        raise MutationTargetError(
            f"{path} defines no class Net (the model contract); name a class with --block"
        )
    if block is not None and block not in names:
        raise MutationTargetError(f"{path} defines no top-level {block!r}")
    return Target(path.stem, source, block, str(path), input_kinds(source))


def load_target(target: str, *, db: Path | None = None, block: str | None = None) -> Target:
    """Resolve ``target``: an existing file, a corpus model name, or an indexed block name."""
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise MutationTargetError(f"no such file: {target}")
        return from_file(path, block)
    from nnrag.examples import corpus_dir

    try:
        corpus = corpus_dir() / f"{target}.py"
    except NnragError:
        corpus = None
    if corpus is not None and corpus.is_file():
        return from_file(corpus, block)
    return _from_index(target, db)


def _from_index(name: str, db: Path | None) -> Target:
    from nnrag.config import default_db_path
    from nnrag.extract import extract
    from nnrag.index import Store

    store = Store(db or default_db_path(), create=False)
    try:
        emitted = extract(store, name)
    finally:
        store.close()
    return Target(emitted.name, emitted.code, emitted.name, emitted.qualname)
