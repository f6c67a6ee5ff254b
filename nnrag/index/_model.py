"""Frozen intermediate representation of one scanned source file.

The scanner produces these; the store persists them; the resolver reads them back. They
carry no behaviour, so they can cross process boundaries (the scanner runs in a pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Where a binding sits at module level. A name bound under a guard may have several
# candidate bindings (try body vs. ImportError fallback); the resolver picks one.
GUARDS = ("", "try", "except", "if", "else", "type_checking")


@dataclass(frozen=True)
class Definition:
    """A module-level statement that binds ``name`` (class, function or assignment)."""

    name: str
    kind: str  # "class" | "function" | "assign"
    lineno: int
    end_lineno: int
    source: str
    hash: str  # SHA-1 of the normalised source (comments/formatting removed)
    guard: str = ""
    stmt_index: int = 0  # order of the statement in the module, for tie-breaking
    bases: tuple[str, ...] = ()
    is_abstract: bool = False
    has_forward: bool = False
    docstring: str | None = None


@dataclass(frozen=True)
class ImportBinding:
    """One local name bound by an import statement, with its absolute target."""

    local_name: str  # "*" for star imports
    target_module: str  # absolute dotted module ("" if a relative import escapes the root)
    target_name: str | None  # None for ``import a.b [as c]``
    level: int
    lineno: int
    guard: str = ""
    stmt_index: int = 0


@dataclass(frozen=True)
class FileScan:
    """Everything the index keeps about one Python file."""

    module: str
    is_package: bool
    future_annotations: bool
    definitions: tuple[Definition, ...] = ()
    imports: tuple[ImportBinding, ...] = ()
    all_names: tuple[str, ...] | None = None
    line_count: int = 0
    docstring: str | None = None


@dataclass(frozen=True)
class FileProblem:
    """A file that could not be indexed; counted in the summary, never fatal."""

    path: str
    # "syntax_error" | "decode_error" | "binary" | "too_large" | "unreadable" | "symlink_loop"
    kind: str
    message: str
    line: int | None = None
    column: int | None = None


@dataclass
class IndexReport:
    """Summary of one ``index`` run (mutable: filled in as files are processed)."""

    package: str
    root: str
    scanned: int = 0
    unchanged: int = 0
    removed: int = 0
    definitions: int = 0
    blocks: int = 0
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.problems)
