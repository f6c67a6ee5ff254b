"""What a trial child may tell the orchestrator, parsed as the untrusted input it is.

The child runs model code nobody vetted, so everything it writes (progress lines, the
result dict, logits files) is checked here before the engine or the run store sees it:
known keys only, bounded numbers and strings, a size limit per line and per file. A
message that fails is :class:`ChannelError`, never another exception, so the engine can
turn it into that one trial's ``error`` and carry on with the others.

The child never computes a score: it writes test-set logits, and the parent (holding the
labels) computes every metric. What the child reports about itself (its training loss,
its epoch time) keeps a ``_self_reported`` name all the way into the run store.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nnrag.exceptions import NnragError
from nnrag.train.runstore import MAX_STORED_INT

MAX_INT = MAX_STORED_INT  # params and FLOPs must fit the run store's INTEGER columns
MAX_LINE_BYTES = 4096  # one progress row
MAX_PROGRESS_BYTES = 1 << 20  # a whole progress file
MAX_TEXT = 6000  # an error message or traceback (the child truncates to these)
LOGITS_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
NPY_HEADER_SLACK = 1 << 16  # bytes a .npy file may hold beyond its data


class ChannelError(NnragError):
    """A message from a trial child that does not fit the protocol; says what is wrong."""


def run_dir_name(run_id: int) -> str:
    """The folder of the engine's scratch one run works in, and the only one it sees."""
    return f"run-{run_id}"


def progress_name(run_id: int) -> str:
    """The progress file of one run, relative to the trial's scratch folder."""
    return f"progress-{run_id}.jsonl"


def data_name(key: str) -> str:
    """The inputs file the parent writes for the trials of one (dataset, seed, limit)."""
    return f"data-{key}.npz"


#: What a data file holds: training inputs and labels, test inputs. Never test labels.
DATA_KEYS = ("train_x", "train_y", "test_x")


def logits_name(run_id: int, epoch: int) -> str:
    """The test-set logits of one run after one epoch, relative to scratch."""
    return f"logits-{run_id}-{epoch}.npy"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Seconds = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


class ProgressRow(_Strict):
    """One finished epoch as the child announces it; its logits file holds the rest."""

    epoch: int = Field(ge=1, le=10_000)
    epoch_s: Seconds
    train_loss: float | None = None  # self-reported; may be non-finite (the model diverged)


class ChildResult(_Strict):
    """The child's final word. Only ``error``/``traceback`` (text) and ``params``/``flops``
    (shown, never ranked on) are kept; its outcome can only make a run worse, not better."""

    outcome: Literal["ok", "nan", "error", "oom", "stopped"]
    params: Count | None = None
    flops: Count | None = None
    versions: dict[Annotated[str, Field(max_length=40)],
                   Annotated[str, Field(max_length=80)]] = Field(default_factory=dict,
                                                                  max_length=8)
    error: str | None = Field(None, max_length=MAX_TEXT)
    traceback: str | None = Field(None, max_length=MAX_TEXT)
    duration_s: Seconds | None = None
    epochs: int = Field(0, ge=0, le=10_000)  # epochs the child finished, by its own count


def _why(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_progress_line(line: str | bytes, max_epoch: int) -> ProgressRow:
    """One line of a progress file; ``max_epoch`` is the spec's epoch budget."""
    if len(line) > MAX_LINE_BYTES:
        raise ChannelError(f"progress line of {len(line)} bytes (limit {MAX_LINE_BYTES})")
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ChannelError(f"progress line is not JSON: {str(exc)[:200]}") from None
    try:
        row = ProgressRow.model_validate(data)
    except ValidationError as exc:
        raise ChannelError(f"bad progress row: {_why(exc)}"[:500]) from None
    if row.epoch > max_epoch:
        raise ChannelError(f"progress row for epoch {row.epoch} of a {max_epoch}-epoch budget")
    return row


def parse_result(value: Any, max_epoch: int) -> ChildResult:
    """The child's result dict (already JSON-decoded by the sandbox)."""
    try:
        result = ChildResult.model_validate(value)
    except (ValidationError, RecursionError) as exc:
        why = _why(exc) if isinstance(exc, ValidationError) else "nested too deeply"
        raise ChannelError(f"bad trial result: {why}"[:500]) from None
    if result.epochs > max_epoch:
        raise ChannelError(f"trial result claims {result.epochs} of {max_epoch} epochs")
    return result


def _open_regular(path: Path) -> BinaryIO | None:
    """``path`` opened for reading if it is a plain file; None if it does not exist.

    Never follows a symlink (the parent would read what the child points it at) and never
    blocks (a FIFO in place of a progress file would hang the engine).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ChannelError(f"{path.name} is not a readable plain file: {exc.strerror}") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ChannelError(f"{path.name} is not a plain file")
    return f


def read_new_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """Complete lines appended to ``path`` since byte ``offset``, and the new offset.

    A line still being written (no newline yet) waits for the next call; a file or a
    pending line past the limits is a :class:`ChannelError`.
    """
    f = _open_regular(path)
    if f is None:
        return [], offset
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_PROGRESS_BYTES:
            raise ChannelError(f"progress file of {size} bytes (limit {MAX_PROGRESS_BYTES})")
        if size <= offset:
            return [], offset
        f.seek(offset)
        chunk = f.read(size - offset)
    end = chunk.rfind(b"\n") + 1
    if end == 0 and len(chunk) > MAX_LINE_BYTES:
        raise ChannelError(f"progress line of over {MAX_LINE_BYTES} bytes")
    return chunk[:end].splitlines(), offset + end


def load_logits(path: Path, n_test: int, classes: int) -> np.ndarray:
    """A child's test-set logits as float32, shape ``(n_test, classes)``, checked strictly.

    Non-finite values come back as they are: a diverged model is outcome ``nan``, not a
    protocol error.
    """
    limit = n_test * classes * 4 + NPY_HEADER_SLACK
    f = _open_regular(path)
    if f is None:
        raise ChannelError(f"missing logits file {path.name}")
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ChannelError(f"logits file {path.name} of {size} bytes (limit {limit})")
        try:
            array = np.load(f, allow_pickle=False)
        except Exception as exc:  # any malformed file: truncated, pickled, an .npz, ...
            raise ChannelError(f"logits file {path.name} is not a plain .npy array "
                               f"({type(exc).__name__})") from None
    if not isinstance(array, np.ndarray) or array.dtype not in LOGITS_DTYPES:
        raise ChannelError(f"logits {path.name} must be float32 or float16, got "
                           f"{getattr(array, 'dtype', type(array).__name__)}")
    if array.shape != (n_test, classes):
        raise ChannelError(f"logits {path.name} have shape {array.shape}, "
                           f"expected {(n_test, classes)}")
    return np.ascontiguousarray(array, dtype=np.float32)
