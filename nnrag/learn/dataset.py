"""Training examples for the generator from proven programs, reproducibly.

An example is a prompt exactly as ``nnrag generate`` renders it (task, dataset, shape,
``shots`` references, contract) and, as its completion, a *different* proven program
rewritten to continue the prompt. An "improve" example (from lineage: a parent and the
child of it that trained better, :mod:`nnrag.learn.lineage`) is generate's repair prompt
showing the parent, and the child as its completion. Only answers that pass the sandbox
probe on the prompt's input shape are kept (cached by hash of code and shape), answers are
deduplicated by their structural fingerprint, and whole families are held out for
evaluation. The format comes from the caller (the workspace injects ``generate``'s
:class:`~nnrag.generate.training.TrainingFormat`): ``learn`` may not import its sibling
stage.

A dataset is a folder with ``train.jsonl``, ``heldout.jsonl`` and ``manifest.json``
(settings, format, sources with their hashes, counts, file hashes). The same inputs and
settings give byte-identical files and the same ``dataset_hash``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nnrag.exceptions import LearnError
from nnrag.learn._cache import ProbeCache, probe_key
from nnrag.learn.lineage import Improvement
from nnrag.learn.programs import Program


class ExampleFormat(Protocol):
    """What the dataset builder needs from the generator's prompt format."""

    def describe(self) -> dict[str, Any]: ...

    def answer(self, code: str) -> str | None: ...

    def program(self, answer: str) -> str: ...

    def prompt(self, references: Sequence[Program], answer: str) -> str | None: ...

    def improve_prompt(self, references: Sequence[Program], parent: str, score: float,
                       answer: str, metric: str = "accuracy") -> str | None: ...

    def improve_completion(self, answer: str) -> str: ...

    def blocks_in(self, prompt: str) -> bool: ...

    def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class DatasetSettings:
    """How examples are drawn (recorded in the manifest)."""

    shots: int = 1
    prompts_per_answer: int = 1
    heldout_fraction: float = 0.15
    seed: int = 0
    lemur_limit: int | None = None
    probe_batch: int = 64

    def __post_init__(self) -> None:
        if self.shots < 0 or self.prompts_per_answer < 1 or not 0 <= self.heldout_fraction < 1:
            raise LearnError("dataset settings: shots >= 0, prompts_per_answer >= 1, "
                             "0 <= heldout_fraction < 1")


@dataclass(frozen=True)
class Source:
    """One input of a dataset and its identity (manifest)."""

    kind: str  # corpus | lemur | runs
    location: str
    sha256: str
    programs: int


@dataclass(frozen=True)
class Dataset:
    """A built dataset on disk."""

    folder: Path
    dataset_hash: str
    train: int
    heldout: int
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def train_path(self) -> Path:
        return self.folder / "train.jsonl"

    @property
    def heldout_path(self) -> Path:
        return self.folder / "heldout.jsonl"


def load_dataset(folder: Path) -> Dataset:
    """A dataset folder written by :func:`build_dataset`."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LearnError(f"{folder} is not an nnrag learn dataset (manifest.json: {exc})") from None
    counts = manifest.get("counts", {})
    return Dataset(folder, manifest["dataset_hash"], int(counts.get("train_examples", 0)),
                   int(counts.get("heldout_examples", 0)), manifest)


def read_examples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass
class _Candidate:
    program: Program
    answer: str
    fingerprint: str
    key: str
    probe: dict[str, Any] | None = None


def _probe_all(cands: list[_Candidate], fmt: ExampleFormat, cache: ProbeCache,
               batch: int, progress: Callable[[int, int], None]) -> int:
    """Probe every candidate not in the cache; returns how many ran in the sandbox."""
    todo = [c for c in cands if cache.get(c.key) is None]
    for i in range(0, len(todo), batch):
        chunk = todo[i: i + batch]
        for c, result in zip(chunk, fmt.probe([fmt.program(c.answer) for c in chunk]),
                             strict=True):
            cache.put(c.key, result)
        progress(min(i + batch, len(todo)), len(todo))
    for c in cands:
        c.probe = cache.get(c.key)
    return len(todo)


def _split(families: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The held-out families: a seeded draw of ``ceil(fraction * n)`` (none of a single one)."""
    names = sorted(set(families))
    if len(names) < 2 or fraction <= 0:
        return set()
    rng = random.Random(seed)
    rng.shuffle(names)
    return set(names[: min(len(names) - 1, math.ceil(fraction * len(names)))])


