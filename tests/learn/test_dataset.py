"""The dataset builder: generate's prompt format, a different proven answer, the probe
filter, structural dedup, families held out, and a reproducible manifest."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nnrag.exceptions import LearnError
from nnrag.generate.backends.base import Prompt
from nnrag.generate.prompts import architecture_prompt
from nnrag.generate.references import corpus_references
from nnrag.generate.training import NET_PREFIX, TrainingFormat, _Counter, approx_tokens
from nnrag.index import code_fingerprint
from nnrag.learn import DatasetSettings, ProbeCache, Program, build_dataset, corpus_programs
from nnrag.learn.dataset import read_examples


class StubFormat(TrainingFormat):
    """generate's real format; the probe is a stub (the sandbox is tested separately)."""

    def __init__(self) -> None:
        super().__init__("image-classification", "digits", max_length=4096)
        self.probed = 0

    def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]:
        self.probed += len(codes)
        return [{"ok": False, "stage": "forward", "error": "stub"} if "LeNet-5" in c
                else {"ok": True, "stage": "backward"} for c in codes]


def _programs() -> list[Program]:
    return list(corpus_programs("image"))


def test_prompts_are_generates_prompt_and_answers_differ_from_references(tmp_path: Path) -> None:
    fmt = StubFormat()
    ds = build_dataset(_programs(), fmt, tmp_path / "ds", settings=DatasetSettings(shots=1))
    rows = read_examples(ds.train_path) + read_examples(ds.heldout_path)
    assert rows and ds.train > 0
    refs = {r.source: r for r in corpus_references("image")}
    by_source = {p.source: p for p in _programs()}
    counter = _Counter(approx_tokens, 4096, "approx")
    for row in rows[:8]:
        (ref_source,) = row["references"]
        expected = architecture_prompt(counter, fmt.task, [refs[ref_source]], [],
                                       approx_tokens(row["completion"])).prompt
        assert row["prompt"] == expected.text == Prompt("completion", row["prompt"]).flat()
        assert row["prompt"].endswith(NET_PREFIX)
        assert row["answer"] != ref_source
        ref_fp = code_fingerprint(fmt.program(fmt.answer(by_source[ref_source].code) or ""))
        assert row["fingerprint"] != ref_fp
        assert row["fingerprint"] == code_fingerprint(fmt.program(row["completion"]))
        assert row["completion"].endswith("```\n")


def test_only_probed_answers_are_kept(tmp_path: Path) -> None:
    fmt = StubFormat()
    ds = build_dataset(_programs(), fmt, tmp_path / "ds")
    answers = {r["answer"] for r in read_examples(ds.train_path) + read_examples(ds.heldout_path)}
    assert "corpus:lenet5.py" not in answers and "corpus:mlp.py" in answers
    assert ds.manifest["probe_failures"] == {"forward": 1}


def test_probe_results_are_cached_by_hash(tmp_path: Path) -> None:
    cache = ProbeCache(tmp_path / "probes.jsonl")
    first = StubFormat()
    build_dataset(_programs(), first, tmp_path / "a", cache=cache)
    again = StubFormat()
    build_dataset(_programs(), again, tmp_path / "b", cache=ProbeCache(tmp_path / "probes.jsonl"))
    assert first.probed > 0 and again.probed == 0


def test_structural_duplicates_are_one_answer(tmp_path: Path) -> None:
    programs = _programs()
    mlp = next(p for p in programs if p.name == "mlp")
    twin = Program("mlp_copy", "mlpcopy", "# a comment\n" + mlp.code.replace("\n\n", "\n\n\n"),
                   "corpus:mlp_copy.py")
    ds = build_dataset([*programs, twin], StubFormat(), tmp_path / "ds")
    assert ds.manifest["counts"]["duplicates"] == 1
    answers = [r["answer"] for r in read_examples(ds.train_path) + read_examples(ds.heldout_path)]
    assert "corpus:mlp_copy.py" not in answers


def test_families_are_held_out_whole(tmp_path: Path) -> None:
    ds = build_dataset(_programs(), StubFormat(), tmp_path / "ds",
                       settings=DatasetSettings(heldout_fraction=0.3, seed=3))
    train = {r["family"] for r in read_examples(ds.train_path)}
    held = {r["family"] for r in read_examples(ds.heldout_path)}
    assert held and train and not train & held
    assert held == set(ds.manifest["heldout_families"])
    family = {p.source: p.family for p in _programs()}
    for row in read_examples(ds.heldout_path):  # references come from training families only
        assert row["references"] and {family[r] for r in row["references"]} <= train


def test_the_manifest_is_reproducible(tmp_path: Path) -> None:
    a = build_dataset(_programs(), StubFormat(), tmp_path / "a")
    b = build_dataset(_programs(), StubFormat(), tmp_path / "b")
    assert a.dataset_hash == b.dataset_hash
    assert (a.folder / "manifest.json").read_bytes() == (b.folder / "manifest.json").read_bytes()
    assert a.train_path.read_bytes() == b.train_path.read_bytes()
    manifest = json.loads((a.folder / "manifest.json").read_text())
    assert manifest["format"]["dataset"] == "digits" and manifest["counts"]["proven"] > 10
    c = build_dataset(_programs(), StubFormat(), tmp_path / "c", settings=DatasetSettings(seed=1))
    assert c.dataset_hash != a.dataset_hash


