"""The benchmark's chunked GGUF: joined in order and used only when its sha256 matches."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "chunked_gguf.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chunked_gguf", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chunked_gguf"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _parts(tmp_path: Path) -> tuple[list[Path], str]:
    chunks = [b"GGUF" + b"a" * 5_000_000, b"b" * 3, b"c" * 1000]
    paths = []
    for i, data in enumerate(chunks):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(data)
        paths.append(p)
    return paths, hashlib.sha256(b"".join(chunks)).hexdigest()


def test_join_verified_joins_in_order_and_reuses_a_good_file(tmp_path: Path) -> None:
    mod = _module()
    parts, sha = _parts(tmp_path)
    target = tmp_path / "cache" / "model.gguf"
    assert mod.join_verified(parts, target, sha) == target
    assert target.read_bytes() == b"".join(p.read_bytes() for p in parts)
    parts[1].write_bytes(b"changed")  # a good cached file is not rebuilt
    assert mod.join_verified(parts, target, sha) == target and mod.sha256_of(target) == sha


def test_a_wrong_hash_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    mod = _module()
    parts, sha = _parts(tmp_path)
    target = tmp_path / "model.gguf"
    with pytest.raises(mod.ChecksumError, match="refusing"):
        mod.join_verified(list(reversed(parts)), target, sha)  # wrong order, wrong bytes
    assert not target.exists() and not target.with_name("model.gguf.tmp").exists()


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    mod = _module()
    parts, sha = _parts(tmp_path)
    target = tmp_path / "model.gguf"
    target.write_bytes(b"truncated")
    mod.join_verified(parts, target, sha)
    assert mod.sha256_of(target) == sha


def test_the_qwen_coder_entry_names_six_chunks_and_a_sha256() -> None:
    mod = _module()
    model = mod.MODELS["qwen-coder"]
    assert (len(model.packages) == 6 and len(model.sha256) == 64
            and model.file_name.endswith(".gguf"))