def _references(pool: list[_Candidate], answer: _Candidate, shots: int,
                rng: random.Random, avoid: Iterable[str] = ()) -> list[Program]:
    """``shots`` references of distinct families, none the answer's family or structure
    (nor a structure in ``avoid``)."""
    order = list(pool)
    rng.shuffle(order)
    refs: list[Program] = []
    families = {answer.program.family}
    skip = {answer.fingerprint, *avoid}
    for c in order:
        if c.program.family in families or c.fingerprint in skip:
            continue
        refs.append(c.program)
        families.add(c.program.family)
        if len(refs) == shots:
            break
    return refs


def build_dataset(programs: Iterable[Program], fmt: ExampleFormat, out: Path, *,
                  settings: DatasetSettings = DatasetSettings(),
                  sources: Sequence[Source] = (), cache: ProbeCache | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  improvements: Iterable[Improvement] = ()) -> Dataset:
    """Build the dataset into ``out`` (replaced atomically) and return it; ``improvements``
    (parent -> better child pairs) add "improve" examples."""
    from nnrag.index import code_fingerprint

    cache = cache if cache is not None else ProbeCache()
    report = progress or (lambda done, total: None)
    shape = {k: v for k, v in fmt.describe().items() if k in ("in_shape", "num_classes")}
    counts: dict[str, int] = {"programs": 0, "no_answer_form": 0, "duplicates": 0}
    cands: list[_Candidate] = []
    seen: set[str] = set()
    for program in programs:
        counts["programs"] += 1
        answer = fmt.answer(program.code)
        if answer is None:
            counts["no_answer_form"] += 1
            continue
        code = fmt.program(answer)
        try:
            fingerprint = code_fingerprint(code)
        except Exception:  # noqa: BLE001 - an unparsable program is simply not an answer
            counts["no_answer_form"] += 1
            continue
        if fingerprint in seen:
            counts["duplicates"] += 1
            continue
        seen.add(fingerprint)
        cands.append(_Candidate(program, answer, fingerprint, probe_key(code, shape)))
    pairs, counts["improve_pairs"], counts["improve_skipped"] = _improve_candidates(
        improvements, fmt, shape)
    counts["probed_now"] = _probe_all(cands + [child for _, child, _ in pairs], fmt, cache,
                                      settings.probe_batch, report)
    proven = [c for c in cands if c.probe and c.probe.get("ok")]
    failed: dict[str, int] = {}
    for c in cands:
        if not (c.probe and c.probe.get("ok")):
            stage = str((c.probe or {}).get("stage", "unknown"))
            failed[stage] = failed.get(stage, 0) + 1
    counts["proven"] = len(proven)
    if not proven:
        raise LearnError(f"no proven programs for input shape {shape.get('in_shape')} "
                         f"({counts['programs']} programs read, {len(cands)} probed, none "
                         "built, ran forward and backward): add a corpus, --lemur or trained "
                         "runs for this dataset")
    heldout = _split((c.program.family for c in proven), settings.heldout_fraction,
                     settings.seed)
    train_pool = [c for c in proven if c.program.family not in heldout]
    rng = random.Random(settings.seed)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    too_long = 0
    for c in proven:
        split = "heldout" if c.program.family in heldout else "train"
        for rep in range(settings.prompts_per_answer):
            refs = _references(train_pool, c, settings.shots, rng) if settings.shots else []
            prompt = fmt.prompt(refs, c.answer)
            if prompt is None:
                too_long += 1
                continue
            rows[split].append({
                "id": f"{c.fingerprint[:12]}-{rep}", "prompt": prompt, "completion": c.answer,
                "answer": c.program.source, "family": c.program.family,
                "fingerprint": c.fingerprint, "references": [r.source for r in refs]})
    improve_rows, skipped = _improve_rows(pairs, train_pool, heldout, fmt, settings)
    counts["improve_skipped"] += skipped
    for split, row in improve_rows:
        rows[split].append(row)
    counts.update(too_long=too_long, train_examples=len(rows["train"]),
                  heldout_examples=len(rows["heldout"]), improve_examples=len(improve_rows),
                  examples_with_blocks=sum(fmt.blocks_in(r["prompt"]) for split in rows.values()
                                           for r in split))
    manifest: dict[str, Any] = {
        "kind": "nnrag-learn-dataset", "version": 1, "settings": asdict(settings),
        "format": fmt.describe(), "sources": [asdict(s) for s in sources], "counts": counts,
        "probe_failures": dict(sorted(failed.items())), "heldout_families": sorted(heldout),
        "train_families": sorted({c.program.family for c in train_pool})}
    return _write(out, rows, manifest)


