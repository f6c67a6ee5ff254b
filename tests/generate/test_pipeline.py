"""The whole pipeline on recorded answers: parse, fix, re-prompt, splice, dedup, probe, repair,
train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnrag.exceptions import ContextOverflowError, NnragError
from nnrag.generate import (
    BackendConfig,
    GenerateConfig,
    Generated,
    GenerateEvent,
    Generator,
    Probed,
    PromptFitted,
    make_backend,
)
from nnrag.generate.prompts import NET_PREFIX
from nnrag.index import Store
from nnrag.train import TrialDone
from nnrag.train.runstore import RunStore

SE_MODEL = """class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 16, 3, padding=1)
        self.se = SqueezeExcite(16)
        self.head = nn.Linear(16, out_shape[0])

    def forward(self, x):
        x = self.se(torch.relu(self.conv(x)))
        return self.head(x.mean(dim=(2, 3)))
"""
SPEC = ('```json\n{"hyperparameters": {"learning_rate": 0.05, "momentum": 0.9, "batch_size": 32, '
        '"optimizer": "SGD"}}\n```')
RENAMED = """class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.stem = nn.Conv2d(in_shape[1], 16, 3, padding=1)
        self.se = SqueezeExcite(16)
        self.classifier = nn.Linear(16, out_shape[0])

    def forward(self, inputs):
        inputs = self.se(torch.relu(self.stem(inputs)))  # renamed, same structure
        return self.classifier(inputs.mean(dim=(2, 3)))
"""
BROKEN = """import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.fc = nn.Linear(10, out_shape[0])

    def forward(self, x):
        return self.fc(x.flatten(1))
