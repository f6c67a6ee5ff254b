"""transformers backend: a hub id, a local folder or a GGUF file, optionally with LoRA.

GGUF files are converted once to a cached bf16 folder (see :mod:`nnrag.generate.models`);
``dtype`` ``8bit``/``4bit`` quantise with bitsandbytes on a GPU. JSON-schema constrained
decoding uses xgrammar when it is installed (it enforces numeric bounds too); the
pipeline re-validates with pydantic either way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import BackendUnavailableError, GenerateError
from nnrag.generate.backends.base import (
    Backend,
    BackendConfig,
    Completion,
    Prompt,
    Sampling,
    apply_stops,
    resolve_style,
)
from nnrag.generate.models import (
    EMBEDDED_NAME,
    bf16_folder_for_gguf,
    embedded_gguf,
    local_model_path,
)
from nnrag.logging import get_logger

logger = get_logger(__name__)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, config: BackendConfig) -> None:
        self.torch = optional_import("torch", "llm")
        transformers = optional_import("transformers", "llm")
        self.config = config
        if config.threads:
            self.torch.set_num_threads(config.threads)
        self.device = "cuda" if self.torch.cuda.is_available() else "cpu"
        source, gguf_file, self.model_id = self._source(config)
        kwargs: dict[str, Any] = {"dtype": self._dtype(config.dtype)}
        if config.dtype in ("8bit", "4bit"):
            kwargs.pop("dtype")
            kwargs["quantization_config"] = self._bnb(transformers, config.dtype)
            kwargs["device_map"] = "auto"
        if gguf_file:
            optional_import("gguf", "llm")
            kwargs["gguf_file"] = gguf_file
        start = time.perf_counter()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, **({"gguf_file": gguf_file} if gguf_file else {}))
            self.model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot load model {self.model_id!r} with transformers: {exc}".splitlines()[0]
                + " (give a local folder, a .gguf file, or a model id already in the hub cache)"
            ) from None
        if config.adapter:
            self.model = self._with_adapter(self.model, config.adapter)
        if "quantization_config" not in kwargs:
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.style = resolve_style(config.style,
                                   bool(getattr(self.tokenizer, "chat_template", None)))
        cfg = getattr(self.model.config, "get_text_config", lambda: self.model.config)()
        self.context_length = int(config.context
                                  or getattr(cfg, "max_position_embeddings", 2048) or 2048)
        self._xgr = self._xgrammar()
        self.supports_schema = self._xgr is not None
        logger.info("loaded %s (%s, %s) in %.1fs", self.model_id, self.device, kwargs.get("dtype"),
                    time.perf_counter() - start)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "adapter": self.config.adapter}

    # -- loading
    @staticmethod
    def _source(config: BackendConfig) -> tuple[str, str | None, str]:
        """``(folder or id, gguf file name or None, display id)``."""
        if config.model is None:
            gguf = embedded_gguf()
            if config.dtype == "fp32":
                return str(gguf.parent), gguf.name, EMBEDDED_NAME
            return str(bf16_folder_for_gguf(gguf)), None, EMBEDDED_NAME
        path = local_model_path(config.model)
        if path is None:
            return config.model, None, config.model
        if path.is_file():
            if path.suffix != ".gguf":
                raise BackendUnavailableError(f"{path} is a file but not a .gguf model; "
                                              "give a folder or a .gguf")
            if config.dtype in ("auto", "bf16"):
                return str(bf16_folder_for_gguf(path)), None, str(path)
            return str(path.parent), path.name, str(path)
        if not (path / "config.json").exists():
            raise BackendUnavailableError(f"{path} has no config.json: "
                                          "not a transformers model folder")
        return str(path), None, str(path)

    def _dtype(self, name: str) -> Any:
        torch = self.torch
        if name == "fp32":
            return torch.float32
        if name == "bf16":
            return torch.bfloat16
        if name == "auto":  # bf16 halves memory and is ~2x faster than fp32 on CPU here
            return torch.bfloat16
        if name in ("8bit", "4bit"):
            return None
        raise GenerateError(f"unknown dtype {name!r}; use auto, bf16, fp32, 8bit or 4bit")

    def _bnb(self, transformers: Any, dtype: str) -> Any:
        if not self.torch.cuda.is_available():
            raise BackendUnavailableError(f"--dtype {dtype} needs a CUDA GPU (bitsandbytes); "
                                          "use bf16 or fp32 on CPU")
        optional_import("bitsandbytes", "llm")
        if dtype == "8bit":
            return transformers.BitsAndBytesConfig(load_in_8bit=True)
        return transformers.BitsAndBytesConfig(load_in_4bit=True,
                                               bnb_4bit_compute_dtype=self.torch.bfloat16)

    @staticmethod
    def _with_adapter(model: Any, adapter: str) -> Any:
        path = Path(adapter).expanduser()
        if not (path / "adapter_config.json").exists():
            raise BackendUnavailableError(f"adapter folder {path} has no adapter_config.json "
                                          "(a peft LoRA adapter)")
        peft = optional_import("peft", "llm")
        return peft.PeftModel.from_pretrained(model, str(path))

    def _xgrammar(self) -> Any:
        try:
            import xgrammar  # noqa: F401
        except Exception:  # not installed, or installed without its GPU extras
            return None
        return xgrammar

    # -- prompting
    def _ids(self, prompt: Prompt) -> Any:
        if prompt.style == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise GenerateError(f"{self.model_id} has no chat template; use --style completion")
            ids = self.tokenizer.apply_chat_template(
                list(prompt.messages), add_generation_prompt=True, return_tensors="pt",
                return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt.text, return_tensors="pt")["input_ids"]
        return ids

    def count_tokens(self, prompt: Prompt) -> int:
        return int(self._ids(prompt).shape[-1])

    def generate(self, prompt: Prompt, sampling: Sampling,
                 schema: dict[str, Any] | None = None) -> Completion:
        torch = self.torch
        ids = self._ids(prompt).to(self.model.device)
        n_prompt = int(ids.shape[-1])
        if n_prompt + sampling.max_new_tokens > self.context_length:
            from nnrag.exceptions import ContextOverflowError

            raise ContextOverflowError(
                f"prompt of {n_prompt} tokens + {sampling.max_new_tokens} new tokens exceeds the "
                f"{self.context_length}-token context of {self.model_id}")
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id,
                                  "attention_mask": torch.ones_like(ids)}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None)
        constrained = schema is not None and self._xgr is not None
        if constrained and schema is not None:
            kwargs["logits_processor"] = [self._schema_processor(schema)]
        elif sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        torch.manual_seed(sampling.seed)
        start = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(ids, **kwargs)
        seconds = time.perf_counter() - start
        new = out[0, n_prompt:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = apply_stops(text, sampling.stop) if not constrained else (text, False)
        finish = "stop" if stopped or len(new) < sampling.max_new_tokens else "length"
        return Completion(text, n_prompt, int(len(new)), seconds, sampling, self.name,
                          self.model_id, constrained, finish)

    def _schema_processor(self, schema: dict[str, Any]) -> Any:
        xgr = self._xgr
        info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=self.model.config.get_text_config().vocab_size)
        compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(schema),
                                                                 any_whitespace=False)
        return xgr.contrib.hf.LogitsProcessor(compiled)

    def close(self) -> None:
        self.model = None
