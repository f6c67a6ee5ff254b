"""Walk a source tree and bring the store up to date, incrementally and transactionally.

Files whose bytes are unchanged (SHA-1) are skipped, vanished files are removed, and each
batch of files is one transaction, so an interrupted run leaves a consistent store that
the next run completes. Per-file problems are counted, never fatal.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.metadata
import io
import os
import re
import stat
import tokenize
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import libcst as cst

from nnrag.exceptions import ScanError
from nnrag.index._blocks import find_blocks
from nnrag.index._catalog import sync_catalog
from nnrag.index._lifeline import die_with_parent
from nnrag.index._model import FileProblem, FileScan, IndexReport
from nnrag.index._scan import SCANNER_VERSION, scan_source
from nnrag.index._store import Store
from nnrag.index._symbols import SymbolTable
from nnrag.logging import get_logger

logger = get_logger(__name__)

MAX_FILE_BYTES = 2_000_000  # generated files (protobufs, vocabularies) are not code worth indexing
_BATCH = 64
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}
_WHERE = re.compile(r" \(line (\d+), column (\d+)\)$")  # how _write_batch stores a position

Progress = Callable[[int, int, str], None]


def _walk(root: Path, report: IndexReport) -> Iterator[Path]:
    """Yield ``.py`` files under root, following directory symlinks but never in a loop."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            report.problems.append(FileProblem(dirpath, "unreadable", str(exc)))
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            report.problems.append(
                FileProblem(dirpath, "symlink_loop",
                            "directory already visited through a symlink; skipped")
            )
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def module_name(root: Path, path: Path, prefix: str) -> tuple[str, bool]:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    dotted = ".".join([*([prefix] if prefix else []), *parts])
    return dotted or prefix, is_package


def _read(path: Path, max_bytes: int) -> bytes | FileProblem:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO named x.py would block read_bytes forever
            return FileProblem(str(path), "unreadable", "not a regular file; skipped")
        size = st.st_size
        if size > max_bytes:
            return FileProblem(str(path), "too_large",
                               f"{size / 1e6:.1f} MB exceeds the {max_bytes / 1e6:.1f} MB limit; "
                               "skipped")
        data = path.read_bytes()
    except OSError as exc:  # ELOOP for self-referencing symlinks, EACCES, ...
        kind = "symlink_loop" if exc.errno == 40 else "unreadable"
        return FileProblem(str(path), kind, exc.strerror or str(exc))
    if b"\x00" in data[:8192]:
        return FileProblem(str(path), "binary", "contains NUL bytes: not a Python source file")
    return data


def _scan_bytes(path: str, data: bytes, module: str, is_package: bool) -> FileScan | FileProblem:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        return FileProblem(path, "decode_error", f"not valid source text: {exc}")
    # CPython's own parser first: LibCST's native parser overflows the C stack (segfault,
    # killing the whole run) on pathologically nested code that CPython rejects cleanly,
    # and CPython reports a syntax error's real line and column (LibCST's are approximate).
    python_error: SyntaxError | None = None
    try:
        compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:  # may be newer syntax that LibCST accepts: only a hint
        if "too many nested" in exc.msg or "too complex" in exc.msg:
            return FileProblem(path, "syntax_error", exc.msg, exc.lineno, exc.offset)
        python_error = exc
    except (RecursionError, MemoryError):
        return FileProblem(path, "syntax_error", "nesting too deep to parse safely")
    except ValueError as exc:  # source code string cannot contain null bytes
        return FileProblem(path, "syntax_error", str(exc))
    try:
        return scan_source(text, module, is_package)
    except cst.ParserSyntaxError as exc:
        if python_error is not None and python_error.lineno:
            return FileProblem(path, "syntax_error", python_error.msg, python_error.lineno,
                               python_error.offset)
        return FileProblem(path, "syntax_error", exc.message, exc.raw_line, exc.raw_column + 1)
    except RecursionError:
        return FileProblem(path, "syntax_error", "nesting too deep to parse")


def _scan_job(args: tuple[str, bytes, str, bool]) -> FileScan | FileProblem:
    return _scan_bytes(*args)


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def package_version(root: Path, prefix: str) -> str | None:
    top = prefix.split(".")[0] if prefix else root.name
    try:
        dists = _distributions().get(top, [])
        if dists:
            return importlib.metadata.version(dists[0])
    except Exception:  # metadata of unrelated broken distributions must not stop indexing
        pass
    for candidate in ("__init__.py", "version.py", "_version.py", "__version__.py"):
        path = root / candidate
        if path.is_file():
            text = path.read_text(errors="replace")
            match = re.search(r"""^__version__\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]""", text, re.M)
            if match:
                return match.group(1)
    return None