"""
FIXED = BROKEN.replace("nn.Linear(10,", "nn.Linear(in_shape[1] * in_shape[2] * in_shape[3],")

ANSWERS = [
    f"Here is my design.\n```python\n{SE_MODEL}```\n{SPEC}",      # 0: needs imports, splice
    "```python\nclass Model(nn.Module):\n    pass\n```",          # 1: no Net -> re-prompt
    f"```python\n{BROKEN}```\n{SPEC}",                            # 1: re-prompt answer, shape bug
    f"```python\n# same thing, new names\n{RENAMED}```\n{SPEC}",  # 2: structural twin of 0
    "I am sorry, I cannot write code today.",                     # 3: nothing to parse
    f"The fix:\n```python\n{FIXED}```",                           # 1: repair after the probe
]


@pytest.fixture
def replay() -> object:
    return make_backend(BackendConfig(backend="replay", style="chat", extra={"outputs": ANSWERS}))


@pytest.mark.sandbox
def test_pipeline_end_to_end_on_recorded_answers(replay: object, zoo_db_copy: Path,
                                                  tmp_path: Path) -> None:
    events: list[GenerateEvent] = []
    config = GenerateConfig(dataset="digits", n=4, shots=2, blocks=8, epochs=1, limit=300, seed=1,
                            runs_db=tmp_path / "runs.db", index_db=zoo_db_copy)
    report = Generator(replay, config, events.append).run()
    c0, c1, c2, c3 = report.candidates
    figures = report.figures()
    assert {k: figures[k] for k in ("prompts_sent", "parsed", "schema_valid", "unique",
                                    "executable", "trained", "repairs_used", "repaired",
                                    "reprompts_used")} == {
        "prompts_sent": 6, "parsed": 3, "schema_valid": 3, "unique": 2, "executable": 2,
        "trained": 2, "repairs_used": 1, "repaired": 1, "reprompts_used": 1}
    # candidate 0: imports added, alias renamed, SqueezeExcite spliced in from the index
    assert c0.status == "trained" and c0.spliced == ["zoo.layers.conv.SqueezeExcite"]
    assert "zoo.layers.conv.SqueezeExcite" in c0.blocks and len(c0.references) == 2
    assert "def make_divisible" in (c0.code or "") and "import torch" in (c0.code or "")
    assert any("'learning_rate' renamed to 'lr'" in n for n in c0.notes)
    assert c0.spec is not None and c0.spec["hyperparameters"]["lr"] == 0.05
    # candidate 1: re-prompted for the missing Net, failed the probe, repaired with the traceback
    assert c1.reprompts == 1 and c1.repairs == 1 and c1.status == "trained" and c1.error is None
    repair_prompt = replay.prompts[5].messages[-1]["content"]  # type: ignore[attr-defined]
    assert ("mat1 and mat2 shapes cannot be multiplied" in repair_prompt
            and "nn.Linear(10," in repair_prompt)
    # candidate 2 is the same model as 0 under other names; candidate 3 had no code
    assert (c2.status, c2.duplicate_of) == ("duplicate", 0)
    assert (c3.status, c3.parsed) == ("unparsed", False) and "no code" in (c3.error or "")
    assert (report.best_accuracy is not None
            and 0.0 < report.mean_accuracy <= report.best_accuracy <= 1.0)
    assert report.dedup_ms_per_program > 0
    # every generation recorded with its sampling parameters and seed; seeds differ per prompt
    seeds = [g["sampling"]["seed"] for c in report.candidates for g in c.generations]
    assert len(seeds) == 6 and len({g["sampling"]["seed"]
                                    for g in (c0.generations[0], c1.generations[0])}) == 2
    # written back to the index with prompt, parents and backend
    with Store(zoo_db_copy) as store:
        prov = store.provenance(str(c0.indexed_as))
    assert (prov is not None and prov["source"] == "generate"
            and prov["backend"]["backend"] == "replay")
    assert (prov["references"] == c0.references and prov["spliced"] == c0.spliced
            and "Reference" in prov["prompt"])
    runs = RunStore(tmp_path / "runs.db")
    assert [r.outcome for r in runs.runs()] == ["ok", "ok"]
    assert {type(e) for e in events} >= {PromptFitted, Generated, Probed, TrialDone}
    assert all(json.dumps(e.to_dict()) for e in events)
    json.dumps(report.as_dict(full=True))

    # a second run with the same answers: the trained models are now references (run store
    # first, best for the task), so the same answers are copies of them and nothing is retrained
    again = Generator(make_backend(BackendConfig(backend="replay", style="chat",
                                                 extra={"outputs": ANSWERS})),
                      config).run()
    assert again.candidates[0].references[0].startswith("run:")
    assert again.trained == 0 and again.unique == 0 and again.reference_copies == 3
    assert {c.copy_of for c in again.candidates if c.copy_of} == {"gen0", "gen1"}


@pytest.mark.sandbox
def test_completion_style_asks_for_the_spec_separately(tmp_path: Path) -> None:
    body = FIXED.split("prm, device):\n", 1)[1]  # the prompt already opened Net.__init__
    answers = [body + "```\nsome trailing text",
               '{"hyperparameters": {"lr": 0, "batch_size": 16, "optimizer": "adam"}}\n```']
    llm = make_backend(BackendConfig(backend="replay", extra={"outputs": answers}))
    assert llm.style == "completion"
    config = GenerateConfig(n=1, shots=1, train=False, runs_db=tmp_path / "runs.db",
                            index_db=tmp_path / "none.db", blocks=2)
    report = Generator(llm, config).run()
    cand = report.candidates[0]
    prompts = llm.prompts  # type: ignore[attr-defined]
    # the answer starts inside Net.__init__
    assert prompts[0].text.endswith("```python\n" + NET_PREFIX)
    assert prompts[1].text.endswith("```json\n") and (NET_PREFIX + body).strip() in prompts[1].text
    assert [g["kind"] for g in cand.generations] == ["architecture", "spec"]
    assert cand.executable and cand.status == "executable" and report.trained == 0
    assert cand.spec["hyperparameters"]["lr"] == 0.0001  # type: ignore[index]
    assert any("clipped" in n for n in cand.notes)
    assert any("no index at" in n for n in report.notes)


def test_prompt_truncates_references_before_the_contract(tmp_path: Path) -> None:
    from nnrag.generate.pipeline import task_text
    from nnrag.generate.prompts import architecture_prompt
    from nnrag.generate.references import pick_references, ranked_references

    refs = pick_references(ranked_references("image", "digits", None), 3, 0)
    llm = make_backend(BackendConfig(backend="replay", context=700, extra={"outputs": ["x"]}))
    task, _ = task_text("image-classification", "digits")
    fitted = architecture_prompt(llm, task, refs, [], max_new_tokens=200)
    assert fitted.tokens <= 500 and fitted.cuts
    assert ("class Net(nn.Module)` with `__init__(self, in_shape, out_shape, prm, device)"
            in fitted.prompt.text)
    assert "digits" in fitted.prompt.text and "(batch, 1, 8, 8)" in fitted.prompt.text
    tiny = make_backend(BackendConfig(backend="replay", context=150, extra={"outputs": ["x"]}))
    with pytest.raises(ContextOverflowError, match="fixed part"):
        architecture_prompt(tiny, task, refs, [], max_new_tokens=100)


@pytest.mark.parametrize(("task", "dataset", "message"), [
    ("image-classification", "imagenet-22k", "imagenet-22k"),
    ("image-classification", "mnist1d", "use --task signal-classification"),
    ("translation", "digits", "unknown task"),
])
def test_bad_task_or_dataset(task: str, dataset: str, message: str) -> None:
    llm = make_backend(BackendConfig(backend="replay", extra={"outputs": ["x"]}))
    with pytest.raises(NnragError, match=message):
        Generator(llm, GenerateConfig(task=task, dataset=dataset))


def test_tiny_model_runs_the_pipeline(tiny_model: Path, tmp_path: Path) -> None:
    """A random tiny LM writes garbage: the pipeline must count it, not crash on it."""
    llm = make_backend(BackendConfig(model=str(tiny_model), context=4096))
    config = GenerateConfig(n=2, shots=1, max_new_tokens=24, spec_max_new_tokens=16, train=False,
                            runs_db=tmp_path / "runs.db", index_db=tmp_path / "none.db")
    report = Generator(llm, config).run()
    assert report.prompts_sent >= 2 and report.trained == 0
    assert all(c.generations[0]["sampling"]["max_new_tokens"] == 24 for c in report.candidates)
    assert all(c.status in ("unparsed", "invalid_code", "invalid_spec", "not_executable",
                            "executable", "duplicate")
               for c in report.candidates)


def test_a_copy_of_a_reference_is_not_a_new_model(tmp_path: Path) -> None:
    from nnrag.generate.references import pick_references, ranked_references

    ref = pick_references(ranked_references("image", "digits", None), 1, 0)[0]
    assert ref.full_code is not None and ref.code != ref.full_code
    answers = [f"```python\n{ref.full_code}```\n{SPEC}", f"```python\n{ref.code}```\n{SPEC}"]
    llm = make_backend(BackendConfig(backend="replay", style="chat", extra={"outputs": answers}))
    config = GenerateConfig(n=2, shots=1, train=False, runs_db=tmp_path / "runs.db",
                            index_db=tmp_path / "none.db")
    report = Generator(llm, config).run()
    assert [(c.status, c.copy_of, c.schema_valid)
            for c in report.candidates] == [("duplicate", ref.name, True)] * 2
    assert (report.schema_valid, report.unique, report.executable) == (2, 0, 0)
    assert any("a copy of reference" in n for n in report.candidates[0].notes)


@pytest.mark.sandbox
def test_completion_answers_stop_at_the_next_heading(tmp_path: Path) -> None:
    body = FIXED.split("prm, device):\n", 1)[1]
    answers = [body + "\n## Another model\nclass Other(nn.Module):\n    pass\n",
               '{"hyperparameters": {"lr": 0.01}}']
    llm = make_backend(BackendConfig(backend="replay", extra={"outputs": answers}))
    config = GenerateConfig(n=1, shots=1, train=False, runs_db=tmp_path / "runs.db",
                            index_db=tmp_path / "none.db")
    report = Generator(llm, config).run()
    cand = report.candidates[0]
    assert "\n## " in cand.generations[0]["sampling"]["stop"]
    assert cand.code is not None and "class Other" not in cand.code and "class Net" in cand.code


@pytest.mark.sandbox
def test_a_reference_constant_the_answer_forgot_is_copied(tmp_path: Path) -> None:
    """Small models copy a reference's ``Net`` and drop its module constants: without the
    copy this answer fails the probe with ``NameError: HIDDEN`` (the first reference, mlp,
    defines it)."""
    answer = """```python
class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        width = HIDDEN[-1]
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], width),
                                  nn.ReLU(), nn.Linear(width, out_shape[0]))

    def forward(self, x):
        return self.body(x)
```
""" + SPEC  # noqa: E501 (the answer's code is kept byte for byte)
    llm = make_backend(BackendConfig(backend="replay", style="chat", extra={"outputs": [answer]}))
    config = GenerateConfig(n=1, shots=1, repairs=0, train=False, runs_db=tmp_path / "runs.db",
                            index_db=tmp_path / "none.db")
    report = Generator(llm, config).run()
    cand = report.candidates[0]
    assert cand.references == ["corpus:mlp.py"]
    assert "copied HIDDEN from reference corpus:mlp.py" in cand.notes
    assert cand.code is not None and "HIDDEN = (256, 128)" in cand.code
    assert (cand.executable, cand.error, report.repairs_used) == (True, None, 0)
