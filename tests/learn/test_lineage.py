"""Improve examples from lineage: a parent -> child pair recorded in the index (mutate's and
generate's provenance) whose child trained better on the same dataset becomes an example
whose prompt is generate's repair prompt showing the parent and whose answer is the child;
a child that trained worse gives none."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nnrag.examples import corpus_dir
from nnrag.generate.compact import compact_code
from nnrag.generate.prompts import CODE_PREFIX, Reference, architecture_prompt, repair_prompt
from nnrag.generate.training import IMPROVE_NOTE, TrainingFormat, _Counter, approx_tokens
from nnrag.index import Store, code_fingerprint, index_path
from nnrag.learn import (
    DatasetSettings,
    Improvement,
    Program,
    build_dataset,
    corpus_programs,
    lineage_improvements,
)
from nnrag.learn.dataset import read_examples
from nnrag.train.runstore import RunStore

MLP = (corpus_dir() / "mlp.py").read_text()
BETTER = MLP.replace("nn.ReLU(inplace=True)", "nn.GELU()")  # trains to 0.90
WORSE = MLP.replace("nn.ReLU(inplace=True)", "nn.Tanh()")  # trains to 0.70
GENERATED = MLP.replace("(256, 128)", "(512, 128)")  # generate's child of run 1: 0.85


class StubFormat(TrainingFormat):
    """generate's real format; every program passes the probe (the sandbox is tested apart)."""

    def __init__(self) -> None:
        super().__init__("image-classification", "digits", max_length=8192)

    def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]:
        return [{"ok": True, "stage": "backward"} for _ in codes]


def _run(runs: RunStore, name: str, model: dict[str, Any], code: str, best: float,
         dataset: str = "digits", metric: str = "accuracy") -> int:
    run_id = runs.create(name, dataset, {"model": model, "dataset": dataset, "metric": metric},
                         f"k-{name}", f"md5-{name}", code_fingerprint(code), code)
    runs.finish(run_id, {"outcome": "ok", "epochs": [{"epoch": 1, metric: best}]}, metric)
    return run_id


