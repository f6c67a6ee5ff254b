"""The learning loop: the generator is fine-tuned on programs that provably run.

``nnrag.learn`` turns proven programs (the seed corpus, the LEMUR zoo, models trained and
written back) into training examples in ``nnrag generate``'s prompt format
(:func:`build_dataset`), with "improve" examples from lineage where a child trained
better than its parent (:func:`lineage_improvements`), fine-tunes a LoRA adapter on them
(:func:`finetune`), and improves it with GRPO on a reward the sandbox measures
(:class:`SandboxReward`, :func:`grpo`).
``learn`` is a sibling of ``generate``: the prompt format, the probe and the adapter store
are injected by the workspace (:meth:`nnrag.workspace.Workspace.learn`), never imported.
torch, transformers, peft and trl load only when a fine-tune runs.
"""

from nnrag.learn._cache import ProbeCache
from nnrag.learn.dataset import (
    Dataset,
    DatasetSettings,
    ExampleFormat,
    Source,
    build_dataset,
    load_dataset,
    read_examples,
)
from nnrag.learn.lineage import Improvement, lineage_improvements
from nnrag.learn.programs import Program, corpus_programs, family_of, lemur_programs, run_programs
from nnrag.learn.reward import RUNGS, SandboxReward, rung_reward

__all__ = ["RUNGS", "Dataset", "DatasetSettings", "ExampleFormat", "Improvement", "ProbeCache",
           "Program", "SandboxReward", "Source", "build_dataset", "corpus_programs",
           "family_of", "lemur_programs", "lineage_improvements", "load_dataset",
           "read_examples", "rung_reward", "run_programs"]
