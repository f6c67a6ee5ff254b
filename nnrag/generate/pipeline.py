"""The generation pipeline: prompt, parse, fix, validate, deduplicate, probe, repair, train.

For each of ``n`` prompts: pick references and retrieve blocks, render and fit the prompt,
sample an answer, extract code and spec, auto-fix minor problems, re-prompt once on a
structural violation, obtain a spec (from the answer, else a constrained spec call),
splice referenced blocks, and deduplicate. Then every unique candidate is probed in the
sandbox (build, forward, backward); failures get up to ``repairs`` repair prompts with
the sandbox's traceback. Executable candidates are trained by the execution engine, and
the ones that train are written back to the index with their prompt, parents and LLM.
Generated code never runs in this process.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from nnrag.exceptions import ContextOverflowError, NnragError
from nnrag.generate.backends.base import Backend, Completion, Sampling
from nnrag.generate.events import Generated, Probed, Progress, PromptFitted
from nnrag.generate.fixes import (
    Splice,
    copy_reference_definitions,
    fix_code,
    splice_blocks,
    structural_problem,
    supported_names,
)
from nnrag.generate.parsing import ParseError, extract_code, extract_spec
from nnrag.generate.prompts import (
    BlockRef,
    Fitted,
    Reference,
    TaskText,
    architecture_prompt,
    repair_prompt,
    spec_prompt,
)
from nnrag.generate.records import Candidate, GenerateConfig, GenerateReport
from nnrag.generate.references import pick_references, ranked_references, retrieve_blocks
from nnrag.generate.spec_fixes import build_spec, spec_schema
from nnrag.logging import get_logger
from nnrag.train.spec import SpecError, TrainSpec

logger = get_logger(__name__)

PROBE_ENTRY = "nnrag.generate._probe:run"
TASKS = ("image-classification", "signal-classification")
COMPLETION_STOPS = ("```", "\n## ", "\n### ")


def task_text(task: str, dataset: str) -> tuple[TaskText, Any]:
    """The task's wording and the dataset's facts; unknown names are clear errors."""
    from nnrag.train.datasets import dataset_info

    if task not in TASKS:
        raise NnragError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    info = dataset_info(dataset)  # UnknownDatasetError lists close names
    wanted = "image" if task == "image-classification" else "signal"
    if info.kind != wanted:
        raise NnragError(f"{dataset} is a {info.kind} dataset; "
                         f"use --task {info.kind}-classification")
    shape = "(batch, " + ", ".join(map(str, info.in_shape)) + ")"
    return (TaskText(task, dataset, info.description.rstrip(".") + ".", shape, info.num_classes),
            info)


class Generator:
    """Runs the pipeline with one loaded backend (reuse it for several configs)."""

    def __init__(self, backend: Backend, config: GenerateConfig,
                 progress: Progress | None = None) -> None:
        self.backend = backend
        self.config = config
        self.progress = progress or (lambda event: None)
        self.task, self.info = task_text(config.task, config.dataset)
        from nnrag.config import default_db_path, nnrag_home

        self.runs_db = config.runs_db or nnrag_home() / "runs.db"
        self.index_db = config.index_db or default_db_path()
        self._blocks_cache: dict[tuple[str, ...], tuple[list[BlockRef], list[str]]] = {}

    # -- one answer
    def _sample(self, cand: Candidate, prompt: Any, max_new: int, stop: tuple[str, ...], salt: int,
                schema: dict[str, Any] | None = None, kind: str = "architecture") -> Completion:
        cfg = self.config
        sampling = Sampling(cfg.temperature, cfg.top_p, max_new,
                            cfg.seed * 100_003 + cand.index * 101 + salt, stop)
        completion = self.backend.generate(prompt, sampling, schema)
        cand.generations.append({"kind": kind, **completion.record()})
        self.report.prompts_sent += 1
        self.report.generation_s += completion.seconds
        self.report.completion_tokens += completion.completion_tokens
        return completion

    def _code_from(self, cand: Candidate, text: str, prefix: str) -> str | None:
        fence = "```python\n" if self.backend.style == "completion" else ""  # the prompt opened it
        try:
            code, notes = extract_code(text, prefix=fence + prefix)
        except ParseError as exc:
            cand.error = str(exc)
            return None
        cand.add_notes(n for n in notes if not (fence and "closing fence" in n))
        fixed, fixes = fix_code(code)
        if fixes:
            cand.add_notes(fixes)
            self._autofixed.add(cand.index)
        return fixed

    def _stop(self) -> tuple[str, ...]:
        """Completion answers end at the closing fence or at the next markdown heading (a base
        model that closes its module tends to go on with another reference)."""
        return COMPLETION_STOPS if self.backend.style == "completion" else ()

    def _generate_one(self, cand: Candidate, ranked: list[Reference]) -> None:
        cfg = self.config
        refs = pick_references(ranked, cfg.shots, cand.index)
        key = tuple(r.name for r in refs)
        if key not in self._blocks_cache:
            self._blocks_cache[key] = retrieve_blocks(self.index_db, self.task.task, refs,
                                                      cfg.blocks)
        blocks, notes = self._blocks_cache[key]
        for note in notes:
            if note not in self.report.notes:
                self.report.notes.append(note)
        fitted = architecture_prompt(self.backend, self.task, refs, blocks, cfg.max_new_tokens)
        self._fitted[cand.index] = fitted
        cand.references = [r.source for r in fitted.references]
        cand.blocks = [b.qualname for b in fitted.blocks]
        cand.prompt_tokens, cand.cuts, cand.prompt = (fitted.tokens, list(fitted.cuts),
                                                      fitted.prompt.flat())
        self.progress(PromptFitted(cand.index, fitted.tokens, tuple(fitted.cuts)))
        answer = self._sample(cand, fitted.prompt, cfg.max_new_tokens, self._stop(), 0)
        code = self._code_from(cand, answer.text, fitted.code_prefix)
        if code is None:
            cand.status = "unparsed"
            return
        cand.parsed = True
        problem = structural_problem(code)
        while problem and cand.reprompts < cfg.reprompts:
            cand.reprompts += 1
            self.report.reprompts_used += 1
            cand.notes.append(f"re-prompted: {problem}")
            prompt, prefix = repair_prompt(self.backend, self.task, fitted, code, problem,
                                           cfg.max_new_tokens)
            answer = self._sample(cand, prompt, cfg.max_new_tokens, self._stop(),
                                  10 + cand.reprompts, kind="reprompt")
            code = self._code_from(cand, answer.text, prefix) or code
            problem = structural_problem(code)
        cand.code = code
        if problem:
            cand.status, cand.error = "invalid_code", problem
            return
        cand.code = code = self._close_names(cand, code, fitted)
        spec = self._spec(cand, fitted, answer.text, code)
        if spec is None:
            cand.status = "invalid_spec"
            return
        cand.spec = spec.model_dump(exclude={"model"})
        cand.schema_valid = True
        self._dedup(cand)

    def _close_names(self, cand: Candidate, code: str, fitted: Fitted) -> str:
        """Bind the names the code uses but never defines: retrieved blocks are spliced in
        (scope-closed, from the index) first, then the references' own module constants and
        helpers are copied (an auto-fix, noted)."""
        splices = {b.name: Splice(b.name, b.qualname, b.code) for b in fitted.blocks}
        code, spliced = splice_blocks(code, splices)
        if spliced:
            cand.spliced = sorted(set(cand.spliced) | set(spliced))
            cand.notes.append("spliced " + ", ".join(spliced))
        code, notes = copy_reference_definitions(
            code, [(r.source, r.full_code or r.code) for r in fitted.references])
        if notes:
            cand.add_notes(notes)
            self._autofixed.add(cand.index)
        return code

    def _spec(self, cand: Candidate, fitted: Fitted, text: str, code: str) -> TrainSpec | None:
        """The answer's spec, else one spec call (constrained where the backend can)."""
        data, why = (extract_spec(text) if self.backend.style == "chat"
                     else (None, "completion answers hold code only"))
        spec = self._validated(cand, data, code)
        if spec is not None:
            return spec
        schema = spec_schema() if self.config.constrained and self.backend.supports_schema else None
        try:
            prompt = spec_prompt(self.backend, self.task, fitted, code)
            answer = self._sample(cand, prompt, self.config.spec_max_new_tokens,
                                  self._stop() if schema is None else (), 20, schema, kind="spec")
        except ContextOverflowError as exc:
            cand.error = str(exc)
            return None
        body = answer.text if self.backend.style == "chat" else "```json\n" + answer.text + "\n```"
        data, why = extract_spec(body)
        if data is None:
            cand.error = f"spec: {why}"
            return None
        return self._validated(cand, data, code)

    def _validated(self, cand: Candidate, data: dict[str, Any] | None,
                   code: str) -> TrainSpec | None:
        if data is None:
            return None
        cfg = self.config
        try:
            spec, notes = build_spec(data, code=code, name=f"gen{cand.index}", dataset=cfg.dataset,
                                     epochs=cfg.epochs, seed=cfg.seed, wall_s=cfg.wall_s,
                                     limit=cfg.limit, supported=supported_names(code))
        except SpecError as exc:
            cand.error = f"spec: {exc}"
            return None
        if notes:
            cand.add_notes(notes)
            self._autofixed.add(cand.index)
        self._specs[cand.index] = spec
        return spec

    def _dedup(self, cand: Candidate) -> None:
        from nnrag.index import code_fingerprint, normalised_md5

        assert cand.code is not None
        cand.copy_of = cand.duplicate_of = None
        start = time.perf_counter()
        cand.md5, cand.fingerprint = normalised_md5(cand.code), code_fingerprint(cand.code)
        twin = self._seen.get(cand.md5) or self._seen.get(cand.fingerprint)
        self._dedup_s.append(time.perf_counter() - start)
        copy = self._reference_keys.get(cand.md5) or self._reference_keys.get(cand.fingerprint)
        if copy is not None:
            cand.status, cand.copy_of = "duplicate", copy
            cand.notes.append(f"a copy of reference {copy}: not a new model")
            return
        if twin is not None and twin != cand.index:
            cand.status, cand.duplicate_of = "duplicate", twin
            return
        self._seen[cand.md5] = self._seen[cand.fingerprint] = cand.index
        cand.status = "unique"

    # -- sandbox probe and repair
    def _probe(self, cands: list[Candidate]) -> None:
        from nnrag.sandbox import Limits, run_many

        payloads = []
        for c in cands:
            spec = self._specs[c.index]
            payloads.append({"code": c.code, "module_name": f"nnrag_candidate_{c.index}",
                             "in_shape": [spec.hyperparameters.batch_size, *self.info.in_shape],
                             "num_classes": self.info.num_classes,
                             "prm": spec.hyperparameters.prm()})
        results = run_many(PROBE_ENTRY, payloads,
                           limits=Limits(wall_s=self.config.probe_wall_s, memory_mb=2048),
                           jobs=max(1, self.config.workers), keep_workers=True)
        for c, result in zip(cands, results, strict=True):
            if result.ok and isinstance(result.value, dict):
                c.probe = result.value
            else:
                c.probe = {"ok": False, "stage": result.status, "seconds": result.duration_s,
                           "error": (f"{result.error_type}: {result.error_message}"
                                     if result.error_type else result.status),
                           "traceback": (result.traceback or "")[-2500:]}
            c.executable = bool(c.probe.get("ok"))
            c.status = "executable" if c.executable else "not_executable"
            # a repaired model has no error left
            c.error = None if c.executable else c.probe.get("error")
            self.progress(Probed(c.index, c.executable, c.error, c.repairs))

    def _repair(self, cand: Candidate, fitted_by_index: dict[int, Fitted]) -> bool:
        """One repair prompt for a candidate that failed the probe; True if it changed."""
        cfg = self.config
        assert cand.code is not None and cand.probe is not None
        error = cand.probe.get("traceback") or cand.probe.get("error") or "it failed"
        cand.repairs += 1
        self.report.repairs_used += 1
        try:
            prompt, prefix = repair_prompt(self.backend, self.task, fitted_by_index[cand.index],
                                           cand.code, error, cfg.max_new_tokens)
        except ContextOverflowError as exc:
            cand.notes.append(f"repair skipped: {exc}")
            return False
        answer = self._sample(cand, prompt, cfg.max_new_tokens, self._stop(), 30 + cand.repairs,
                              kind="repair")
        code = self._code_from(cand, answer.text, prefix)
        if code is None or structural_problem(code):
            cand.notes.append(f"repair {cand.repairs} gave no usable code")
            return False
        cand.code = code = self._close_names(cand, code, fitted_by_index[cand.index])
        spec = self._specs[cand.index]
        self._specs[cand.index] = spec.model_copy(
            update={"model": spec.model.model_copy(update={"code": code})})
        for key in (cand.md5, cand.fingerprint):
            if key is not None and self._seen.get(key) == cand.index:
                del self._seen[key]
        self._dedup(cand)
        return cand.status == "unique"

    # -- the whole run
    def run(self) -> GenerateReport:
        cfg = self.config
        start = time.perf_counter()
        self.report = GenerateReport(self.backend.describe(),
                                     {k: str(v) if isinstance(v, Path) else v
                                      for k, v in asdict(cfg).items()})
        self._specs: dict[int, TrainSpec] = {}
        self._seen: dict[str, int] = {}
        self._dedup_s: list[float] = []
        self._autofixed: set[int] = set()
        ranked = ranked_references(self.info.kind, cfg.dataset, self.runs_db, cfg.corpus)
        self._reference_keys = reference_keys(ranked)
        if cfg.shots > 0 and not ranked:
            self.report.notes.append("no reference models found (run store empty, corpus missing)")
        self._fitted: dict[int, Fitted] = {}
        for i in range(cfg.n):
            cand = Candidate(i)
            self.report.candidates.append(cand)
            self._generate_one(cand, ranked)
            self.progress(Generated(i, cfg.n, cand.status, cand.error, tuple(cand.notes)))
        todo = [c for c in self.report.candidates if c.status == "unique"]
        if todo:
            self._probe(todo)
        for _ in range(cfg.repairs):
            broken = [c for c in self.report.candidates if c.status == "not_executable"]
            if not broken:
                break
            changed = [c for c in broken if self._repair(c, self._fitted)]
            if changed:
                self._probe(changed)
                for c in changed:
                    if c.executable:
                        self.report.repaired += 1
        if cfg.train:
            self._train([c for c in self.report.candidates if c.executable])
        self._tally(time.perf_counter() - start)
        return self.report

    def _train(self, cands: list[Candidate]) -> None:
        if not cands:
            return
        from nnrag.train.executors import LocalExecutor
        from nnrag.train.runstore import RunStore
        from nnrag.train.wiring import indexed_engine

        runs = RunStore(self.runs_db)
        engine = indexed_engine(runs, LocalExecutor(self.config.workers), self.index_db)
        specs = [self._specs[c.index] for c in cands]
        batch = engine.train(specs, self.progress)
        self.report.reused = batch.deduplicated
        for cand, run_id in zip(cands, batch.run_ids, strict=True):
            row = runs.get(run_id)
            cand.run_id, cand.outcome, cand.best = run_id, row.outcome, row.best
            cand.indexed_as = row.indexed_as
            cand.status = "trained" if row.outcome == "ok" else f"train_{row.outcome}"
            if row.outcome != "ok":
                cand.error = row.error
            if row.duplicate_of:
                cand.notes.append(f"already trained as run {row.duplicate_of}: result reused")
                twin = runs.get(row.duplicate_of)
                cand.indexed_as = cand.indexed_as or twin.indexed_as
        runs.close()
        self._record_provenance(cands)

    def _record_provenance(self, cands: list[Candidate]) -> None:
        from nnrag.index import Store

        written = [c for c in cands if c.indexed_as]
        if not written:
            return
        try:
            with Store(self.index_db) as store:
                for c in written:
                    store.record_provenance(str(c.indexed_as), "generate", {
                        "prompt": c.prompt, "references": c.references, "blocks": c.blocks,
                        "spliced": c.spliced, "backend": self.report.backend,
                        "generations": c.generations, "run_id": c.run_id,
                        "task": self.config.task, "dataset": self.config.dataset,
                        "notes": c.notes, "repairs": c.repairs})
        except NnragError as exc:
            # a bonus, like the engine's write-back: never lose the runs over it
            logger.warning("recording provenance failed: %s", exc)

    def _tally(self, seconds: float) -> None:
        r = self.report
        cands = r.candidates
        r.parsed = sum(c.parsed for c in cands)
        r.schema_valid = sum(c.schema_valid for c in cands)
        r.unique = sum(c.schema_valid and c.duplicate_of is None and c.copy_of is None
                       for c in cands)
        r.reference_copies = sum(c.copy_of is not None for c in cands)
        r.executable = sum(c.executable for c in cands)
        r.trained = sum(c.outcome == "ok" for c in cands)
        scores = [c.best for c in cands if c.outcome == "ok" and c.best is not None]
        r.best_accuracy = max(scores) if scores else None
        r.mean_accuracy = sum(scores) / len(scores) if scores else None
        r.autofixed = len(self._autofixed)
        r.mean_prompt_tokens = (sum(c.prompt_tokens for c in cands) / len(cands)) if cands else 0.0
        r.dedup_ms_per_program = (1000 * sum(self._dedup_s) / len(self._dedup_s)
                                  if self._dedup_s else 0.0)
        r.seconds = seconds


def reference_keys(refs: list[Reference]) -> dict[str, str]:
    """Normalised MD5 and fingerprint of every reference, as shown and as written, to its name."""
    from nnrag.index import code_fingerprint, normalised_md5

    keys: dict[str, str] = {}
    for ref in refs:
        for code in {ref.code, ref.full_code or ref.code}:
            keys[normalised_md5(code)] = keys[code_fingerprint(code)] = ref.name
    return keys


def generate(backend: Backend, config: GenerateConfig,
             progress: Progress | None = None) -> GenerateReport:
    """Run the pipeline once (see :class:`Generator`)."""
    return Generator(backend, config, progress).run()


def with_seed(config: GenerateConfig, seed: int) -> GenerateConfig:
    return replace(config, seed=seed)