@pytest.fixture
def lineage(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_lineage(tmp_path, tmp_path / "index.db", tmp_path / "runs.db")


def make_lineage(tmp_path: Path, db: Path, runs_db: Path) -> tuple[Path, Path, Path]:
    """An index with two mutants of ``mlp.py`` (one trained better, one worse) and a model
    generate wrote back from a run's reference, and a run store with all their runs."""
    parent = tmp_path / "models" / "mlp.py"
    parent.parent.mkdir(parents=True)
    parent.write_text(MLP)
    mutants, trained = tmp_path / "mutants", tmp_path / "trained"
    for folder, files in ((mutants, {"mlp_activation_aaaa1111": BETTER,
                                     "mlp_activation_bbbb2222": WORSE}),
                          (trained, {"mlp_gen_cccc3333": GENERATED})):
        folder.mkdir()
        (folder / "__init__.py").touch()
        for stem, code in files.items():
            (folder / f"{stem}.py").write_text(code)
    with Store(db) as store:
        for folder in (mutants, trained):
            index_path(store, folder, prefix=folder.name, package=folder.name)
        for stem in ("mlp_activation_aaaa1111", "mlp_activation_bbbb2222"):
            store.record_provenance(f"mutants.{stem}.Net", "mutate",
                                    {"parent": str(parent), "kind": "activation"})
    runs = RunStore(runs_db)
    parent_id = _run(runs, "mlp", {"file": str(parent)}, MLP, 0.80)
    _run(runs, "mlp-activation-aaaa1111", {"code": BETTER, "name": "x"}, BETTER, 0.90)
    _run(runs, "mlp-activation-bbbb2222", {"code": WORSE, "name": "y"}, WORSE, 0.70)
    _run(runs, "mlp-activation-aaaa1111", {"code": BETTER, "name": "x"}, BETTER, 0.20,
         dataset="mnist1d")
    gen_id = _run(runs, "gen", {"code": GENERATED, "name": "gen"}, GENERATED, 0.85)
    runs.mark_indexed(gen_id, "trained.mlp_gen_cccc3333.Net")
    runs.close()
    with Store(db) as store:
        store.record_provenance("trained.mlp_gen_cccc3333.Net", "generate",
                                {"references": [f"run:{parent_id}"], "dataset": "digits"})
    return db, runs_db, parent


def test_pairs_whose_child_trained_better_are_found(lineage: tuple[Path, Path, Path]) -> None:
    db, runs_db, _parent = lineage
    found = lineage_improvements(db, runs_db, "digits")
    assert [(i.kind, i.parent.code, i.child.code) for i in found] == [
        ("mutate", MLP, BETTER), ("generate", MLP, GENERATED)]  # not the worse mutant
    (mutant, generated) = found
    assert (mutant.parent.score, mutant.child.score, generated.child.score) == (0.8, 0.9, 0.85)
    assert mutant.metric == generated.metric == "accuracy"
    assert mutant.parent.family == mutant.child.family == "mlp"
    assert mutant.parent.source == "run:1" and mutant.child.source == "run:2"
    # on another dataset the parent never trained: no pair; nothing without a store
    assert lineage_improvements(db, runs_db, "mnist1d") == []
    assert lineage_improvements(db.with_name("none.db"), runs_db, "digits") == []


def test_a_worse_child_gives_no_example(lineage: tuple[Path, Path, Path], tmp_path: Path) -> None:
    db, _runs_db, parent = lineage
    # the same index; in this run store every child trained worse than the parent
    worse_db = tmp_path / "worse_runs.db"
    runs = RunStore(worse_db)
    _run(runs, "mlp", {"file": str(parent)}, MLP, 0.80)
    _run(runs, "m", {"code": BETTER, "name": "x"}, BETTER, 0.75)
    _run(runs, "m2", {"code": WORSE, "name": "y"}, WORSE, 0.70)
    runs.close()
    assert lineage_improvements(db, worse_db, "digits") == []
    other_metric = tmp_path / "f1_runs.db"  # a higher score of another metric is no gain
    runs = RunStore(other_metric)
    _run(runs, "mlp", {"file": str(parent)}, MLP, 0.80)
    _run(runs, "m", {"code": BETTER, "name": "x"}, BETTER, 0.95, metric="f1")
    runs.close()
    assert lineage_improvements(db, other_metric, "digits") == []
    ds = build_dataset(corpus_programs("image"), StubFormat(), tmp_path / "ds",
                       improvements=lineage_improvements(db, worse_db, "digits"))
    assert ds.manifest["counts"]["improve_examples"] == 0
    assert not [r for r in read_examples(ds.train_path) if r.get("kind") == "improve"]


def test_an_improve_example_is_generates_repair_prompt(lineage: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    db, runs_db, _parent = lineage
    fmt = StubFormat()
    improvements = lineage_improvements(db, runs_db, "digits")
    plain = build_dataset(corpus_programs("image"), fmt, tmp_path / "plain")
    ds = build_dataset(corpus_programs("image"), fmt, tmp_path / "ds",
                       improvements=improvements + improvements)  # twice: deduplicated
    assert ds.manifest["counts"]["improve_pairs"] == 4
    assert ds.manifest["counts"]["improve_examples"] == 2
    assert ds.manifest["counts"]["improve_skipped"] == 2
    rows = read_examples(ds.train_path) + read_examples(ds.heldout_path)
    improve = [r for r in rows if r.get("kind") == "improve"]
    assert ds.train + ds.heldout == plain.train + plain.heldout + 2
    # the other examples are the same with or without lineage
    assert [r for r in rows if r.get("kind") != "improve"] == (
        read_examples(plain.train_path) + read_examples(plain.heldout_path))
    row = next(r for r in improve if r["answer"] == "run:2")
    assert row["parent"] == "run:1" and row["family"] == "mlp"
    assert row["fingerprint"] == code_fingerprint(fmt.program(fmt.answer(BETTER) or ""))
    # generate's repair prompt, rendered by generate's template code, showing the parent
    refs = [p for p in corpus_programs("image") if p.source in row["references"]]
    counter = _Counter(approx_tokens, 8192, "approx")
    new_tokens = approx_tokens(row["completion"])
    fitted = architecture_prompt(counter, fmt.task, [
        Reference(r.name, r.family, compact_code(r.code), r.source, full_code=r.code)
        for r in refs], [], new_tokens)
    parent_program = fmt.program(fmt.answer(MLP) or "")
    note = IMPROVE_NOTE.format(metric="accuracy", score=0.8, dataset="digits")
    expected, prefix = repair_prompt(counter, fmt.task, fitted, parent_program, note,
                                     new_tokens)
    assert row["prompt"] == expected.text and prefix == CODE_PREFIX
    assert "test accuracy 0.8000 on digits" in row["prompt"]
    assert row["prompt"].endswith("```python\n" + CODE_PREFIX)
    # prompt + completion is the child's module, as generate reads a repair answer
    module = CODE_PREFIX + row["completion"].split("```", 1)[0]
    assert code_fingerprint(module) == code_fingerprint(fmt.program(fmt.answer(BETTER) or ""))


def test_improve_examples_respect_the_held_out_families(tmp_path: Path) -> None:
    fmt = StubFormat()
    programs = list(corpus_programs("image"))
    settings = DatasetSettings(heldout_fraction=0.3, seed=3)
    plain = build_dataset(programs, fmt, tmp_path / "plain", settings=settings)
    held = set(plain.manifest["heldout_families"])
    train_family = sorted(set(plain.manifest["train_families"]))[0]
    pairs = []
    for family in (sorted(held)[0], train_family):
        parent = next(p for p in programs if p.family == family)
        child_code = parent.code.replace("nn.ReLU(inplace=True)", "nn.GELU()").replace(
            "nn.ReLU()", "nn.GELU()")
        assert child_code != parent.code
        pairs.append(Improvement(Program(parent.name, family, parent.code, "run:1", 0.5),
                                 Program("child", family, child_code, "run:2", 0.6),
                                 "mutate", "digits"))
    ds = build_dataset(programs, fmt, tmp_path / "ds", settings=settings, improvements=pairs)
    assert set(ds.manifest["heldout_families"]) == held
    where = {r["family"]: split for split, path in (("train", ds.train_path),
                                                    ("heldout", ds.heldout_path))
             for r in read_examples(path) if r.get("kind") == "improve"}
    assert where == {sorted(held)[0]: "heldout", train_family: "train"}
    manifest = json.loads((ds.folder / "manifest.json").read_text())
    assert manifest["counts"]["improve_examples"] == 2


def test_the_workspace_adds_its_lineage_to_the_dataset(tiny_lm: Path, small_corpus: Path,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from nnrag import open_workspace
    from nnrag._workspace import WorkspaceLearn
    from nnrag.learn.loop import LearnConfig

    ws = open_workspace(tmp_path / "home")
    make_lineage(tmp_path, Path(ws.db), Path(ws.runs))
    hooks = WorkspaceLearn(ws, LearnConfig(base=str(tiny_lm), corpus=small_corpus,
                                           max_length=8192))
    monkeypatch.setattr(hooks.fmt, "probe", StubFormat().probe)
    ds = hooks.dataset(0)
    (source,) = [s for s in ds.manifest["sources"] if s["kind"] == "lineage"]
    assert source["programs"] == 2 and source["location"] == str(ws.db)
    assert ds.manifest["counts"]["improve_examples"] == 2
    without = WorkspaceLearn(ws, LearnConfig(base=str(tiny_lm), corpus=small_corpus,
                                             max_length=8192, use_runs=False))
    monkeypatch.setattr(without.fmt, "probe", StubFormat().probe)
    assert without.dataset(0).manifest["counts"]["improve_examples"] == 0


def test_a_damaged_index_costs_the_improve_examples_only(tiny_lm: Path, small_corpus: Path,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nnrag import open_workspace
    from nnrag._workspace import WorkspaceLearn
    from nnrag.learn.loop import LearnConfig

    ws = open_workspace(tmp_path / "home")
    Path(ws.db).parent.mkdir(parents=True, exist_ok=True)
    Path(ws.db).write_bytes(b"not a database" * 100)
    RunStore(Path(ws.runs)).close()
    said: list[str] = []
    hooks = WorkspaceLearn(ws, LearnConfig(base=str(tiny_lm), corpus=small_corpus,
                                           max_length=8192), said.append)
    monkeypatch.setattr(hooks.fmt, "probe", StubFormat().probe)
    ds = hooks.dataset(0)
    assert ds.train > 0 and ds.manifest["counts"]["improve_examples"] == 0
    assert any(line.startswith("lineage not read, no improve examples: ") for line in said)


def test_grpo_samples_architecture_prompts_only(tmp_path: Path) -> None:
    """The reward reads a completion as the continuation of the architecture prompt, so
    GRPO leaves improve examples (repair prompts) out."""
    from nnrag.learn.grpo import prompt_rows
    from tests.learn.conftest import write_rows

    rows = [{"prompt": f"p{i}", "completion": "c", "kind": "improve" if i % 2 else None}
            for i in range(6)]
    for row in rows:
        if row["kind"] is None:
            del row["kind"]
    folder = write_rows(tmp_path / "ds", rows)
    assert [r["prompt"] for r in prompt_rows(folder, 10)] == ["p0", "p2", "p4"]
    assert [r["prompt"] for r in prompt_rows(folder, 2)] == ["p0", "p2"]
