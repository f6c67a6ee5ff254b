"""GRPO with trl: the model samples several answers per prompt, nnrag's sandbox scores them.

trl's ``GRPOTrainer`` samples ``num_generations`` completions per prompt, scores them with
:class:`~nnrag.learn.reward.SandboxReward` (the code runs only in the sandbox) and updates a
LoRA adapter towards the better-scored ones. Prompts are the dataset's (``generate``'s
format). Like SFT, the adapter is saved into a staging folder the caller publishes, and
checkpoints every ``save_steps`` resume after a kill.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrag._imports import optional_import
from nnrag.exceptions import LearnError
from nnrag.learn.dataset import read_examples
from nnrag.learn.reward import SandboxReward
from nnrag.learn.sft import SFTSettings, latest_checkpoint, load_base, lora_model, quiet
from nnrag.logging import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class GRPOSettings:
    """Sampling and optimisation for GRPO (recorded in the manifest)."""

    num_generations: int = 4
    max_completion_length: int = 384
    max_prompt_tokens: int = 1024
    temperature: float = 0.9
    learning_rate: float = 5e-5
    beta: float = 0.0
    max_steps: int = 10
    save_steps: int = 5
    seed: int = 0
    prompts: int = 32  # prompts drawn from the dataset


@dataclass(frozen=True)
class GRPOResult:
    steps: int
    train_loss: float | None
    mean_reward: float | None
    rewards_computed: int
    programs_probed: int
    seconds: float
    resumed_from: str | None


def _left_trim(tokenizer: Any, prompt: str, limit: int) -> str:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return prompt if len(ids) <= limit else str(tokenizer.decode(ids[-limit:]))


def prompt_rows(dataset_folder: Path, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` architecture examples of the training split. Improve examples
    (repair prompts, whose answer continues ``import torch`` rather than ``class Net``) are
    left out: the reward reads a completion as the continuation of the architecture prompt."""
    rows = read_examples(dataset_folder / "train.jsonl")
    return [r for r in rows if r.get("kind", "architecture") != "improve"][:limit]


def grpo(source: str, dataset_folder: Path, reward: SandboxReward, adapter_out: Path,
         checkpoints: Path, *, settings: GRPOSettings = GRPOSettings(),
         lora: SFTSettings | None = None, start_adapter: Path | None = None,
         resume: bool = True, callbacks: list[Any] | None = None,
         log: Callable[[str], None] | None = None) -> GRPOResult:
    """Run GRPO from ``source`` (plus ``start_adapter``, e.g. the SFT result, when given)."""
    lora = lora or SFTSettings()
    torch = optional_import("torch", "llm")
    trl = optional_import("trl", "llm")
    datasets = optional_import("datasets", "llm")
    rows = prompt_rows(dataset_folder, settings.prompts)
    if not rows:
        raise LearnError(f"{dataset_folder} has no training prompts (train.jsonl is empty)")
    model, tokenizer = load_base(source, lora.dtype)
    if start_adapter is not None:
        peft = optional_import("peft", "llm")
        model = peft.PeftModel.from_pretrained(model, str(start_adapter), is_trainable=True)
    else:
        model = lora_model(model, lora)
    prompts = [{"prompt": _left_trim(tokenizer, r["prompt"], settings.max_prompt_tokens)}
               for r in rows]
    checkpoints.mkdir(parents=True, exist_ok=True)
    args = trl.GRPOConfig(
        output_dir=str(checkpoints), per_device_train_batch_size=settings.num_generations,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length, temperature=settings.temperature,
        learning_rate=settings.learning_rate, beta=settings.beta, max_steps=settings.max_steps,
        save_steps=settings.save_steps, save_total_limit=2, logging_steps=1, report_to=[],
        seed=settings.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        dataloader_num_workers=0)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[reward], args=args,
                              train_dataset=datasets.Dataset.from_list(prompts),
                              processing_class=tokenizer, callbacks=callbacks or [])
    quiet(trainer, log or logger.info)
    last = latest_checkpoint(checkpoints) if resume else None
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    seconds = time.perf_counter() - start
    adapter_out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(adapter_out))
    logged = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    loss = output.training_loss
    return GRPOResult(int(output.global_step), loss if loss is not None and math.isfinite(loss)
                      else None, sum(logged) / len(logged) if logged else None, reward.calls,
                      reward.probed, seconds, str(last) if last else None)
