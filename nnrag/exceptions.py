"""One exception root for nnrag, with specific subclasses that say what to do next.

The CLI catches :class:`NnragError` and prints its message without a traceback, so every
message must be actionable on its own.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(kind: str, name: str, known: Iterable[str], *, suggest: int = 3,
                 key: str | None = None) -> str:
    """The one message for a name that is not registered, so every command says it alike:
    ``unknown dataset 'digit'; did you mean 'digits'? Known: cifar10, digits.``

    ``key`` is the normalised form of ``name`` to compare (default: ``name`` itself).
    """
    names = sorted(set(known))
    close = difflib.get_close_matches(key if key is not None else name, names, n=suggest)
    listing = ", ".join(names) + "." if names else "none."
    if close:
        return f"unknown {kind} {name!r}; did you mean {' or '.join(map(repr, close))}? " \
               f"Known: {listing}"
    return f"unknown {kind} {name!r}; known: {listing}"


class NnragError(Exception):
    """Base class of every error nnrag raises on purpose."""

    exit_code = 2  # what the CLI exits with (docs/cli.md, "Exit codes")


class StoreError(NnragError):
    """The index database is missing, locked, corrupt or of an unknown schema."""


class StoreMissingError(StoreError):
    """A store a command only reads does not exist (reads never create one)."""


class IndexMissingError(StoreMissingError):
    """No index exists at the given location."""


class WrongStoreError(StoreError):
    """The file is a store of another kind (a run store given as the index, or the other way
    round) or another program's database; nothing was written to it."""


class CorruptStoreError(StoreError):
    """The store file is damaged; the message names it and says how to check and recover
    (``nnrag doctor``, re-index). The CLI exits 3."""

    exit_code = 3


class SchemaVersionError(StoreError):
    """The database was written by a newer nnrag than this one."""


class OutputError(NnragError):
    """An output file or folder cannot be written: read-only, full, or a file in the way."""


class ScanError(NnragError):
    """A source tree could not be scanned at all (per-file problems are only reported)."""


class NameLookupError(NnragError):
    """A name given by the user does not identify exactly one indexed definition."""


class NameNotFoundError(NameLookupError):
    """No indexed definition has this name."""


class AmbiguousNameError(NameLookupError):
    """Several indexed definitions share this simple name; the candidates are listed."""

    def __init__(self, name: str, candidates: list[str]) -> None:
        self.name = name
        self.candidates = candidates
        listing = "\n".join(f"  {c}" for c in candidates)
        super().__init__(
            f"'{name}' is ambiguous: {len(candidates)} definitions match. "
            f"Use a qualified name:\n{listing}"
        )


class ResolveError(NnragError):
    """A dependency of a definition could not be resolved into a scope-closed module."""


class SpliceError(ResolveError):
    """A model uses a name from a package that is not installed, and the index given to
    splice it from does not provide that name. ``unresolved`` holds ``(package, name as
    the model writes it, why)`` for each such name."""

    def __init__(self, unresolved: Iterable[tuple[str, str, str]]) -> None:
        self.unresolved = tuple(unresolved)
        parts = [f"'{name}' from package '{package}': {why}"
                 for package, name, why in self.unresolved]
        packages = sorted({package for package, _, _ in self.unresolved})
        hint = " or ".join(f"`nnrag index path/to/{p}`" for p in packages)
        super().__init__(
            f"cannot splice {'; '.join(parts)}. Install the package, or index its source "
            f"folder ({hint}) and splice from that index"
        )


class SandboxError(NnragError):
    """The sandbox itself could not start (not: the code inside it failed)."""


class OptionalDependencyError(NnragError):
    """An optional dependency is needed; the message names the extra to install."""


class GenerateError(NnragError):
    """LLM generation cannot start or continue (the message says what to change)."""


class UnknownBackendError(GenerateError):
    """The backend name is not one of the registered backends."""


class BackendUnavailableError(GenerateError):
    """The backend exists but cannot be used here: endpoint unreachable, model path missing."""


class ContextOverflowError(GenerateError):
    """The prompt's fixed part (task, contract, format) does not fit the model's context."""


class AdapterError(GenerateError):
    """A LoRA adapter cannot be used: missing, half-written, or trained for another base."""


class LearnError(NnragError):
    """The learning loop cannot start or continue (no proven programs, base not loadable)."""


class PredictError(NnragError):
    """The accuracy predictor cannot fit, load or predict (the message says what to fix)."""


class PredictDataError(PredictError):
    """Training records cannot be read at all: a LEMUR folder without its two files, a
    truncated gzip, a run store that is not one. Single bad records are skipped and counted."""


class PredictorVersionError(PredictError):
    """A saved predictor was written in a format this nnrag does not read; re-fit it with
    ``nnrag predict fit``."""


class TuneError(NnragError):
    """``nnrag tune`` cannot run a study: a bad search space, sampler or storage URL, or a
    study name already used with another space (the message says what to change)."""


class SearchSpaceError(TuneError):
    """The search space is empty, contradictory (low > high, a log range through 0) or
    names a hyperparameter the model does not support."""


class TuneStorageError(TuneError):
    """The Optuna storage URL cannot be opened, or a study there does not match."""
