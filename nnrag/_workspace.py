"""The learning loop wired to the stages it needs: ``generate`` and ``learn`` meet here.

``learn`` and ``generate`` are sibling stages and may not import each other. The workspace
(the API layer) gives the loop ``generate``'s prompt format and probe
(:class:`~nnrag.generate.training.TrainingFormat`), its adapter store and its pipeline (to
measure the generator), and ``learn``'s dataset builder, fine-tunes and reward.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnrag.exceptions import LearnError, NnragError

if TYPE_CHECKING:
    from nnrag.learn import Dataset
    from nnrag.learn.loop import LearnConfig, Measured, Tuned
    from nnrag.workspace import Workspace


def _tokenizer_counter(source: str) -> Callable[[str], int]:
    from nnrag._imports import optional_import

    transformers = optional_import("transformers", "llm")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise LearnError(f"cannot load the tokenizer of base model {source!r}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None
    return lambda text: len(tok(text, add_special_tokens=True)["input_ids"])


class WorkspaceLearn:
    """:class:`~nnrag.learn.loop.LoopHooks` over one workspace."""

    def __init__(self, ws: Workspace, config: LearnConfig,
                 say: Callable[[str], None] | None = None) -> None:
        from nnrag.generate.adapters import AdapterStore
        from nnrag.generate.training import TrainingFormat, base_source
        from nnrag.learn import ProbeCache

        self.ws, self.cfg = ws, config
        self.say = say or (lambda line: None)
        try:
            self.source, self.base = base_source(config.base)
        except NnragError as exc:
            raise LearnError(f"base model cannot be loaded: {exc}") from None
        self.fmt = TrainingFormat(config.task, config.data, max_length=config.max_length,
                                  count_tokens=_tokenizer_counter(self.source),
                                  tokenizer_id=self.base, jobs=config.workers,
                                  blocks=config.blocks, index_db=Path(ws.db))
        self.store = AdapterStore(ws.home / "adapters")
        self.dir = ws.home / "learn"
        self.cache = ProbeCache(self.dir / "probe_cache.jsonl")

    # -- the starting point
    def start(self) -> Tuned | None:
        from nnrag.learn.loop import Tuned

        info = self.store.resolve(self.cfg.adapter, self.base)
        return None if info is None else Tuned(info.number, info.path, info.metrics)

    # -- hooks
    def dataset(self, cycle: int) -> Dataset:
        from nnrag.learn import DatasetSettings, build_dataset, load_dataset

        cfg = self.cfg
        if cfg.dataset is not None:
            ds = load_dataset(cfg.dataset)
            fmt = ds.manifest.get("format", {})
            if fmt.get("dataset") not in (None, cfg.data):
                raise LearnError(f"dataset {cfg.dataset} was built for {fmt.get('dataset')}, "
                                 f"not {cfg.data}")
            return ds
        programs, sources = self._programs()
        improvements = self._lineage(sources)
        settings = DatasetSettings(shots=cfg.shots, heldout_fraction=cfg.heldout_fraction,
                                   seed=cfg.seed, lemur_limit=cfg.lemur_limit)
        key = hashlib.sha1(json.dumps([asdict(s) for s in sources] + [asdict(settings),
                                      self.fmt.describe()], sort_keys=True).encode()).hexdigest()
        return build_dataset(programs, self.fmt, self.dir / "datasets" / key[:12],
                             settings=settings, sources=sources, cache=self.cache,
                             improvements=improvements)

    def _lineage(self, sources: list[Any]) -> list[Any]:
        """Parent -> better child pairs on the dataset (index lineage, run store results);
        recorded as a source so the dataset's key changes when one appears."""
        from nnrag.learn import Source
        from nnrag.learn.lineage import lineage_improvements

        if not self.cfg.use_runs:
            return []
        try:
            found = lineage_improvements(Path(self.ws.db), Path(self.ws.runs), self.cfg.data,
                                         corpus=self.cfg.corpus)
        except NnragError as exc:  # a damaged or newer index: no improve examples, said so
            self.say(f"lineage not read, no improve examples: {exc}")
            found = []
        sources.append(Source("lineage", str(self.ws.db), _sha_of(
            f"{i.parent.source}>{i.child.source}:{i.parent.code}\0{i.child.code}"
            for i in found), len(found)))
        return found

    def _programs(self) -> tuple[list[Any], list[Any]]:
        from nnrag.learn import Source, corpus_programs, lemur_programs, run_programs
        from nnrag.learn.programs import file_sha256

        cfg = self.cfg
        kind = self.fmt.info.kind
        programs, sources = [], []
        if cfg.use_corpus:
            found = list(corpus_programs(kind, cfg.corpus))
            sources.append(Source("corpus", str(cfg.corpus or "nnrag/examples/corpus"),
                                  _sha_of(p.code for p in found), len(found)))
            programs += found
        if cfg.use_runs:
            found = list(run_programs(self.ws.runs, cfg.data))
            sources.append(Source("runs", str(self.ws.runs), _sha_of(p.code for p in found),
                                  len(found)))
            programs += found
        if cfg.lemur is not None:
            found = list(lemur_programs(cfg.lemur, cfg.lemur_limit))
            sources.append(Source("lemur", str(cfg.lemur), file_sha256(cfg.lemur)
                                  if cfg.lemur.is_file() else _sha_of(p.code for p in found),
                                  len(found)))
            programs += found
        return programs, sources

    def finetune(self, dataset: Dataset, method: str, cycle: int,
                 start: Tuned | None) -> Tuned:
        from nnrag.learn.grpo import GRPOSettings, grpo
        from nnrag.learn.loop import Tuned
        from nnrag.learn.reward import SandboxReward
        from nnrag.learn.sft import SFTSettings, finetune

        cfg = self.cfg
        sft = SFTSettings(max_steps=cfg.steps, max_length=cfg.max_length, seed=cfg.seed)
        grpo_settings = GRPOSettings(max_steps=cfg.grpo_steps, seed=cfg.seed,
                                     max_prompt_tokens=max(64, cfg.max_length - 384))
        key = hashlib.sha1(json.dumps([self.base, dataset.dataset_hash, method, asdict(sft),
                                       asdict(grpo_settings)], sort_keys=True,
                                      default=str).encode()).hexdigest()[:12]
        checkpoints = self.dir / "checkpoints" / key
        staged = self.store.staging()
        metrics: dict[str, Any] = {}
        try:
            if method in ("sft", "sft+grpo"):
                out = staged if method == "sft" else checkpoints / "sft-adapter"
                result = finetune(self.source, dataset.folder, out, checkpoints / "sft",
                                  settings=sft, log=self.say)
                metrics.update(train_loss=result.train_loss, heldout_loss=result.heldout_loss,
                               sft_steps=result.steps, sft_s=round(result.seconds, 3),
                               resumed_from=result.resumed_from)
            if method in ("grpo", "sft+grpo"):
                reward = SandboxReward(self.fmt, cache=self.cache,
                                       accuracy=self.accuracy if cfg.reward_train else None)
                g = grpo(self.source, dataset.folder, reward, staged, checkpoints / "grpo",
                         settings=grpo_settings, lora=sft,
                         start_adapter=checkpoints / "sft-adapter" if method == "sft+grpo"
                         else None, log=self.say)
                metrics.update(grpo_steps=g.steps, mean_reward=g.mean_reward,
                               grpo_s=round(g.seconds, 3), programs_probed=g.programs_probed)
            info = self.store.publish(staged, {
                "base": self.base, "base_source": self.source, "method": method,
                "cycle": cycle, "dataset_hash": dataset.dataset_hash,
                "dataset": str(dataset.folder), "metrics": metrics,
                "settings": {"sft": asdict(sft), "grpo": asdict(grpo_settings),
                             "format": self.fmt.describe()}})
        except OSError as exc:  # disk full, permissions: nothing was published
            self.store.discard(staged)
            raise LearnError(f"saving the adapter failed ({exc}); nothing was published, the "
                             f"checkpoints in {checkpoints} are kept: rerun to resume") from None
        except BaseException:
            self.store.discard(staged)
            raise
        return Tuned(info.number, info.path, metrics)

    def accuracy(self, codes: Sequence[str]) -> list[float | None]:
        """The GRPO bonus: each program's accuracy after one short epoch through the engine
        (sandboxed; a twin already trained is answered from the run store)."""
        from nnrag.train.spec import Budget, ModelRef, TrainSpec

        cfg = self.cfg
        specs = [TrainSpec(model=ModelRef(code=code, name="grpo_" + hashlib.sha1(
                               code.encode()).hexdigest()[:8]), dataset=cfg.data,
                           budget=Budget(epochs=1, wall_s=120.0), limit=cfg.limit,
                           seed=cfg.seed) for code in codes]
        batch = self.ws.train(specs, workers=cfg.workers)
        runs = self.ws.run_store()
        try:
            rows = [runs.get(run_id) for run_id in batch.run_ids]
        finally:
            runs.close()
        return [row.best if row.outcome == "ok" else None for row in rows]

    def measure(self, adapter: Tuned | None, pool: Dataset, cycle: int) -> Measured:
        from nnrag.generate import BackendConfig, GenerateConfig, make_backend
        from nnrag.learn import read_examples
        from nnrag.learn.loop import Measured

        cfg = self.cfg
        config = GenerateConfig(task=cfg.task, dataset=cfg.data, n=cfg.per_cycle,
                                shots=cfg.shots, blocks=cfg.blocks, epochs=cfg.epochs,
                                workers=cfg.workers, seed=cfg.seed,
                                max_new_tokens=cfg.max_new_tokens, repairs=cfg.repairs,
                                train=cfg.train, limit=cfg.limit, corpus=cfg.corpus)
        backend = make_backend(BackendConfig(model=cfg.base, style="completion",
                                             adapter=str(adapter.path) if adapter else None))
        try:
            report = self.ws.generate(config, backend)
        finally:
            backend.close()
        known = {r["fingerprint"] for split in (pool.train_path, pool.heldout_path)
                 for r in read_examples(split)}
        unique = [c for c in report.candidates
                  if c.schema_valid and c.duplicate_of is None and c.copy_of is None]
        novel = sum(c.fingerprint is not None and c.fingerprint not in known for c in unique)
        return Measured(cfg.per_cycle, report.parsed, report.schema_valid, report.unique, novel,
                        report.executable, report.trained, report.best_accuracy,
                        report.mean_accuracy)


def _sha_of(codes: Any) -> str:
    digest = hashlib.sha256()
    for code in codes:
        digest.update(hashlib.sha256(code.encode()).digest())
    return digest.hexdigest()


def learn_dataset(ws: Workspace, config: LearnConfig) -> Dataset:
    """Build (or reuse, by key) the dataset the loop's first cycle would train on."""
    return WorkspaceLearn(ws, config).dataset(0)


def learn(ws: Workspace, config: LearnConfig,
          say: Callable[[str], None] | None = None) -> list[Any]:
    """Run the loop (see :func:`nnrag.learn.loop.run_loop`); returns its rows."""
    from nnrag.learn.loop import CycleLog, run_loop

    hooks = WorkspaceLearn(ws, config, say)
    return run_loop(hooks, CycleLog(ws.home / "learn" / "cycles.jsonl"), cycles=config.cycles,
                    method=config.method, base=hooks.base, start=hooks.start(), progress=say)
