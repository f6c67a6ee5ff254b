"""A tiny reader for the IDX format of (Fashion-)MNIST, so neither needs torchvision.

IDX: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per
dimension, then the raw big-endian values. Files may be gzipped; we sniff the gzip magic
instead of trusting the suffix, because users unpack and rename these files freely.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

__all__ = ["IdxFormatError", "idx_length", "read_idx"]

_GZIP_MAGIC = b"\x1f\x8b"
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxFormatError(ValueError):
    """The file is not a well-formed IDX file (truncated, wrong header, unknown type)."""


def _header(path: str | Path, raw: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """The dtype, shape and data offset the IDX header at the start of ``raw`` declares."""
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPES:
        raise IdxFormatError(f"{path}: not an IDX file (header {raw[:4].hex()})")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise IdxFormatError(f"{path}: truncated header")
    return np.dtype(_DTYPES[code]), struct.unpack(f">{ndim}I", raw[4:start]), start


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian array of its declared shape."""
    raw = Path(path).read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    dtype, dims, start = _header(path, raw)
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - start != expected:
        raise IdxFormatError(
            f"{path}: shape {dims} needs {expected} data bytes, found {len(raw) - start}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=start).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def idx_length(path: str | Path) -> int:
    """The first dimension of an IDX file (its number of samples), from the header alone."""
    with Path(path).open("rb") as raw:
        gz = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        head = (gzip.GzipFile(fileobj=raw) if gz else raw).read(4 + 4 * 255)  # longest header
    _, dims, _ = _header(path, head)
    if not dims:
        raise IdxFormatError(f"{path}: not an IDX file of samples (no dimensions)")
    return int(dims[0])
