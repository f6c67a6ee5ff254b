"""Supervised fine-tuning: a peft LoRA adapter on a causal LM, loss on the answer only.

transformers' ``Trainer`` does the loop (gradient accumulation, checkpoints every
``save_steps``, ``resume_from_checkpoint`` after a kill); this module turns a dataset's
``prompt``/``completion`` rows into token ids with the prompt's labels masked (``-100``),
so the model learns to write the answer, not to repeat the prompt. Over-long rows lose the
start of their prompt, never their answer. Checkpoints live in a folder named by the base,
the dataset and the settings, so the same call after a kill resumes where it stopped. The
adapter is saved into the folder the caller gives (a staging folder that the adapter store
publishes atomically); nothing here decides what is "newest". The model's own code is
transformers' (trusted); no generated program runs here.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import LearnError
from nnrag.learn.dataset import read_examples
from nnrag.logging import get_logger

logger = get_logger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class SFTSettings:
    """LoRA and optimisation settings sized for a small CPU (recorded in the manifest)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 2e-4
    batch_size: int = 1
    grad_accum: int = 4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    max_length: int = 1536
    save_steps: int = 10
    seed: int = 0
    dtype: str = "auto"  # auto: bf16 where the model was saved so, else fp32
    threads: int | None = None

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SFTResult:
    """What one fine-tune did."""

    steps: int
    train_loss: float | None
    heldout_loss: float | None
    examples: int
    seconds: float
    resumed_from: str | None
    checkpoints: Path


def tokenize_example(tokenizer: Any, prompt: str, completion: str,
                     max_length: int) -> dict[str, list[int]]:
    """Input ids and labels with the prompt masked; a long prompt loses its start."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    answer_ids = answer_ids[:max_length]
    keep = max(0, max_length - len(answer_ids))
    prompt_ids = prompt_ids[len(prompt_ids) - keep:] if keep else []
    ids = [*prompt_ids, *answer_ids]
    labels = [IGNORE] * len(prompt_ids) + list(answer_ids)
    return {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}


def load_base(source: str, dtype: str = "auto") -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a transformers causal LM folder or cached hub id."""
    torch = optional_import("torch", "llm")
    transformers = optional_import("transformers", "llm")
    kwargs: dict[str, Any] = {}
    if dtype == "bf16":
        kwargs["dtype"] = torch.bfloat16
    elif dtype == "fp32":
        kwargs["dtype"] = torch.float32
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise LearnError(f"cannot load base model {source!r}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
                         "(give a local folder or a model id already in the hub cache)") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def lora_model(model: Any, settings: SFTSettings) -> Any:
    peft = optional_import("peft", "llm")
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                             lora_dropout=settings.dropout,
                             target_modules=list(settings.target_modules), task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:
        raise LearnError(f"LoRA cannot wrap this model ({exc}); choose target modules the "
                         "model has") from None


class _Collator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [self.pad_id] * (width - len(r["input_ids"])) for r in rows]
        labels = [r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows]
        mask = [r["attention_mask"] + [0] * (width - len(r["attention_mask"])) for r in rows]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}


def quiet(trainer: Any, log: Callable[[str], None]) -> None:
    """Send the trainer's log lines to ``log`` instead of printing them on stdout (where a
    command's table or JSON goes)."""
    transformers = optional_import("transformers", "llm")
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.remove_callback(transformers.trainer_callback.ProgressCallback)

    class Forward(transformers.TrainerCallback):  # type: ignore[misc, name-defined]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs:
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()
                         if k in ("loss", "reward", "train_loss", "epoch", "grad_norm")}
                if shown:
                    log(f"step {state.global_step}: " + ", ".join(
                        f"{k} {v}" for k, v in shown.items()))

    trainer.add_callback(Forward())


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` (one with ``trainer_state.json``)."""
    done = [p for p in folder.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _heldout_loss(model: Any, rows: list[dict[str, list[int]]], collate: _Collator) -> float | None:
    import torch

    if not rows:
        return None
    model.eval()
    losses = []
    with torch.no_grad():
        for row in rows:
            batch = {k: v.to(model.device) for k, v in collate([row]).items()}
            losses.append(float(model(**batch).loss))
    model.train()
    finite = [v for v in losses if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def finetune(source: str, dataset_folder: Path, adapter_out: Path, checkpoints: Path, *,
             settings: SFTSettings = SFTSettings(), resume: bool = True,
             callbacks: list[Any] | None = None, heldout_limit: int = 16,
             log: Callable[[str], None] | None = None) -> SFTResult:
    """LoRA-fine-tune ``source`` on ``dataset_folder/train.jsonl``; save into ``adapter_out``.

    ``checkpoints`` holds the trainer's checkpoints; with ``resume`` the newest complete one
    there is continued (after a kill the same call picks up where it stopped).
    """
    torch = optional_import("torch", "llm")
    transformers = optional_import("transformers", "llm")
    say = log or logger.info
    if settings.threads:
        torch.set_num_threads(settings.threads)
    train_rows = read_examples(dataset_folder / "train.jsonl")
    if not train_rows:
        raise LearnError(f"{dataset_folder} has no training examples (train.jsonl is empty)")
    model, tokenizer = load_base(source, settings.dtype)
    model = lora_model(model, settings)
    encoded = [tokenize_example(tokenizer, r["prompt"], r["completion"], settings.max_length)
               for r in train_rows]
    heldout = [tokenize_example(tokenizer, r["prompt"], r["completion"], settings.max_length)
               for r in read_examples(dataset_folder / "heldout.jsonl")[:heldout_limit]]
    checkpoints.mkdir(parents=True, exist_ok=True)
    args = transformers.TrainingArguments(
        output_dir=str(checkpoints), per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs, max_steps=settings.max_steps,
        save_steps=settings.save_steps, save_total_limit=2, logging_steps=1, report_to=[],
        seed=settings.seed, data_seed=settings.seed, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
        lr_scheduler_type="constant")
    collate = _Collator(int(tokenizer.pad_token_id))
    trainer = transformers.Trainer(model=model, args=args, train_dataset=encoded,
                                   data_collator=collate, callbacks=callbacks or [])
    quiet(trainer, say)
    last = latest_checkpoint(checkpoints) if resume else None
    if last is not None:
        say(f"resuming from {last}")
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.perf_counter() - start
    adapter_out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(adapter_out))
    loss = output.training_loss if output.training_loss and math.isfinite(
        output.training_loss) else None
    return SFTResult(int(output.global_step), loss, _heldout_loss(model, heldout, collate),
                     len(encoded), seconds, str(last) if last else None, checkpoints)