def index_path(
    store: Store, root: str | Path, *, prefix: str | None = None, package: str | None = None,
    progress: Progress | None = None, max_bytes: int = MAX_FILE_BYTES, jobs: int = 1,
    only: Sequence[str | Path] | None = None,
) -> IndexReport:
    """Index every ``.py`` file under ``root``, or only the files ``only`` names.

    ``prefix`` is the dotted module name of ``root`` itself: the folder name when it is a
    package (has ``__init__.py``), empty for a repository checkout.

    With ``only``, the given files (under ``root``) are added or updated and nothing else of
    ``package`` is touched: write-backs (trained models, mutants) share one package name
    across homes and run stores, so re-walking one folder would delete every file of that
    package that lives in another folder.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise ScanError(f"path does not exist: {root_path}")
    if root_path.is_file():
        raise ScanError(f"{root_path} is a file; give the directory of a repository or package")
    root_path = root_path.resolve()
    if prefix is None:
        prefix = root_path.name if (root_path / "__init__.py").exists() else ""
    package = package or prefix.split(".")[0] or root_path.name
    report = IndexReport(package=package, root=str(root_path))
    files = list(_walk(root_path, report)) if only is None else _only(root_path, only)
    version_key = f"scanner_version:{package}"
    if store.get_meta(version_key) != SCANNER_VERSION:
        # Files scanned by an older scanner are rescanned, not skipped; forgetting their
        # hashes (instead of a flag set at the end) keeps this true across interruptions.
        with store.transaction():
            store.forget_file_hashes(package)
            store.set_meta(version_key, SCANNER_VERSION)
    known = store.file_hashes(package)
    known_problems = store.file_problems(package)
    todo: list[tuple[str, bytes, str, bool, str]] = []
    seen_paths: set[str] = set()
    for path in files:
        key = str(path)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:  # the store (and most terminals) need text file names
            shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
            report.problems.append(FileProblem(shown, "unreadable",
                                               "file name is not valid UTF-8; skipped"))
            continue
        seen_paths.add(key)
        data = _read(path, max_bytes)
        if isinstance(data, FileProblem):
            report.problems.append(data)
            with store.transaction():
                store.record_problem(key, package, None, data.kind, data.message)
            continue
        sha = hashlib.sha1(data).hexdigest()
        if known.get(key) == sha:
            if key in known_problems:  # still broken: report it again, without rescanning
                kind, error = known_problems[key]
                where = _WHERE.search(error)
                report.problems.append(
                    FileProblem(key, kind, error[: where.start()], int(where[1]), int(where[2]))
                    if where else FileProblem(key, kind, error)
                )
            else:
                report.unchanged += 1
            continue
        module, is_pkg = module_name(root_path, path, prefix)
        todo.append((key, data, module, is_pkg, sha))
    removed = [] if only is not None else [p for p in known if p not in seen_paths]
    changed = bool(todo or removed)
    if changed:  # cleared when the run ends: until then reads say the index is incomplete
        with store.transaction():
            store.set_meta("blocks_dirty", "1")
            store.set_meta("indexing", f"{package} ({root_path})")
    total = len(files)
    done = report.unchanged
    if progress:
        progress(done, total, "")
    jobs = max(1, min(jobs, len(todo) // 32 or 1))
    pool = ProcessPoolExecutor(jobs, initializer=die_with_parent,
                               initargs=(os.getpid(),)) if jobs > 1 else None
    try:
        args = [(k, d, m, p) for k, d, m, p, _ in todo]
        results = pool.map(_scan_job, args, chunksize=8) if pool else map(_scan_job, args)
        batch: list[tuple[tuple[str, bytes, str, bool, str], FileScan | FileProblem]] = []
        for item, result in zip(todo, results, strict=True):
            batch.append((item, result))
            if len(batch) >= _BATCH:
                _write_batch(store, package, batch, report)
                batch = []
            done += 1
            if progress:
                progress(done, total, item[0])
        _write_batch(store, package, batch, report)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    with store.transaction():
        for gone in removed:
            store.delete_file(gone)
        store.upsert_package(package, str(root_path), package_version(root_path, prefix))
    report.removed = len(removed)
    if changed or store.get_meta("blocks_dirty") == "1":
        mark_blocks(store)
    sync_catalog(store)  # categories, fingerprints, FTS5: only changed blocks are touched
    if store.get_meta("indexing"):
        with store.transaction():
            store.set_meta("indexing", "")
    counts = store.package_counts(package)
    report.definitions, report.blocks = counts.definitions, counts.blocks
    logger.info("indexed %s: %d scanned, %d unchanged, %d problems", package, report.scanned,
                report.unchanged, report.failed)
    return report


def _only(root: Path, files: Sequence[str | Path]) -> list[Path]:
    """The named files, resolved and checked to lie under ``root`` (module names need it)."""
    paths = []
    for name in files:
        path = Path(name).expanduser().resolve()
        if not path.is_relative_to(root):
            raise ScanError(f"{path} is not under {root}")
        paths.append(path)
    return paths


def _write_batch(store: Store, package: str, batch: list, report: IndexReport) -> None:
    if not batch:
        return
    with store.transaction():
        for (key, data, _module, _is_pkg, sha), result in batch:
            if isinstance(result, FileProblem):
                report.problems.append(result)
                where = f" (line {result.line}, column {result.column})" if result.line else ""
                store.record_problem(key, package, sha, result.kind, result.message + where)
            else:
                report.scanned += 1
                store.save_scan(key, package, sha, len(data), result)


def mark_blocks(store: Store) -> int:
    """Recompute the block flag over the whole store (bases may cross packages)."""
    table = SymbolTable(store)
    blocks = find_blocks(table)
    with store.transaction():
        store.set_blocks(blocks)
        store.set_meta("blocks_dirty", "0")
    return len(blocks)


def locate_package(name: str) -> tuple[Path, str]:
    """Find an installed package's folder without importing it (no code runs)."""
    top, *rest = name.split(".")
    spec = importlib.machinery.PathFinder.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ScanError(f"no installed package named {top!r} "
                        "(is it installed in this environment?)")
    path = Path(next(iter(spec.submodule_search_locations)))
    for part in rest:
        path = path / part
        if not (path / "__init__.py").exists() and not path.is_dir():
            raise ScanError(f"{name!r}: {path} is not a package folder")
    return path, name


def index_package(store: Store, name: str, **kwargs: object) -> IndexReport:
    path, prefix = locate_package(name)
    return index_path(store, path, prefix=prefix, package=name.split(".")[0], **kwargs)  # type: ignore[arg-type]