def _improve_candidates(improvements: Iterable[Improvement], fmt: ExampleFormat,
                        shape: dict[str, Any]
                        ) -> tuple[list[tuple[_Candidate, _Candidate, str]], int, int]:
    """``(parent, child)`` answer forms of each pair, deduplicated by the two structural
    fingerprints; ``(pairs, read, skipped)`` (skipped: no answer form, or a child that is
    its parent's structure)."""
    from nnrag.index import code_fingerprint

    pairs: list[tuple[_Candidate, _Candidate, str]] = []
    seen: set[tuple[str, str]] = set()
    read = skipped = 0
    for imp in improvements:
        read += 1
        sides = []
        for program in (imp.parent, imp.child):
            answer = fmt.answer(program.code)
            try:
                fingerprint = code_fingerprint(fmt.program(answer)) if answer else None
            except Exception:  # noqa: BLE001 - an unparsable program is no answer
                fingerprint = None
            if answer is None or fingerprint is None:
                break
            sides.append(_Candidate(program, answer, fingerprint,
                                    probe_key(fmt.program(answer), shape)))
        if len(sides) < 2 or sides[0].fingerprint == sides[1].fingerprint:
            skipped += 1
            continue
        key = (sides[0].fingerprint, sides[1].fingerprint)
        if key in seen:
            skipped += 1
            continue
        seen.add(key)
        pairs.append((sides[0], sides[1], imp.metric))
    return pairs, read, skipped


def _improve_rows(pairs: list[tuple[_Candidate, _Candidate, str]], train_pool: list[_Candidate],
                  heldout: set[str], fmt: ExampleFormat,
                  settings: DatasetSettings) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """One improve example per pair whose child passed the probe: generate's repair prompt
    showing the parent (and ``shots`` references of other families), the child as its
    completion. Held out when the pair's family is; its own seeded draw of references, so
    the other examples do not change when lineage appears. ``(rows, skipped)``."""
    rng = random.Random(f"improve-{settings.seed}")
    out: list[tuple[str, dict[str, Any]]] = []
    skipped = 0
    for parent, child, metric in pairs:
        if not (child.probe and child.probe.get("ok")):
            skipped += 1
            continue
        refs = (_references(train_pool, child, settings.shots, rng, avoid=[parent.fingerprint])
                if settings.shots else [])
        score = parent.program.score if parent.program.score is not None else 0.0
        prompt = fmt.improve_prompt(refs, parent.answer, score, child.answer, metric)
        if prompt is None:
            skipped += 1
            continue
        family = parent.program.family
        out.append(("heldout" if {family, child.program.family} & heldout else "train", {
            "id": f"improve-{parent.fingerprint[:12]}-{child.fingerprint[:12]}",
            "kind": "improve", "prompt": prompt,
            "completion": fmt.improve_completion(child.answer), "answer": child.program.source,
            "parent": parent.program.source, "family": family,
            "fingerprint": child.fingerprint, "references": [r.source for r in refs]}))
    return out, skipped


def _write(out: Path, rows: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]) -> Dataset:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    except OSError as exc:
        raise LearnError(f"cannot write the dataset to {out}: {exc}") from None
    try:
        digest = hashlib.sha256()
        for split in ("train", "heldout"):
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[split])
            (staged / f"{split}.jsonl").write_text(text, encoding="utf-8")
            manifest[f"{split}_sha256"] = hashlib.sha256(text.encode()).hexdigest()
            digest.update(text.encode())
        manifest["dataset_hash"] = digest.hexdigest()
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True)
                                              + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise LearnError(f"writing the dataset to {out} failed: {exc}") from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    counts = manifest["counts"]
    return Dataset(out, manifest["dataset_hash"], counts["train_examples"],
                   counts["heldout_examples"], manifest)