def test_no_proven_program_is_one_clear_error(tmp_path: Path) -> None:
    class NothingRuns(StubFormat):
        def probe(self, codes: Sequence[str]) -> list[dict[str, Any]]:
            return [{"ok": False, "stage": "build"} for _ in codes]

    with pytest.raises(LearnError, match=r"no proven programs for input shape \[8, 1, 8, 8\]"):
        build_dataset(_programs(), NothingRuns(), tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


@pytest.mark.sandbox
def test_the_real_probe_filters_what_does_not_run(tmp_path: Path) -> None:
    mlp = next(p for p in _programs() if p.name == "mlp")
    broken = Program("bad", "bad", mlp.code.replace("return self.net(x)",
                                                    "return self.net(x)[:, :3]"), "corpus:bad.py")
    fmt = TrainingFormat("image-classification", "digits", max_length=4096)
    ds = build_dataset([mlp, broken], fmt, tmp_path / "ds",
                       settings=DatasetSettings(heldout_fraction=0.0, shots=0))
    assert ds.manifest["counts"]["proven"] == 1
    assert ds.manifest["probe_failures"] == {"forward": 1}
    assert [r["answer"] for r in read_examples(ds.train_path)] == ["corpus:mlp.py"]


def test_a_prompt_is_byte_for_byte_what_generate_sends(tmp_path: Path) -> None:
    """The replay backend records the prompt the real pipeline sent for one reference; the
    dataset's format renders the same text for that reference."""
    from nnrag.generate import BackendConfig, GenerateConfig, generate, make_backend

    backend = make_backend(BackendConfig(backend="replay", style="completion",
                                         extra={"outputs": ["no code"]}))
    report = generate(backend, GenerateConfig(n=1, shots=1, train=False, repairs=0,
                                              reprompts=0, runs_db=tmp_path / "runs.db",
                                              index_db=tmp_path / "none.db"))
    (sent,) = backend.prompts  # type: ignore[attr-defined]
    (reference,) = report.candidates[0].references
    program = next(p for p in _programs() if p.source == reference)
    fmt = TrainingFormat("image-classification", "digits", max_length=32768)
    assert fmt.prompt([program], "        pass\n```\n") == sent.text


def _sent_by_generate(tmp_path: Path, index_db: Path, blocks: int) -> tuple[str, Any]:
    """The one prompt the real pipeline sends (replay backend) and its candidate."""
    from nnrag.generate import BackendConfig, GenerateConfig, generate, make_backend

    backend = make_backend(BackendConfig(backend="replay", style="completion",
                                         extra={"outputs": ["no code"]}))
    report = generate(backend, GenerateConfig(n=1, shots=1, blocks=blocks, train=False,
                                              repairs=0, reprompts=0,
                                              runs_db=tmp_path / "runs.db", index_db=index_db))
    (sent,) = backend.prompts  # type: ignore[attr-defined]
    return sent.text, report.candidates[0]


def test_a_prompt_with_retrieved_blocks_is_what_generate_sends(zoo_db: Path,
                                                              tmp_path: Path) -> None:
    """With ``--blocks``, the format retrieves blocks from the index exactly as the pipeline
    does for the same reference: the same text, blocks section included."""
    sent, candidate = _sent_by_generate(tmp_path, zoo_db, blocks=2)
    assert len(candidate.blocks) == 2  # the pipeline did show two blocks
    (reference,) = candidate.references
    program = next(p for p in _programs() if p.source == reference)
    fmt = TrainingFormat("image-classification", "digits", max_length=32768, blocks=2,
                         index_db=zoo_db)
    prompt = fmt.prompt([program], "        pass\n```\n")
    assert prompt == sent and fmt.blocks_in(prompt)
    assert all(q.rsplit(".", 1)[-1] in prompt for q in candidate.blocks)
    assert fmt.describe()["blocks"] == 2 and fmt.describe()["index"] == str(zoo_db)
    # no index: no blocks, as generate shows none
    missing = tmp_path / "none.db"
    plain_sent, plain = _sent_by_generate(tmp_path, missing, blocks=2)
    assert plain.blocks == []
    no_index = TrainingFormat("image-classification", "digits", max_length=32768, blocks=2,
                              index_db=missing)
    assert no_index.prompt([program], "        pass\n```\n") == plain_sent
    assert not no_index.blocks_in(plain_sent)


def test_the_manifest_says_whether_blocks_were_shown(zoo_db: Path, tmp_path: Path) -> None:
    class BlocksFormat(StubFormat):
        def __init__(self, blocks: int) -> None:
            super().__init__()
            self.blocks, self.index_db = blocks, zoo_db

    a = build_dataset(_programs(), BlocksFormat(2), tmp_path / "a")
    b = build_dataset(_programs(), BlocksFormat(2), tmp_path / "b")
    assert a.train_path.read_bytes() == b.train_path.read_bytes()  # retrieval is deterministic
    assert a.manifest["format"]["blocks"] == 2
    assert a.manifest["counts"]["examples_with_blocks"] == a.train + a.heldout > 0
    rows = read_examples(a.train_path)
    assert all("## Building blocks from the index" in r["prompt"] for r in rows)
    none = build_dataset(_programs(), BlocksFormat(0), tmp_path / "c")
    assert none.manifest["format"]["blocks"] == 0 and none.manifest["format"]["index"] is None
    assert none.manifest["counts"]["examples_with_blocks"] == 0
