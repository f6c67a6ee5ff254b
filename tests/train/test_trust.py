"""Scores a model cannot forge, messages a child cannot crash the engine with, quarantine.

The parent keeps the test labels and scores logits; everything a trial child writes is
parsed strictly, and a malformed message is that trial's ``error`` alone.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnrag.exceptions import StoreError
from nnrag.index import code_fingerprint, normalised_md5
from nnrag.sandbox import Limits, SandboxResult
from nnrag.train._channel import (
    DATA_KEYS,
    MAX_INT,
    MAX_LINE_BYTES,
    ChannelError,
    load_logits,
    logits_name,
    parse_progress_line,
    parse_result,
    progress_name,
    read_new_lines,
)
from nnrag.train._scoring import TrialWatch, write_trial_data
from nnrag.train.engine import MAX_RERUNS, Engine
from nnrag.train.executors import Executor, LocalExecutor
from nnrag.train.runstore import RunStore
from nnrag.train.spec import TrainSpec, parse_spec
from tests.train.test_engine import GOOD


def spec(code: str, name: str = "m", **kw: object) -> TrainSpec:
    data: dict[str, Any] = {"model": {"code": code, "name": name}, "dataset": "digits",
                            "budget": {"epochs": 1, "wall_s": 20, "memory_mb": 1024},
                            "limit": 200, "hyperparameters": {"lr": 0.1}}
    data.update(kw)
    return parse_spec(data)


def hostile(learn_body: str, head: str = "") -> str:
    """GOOD whose ``learn`` runs ``learn_body`` first; ``head`` runs at import."""
    body = textwrap.indent(textwrap.dedent(learn_body), "        ")
    code = GOOD.replace("    def learn(self, train_data):\n",
                        "    def learn(self, train_data):\n" + body + "\n")
    return textwrap.dedent(head) + code


#: The model's own progress file: its module is ``nnrag_model_<run id>``.
def progress(line: str) -> str:
    """Model code appending ``line`` to its own run's progress file."""
    return f"open(f'progress-{{__name__.rsplit(\"_\", 1)[-1]}}.jsonl', 'a').write({line!r})"

FORGER = hostile(
    """
    import sys
    trial = sys.modules["nnrag.train._trial"]
    trial.evaluate = lambda *a, **k: {"accuracy": 1.0, "test_loss": 0.0}
    trial.accuracy = lambda *a, **k: 1.0
    return None
    """,
    head="import nnrag.train.registry as _r\n_r.METRICS._entries.clear()\n",
)
POISON = {
    "not_json": progress("not json\n"),
    "list_epoch": progress('{"epoch": [1, 2]}\n'),
    "claims_accuracy": progress('{"epoch": 1, "epoch_s": 0.1, "accuracy": 1.0}\n'),
    "oversize": progress("x" * (MAX_LINE_BYTES * 3) + "\n"),
    "huge_params": """
        import sys
        frame = sys._getframe()
        while frame is not None and not isinstance(frame.f_locals.get("result"), dict):
            frame = frame.f_back
        frame.f_locals["result"]["params"] = 10**20
        """,
}
REASONS = {"not_json": "not JSON", "list_epoch": "epoch", "claims_accuracy": "accuracy",
           "oversize": "bytes", "huge_params": "params"}


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


def test_the_child_gets_no_test_labels(tmp_path: Path) -> None:
    s = spec(GOOD)
    data = write_trial_data(s, tmp_path)
    with np.load(tmp_path / data.name, allow_pickle=False) as f:
        assert tuple(sorted(f.files)) == tuple(sorted(DATA_KEYS))
        assert len(f["test_x"]) == len(data.test_y) == 200  # limit bounds evaluation too
        assert len(f["train_x"]) == len(f["train_y"]) == 200


@pytest.mark.sandbox
def test_poison_pills_fail_their_trial_only_and_forgers_get_chance(tmp_path: Path) -> None:
    engine = Engine(RunStore(tmp_path / "runs.db"), LocalExecutor(2))
    specs = [spec(GOOD, "innocent", budget={"epochs": 3, "wall_s": 20, "memory_mb": 1024}),
             spec(FORGER, "forger")]
    specs += [spec(hostile(body), name) for name, body in POISON.items()]
    report = engine.train(specs)
    got = {engine.runs.get(i).name: engine.runs.get(i) for i in report.run_ids}
    assert report.trained == len(specs)
    assert got["innocent"].outcome == "ok" and got["innocent"].best > 0.5
    forger = got["forger"]
    assert forger.outcome == "ok", forger.error
    # untrained (learn returns at once): the parent's accuracy, not the forged 1.0
    assert forger.best is not None and forger.best < 0.4
    for name, reason in REASONS.items():
        run = got[name]
        assert run.outcome == "error", (name, run.outcome, run.error)
        assert "rejected trial output" in (run.error or "") and reason in (run.error or ""), name
    assert got["huge_params"].params is None
    assert engine.resume(stale_after_s=0).run_ids == []  # nothing left running, no crash
    metrics = {e.metric for e in got["innocent"].epochs}
    assert {"accuracy", "test_loss", "epoch_s_self_reported"} <= metrics


# -- the parent's side, without a sandbox


def _watch(tmp_path: Path, epochs: int = 1) -> TrialWatch:
    s = spec(GOOD, budget={"epochs": epochs, "wall_s": 20, "memory_mb": 1024})
    return TrialWatch(7, s, write_trial_data(s, tmp_path))


def _ok(value: Any = None) -> SandboxResult:
    value = {"outcome": "ok", "epochs": 1} if value is None else value
    return SandboxResult("ok", value, None, None, None, "", "", 1.0)


def _logits(tmp_path: Path, array: np.ndarray, epoch: int = 1) -> None:
    np.save(tmp_path / logits_name(7, epoch), array)


def _line(tmp_path: Path, text: str) -> None:
    with (tmp_path / progress_name(7)).open("a") as f:
        f.write(text + "\n")


def test_the_parent_scores_the_logits(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    perfect = np.eye(10, dtype=np.float32)[watch.data.test_y.numpy()] * 10
    _logits(tmp_path, perfect)
    _line(tmp_path, json.dumps({"epoch": 1, "epoch_s": 0.5, "train_loss": 0.25}))
    (row,) = watch.poll(tmp_path)
    assert row["accuracy"] == 1.0 and row["train_loss_self_reported"] == 0.25
    value = watch.verdict(_ok({"outcome": "ok", "epochs": 1, "params": 650}))
    assert value["outcome"] == "ok" and value["params"] == 650 and value["epochs"] == [row]


@pytest.mark.parametrize(
    ("logits", "result", "outcome", "reason"),
    [
        (None, None, "error", "missing logits"),
        (np.zeros((3, 10), np.float32), None, "error", "shape"),
        (np.zeros((200, 10), np.int64), None, "error", "float32"),
        (np.full((200, 10), np.nan, np.float32), None, "nan", "non-finite"),
        (np.zeros((200, 10), np.float16), {"outcome": "ok", "params": 10**20}, "error", "params"),
        (np.zeros((200, 10), np.float32), {"outcome": "ok", "accuracy": 1.0}, "error", "accuracy"),
        (np.zeros((200, 10), np.float32), "ok", "error", "trial result"),
    ],
)
def test_bad_child_output_is_that_trials_outcome(tmp_path: Path, logits: np.ndarray | None,
                                                 result: Any, outcome: str, reason: str) -> None:
    watch = _watch(tmp_path)
    if logits is not None:
        _logits(tmp_path, logits)
    _line(tmp_path, json.dumps({"epoch": 1, "epoch_s": 0.5}))
    watch.poll(tmp_path)
    value = watch.verdict(_ok(result))
    assert value["outcome"] == outcome and reason in value["error"], value["error"]


def test_claiming_ok_without_scored_epochs_is_an_error(tmp_path: Path) -> None:
    watch = _watch(tmp_path, epochs=2)
    value = watch.verdict(_ok({"outcome": "ok", "epochs": 2}))
    assert value["outcome"] == "error" and "0 of 2 scored epochs" in value["error"]


def test_symlinks_and_fifos_are_refused_without_blocking(tmp_path: Path) -> None:
    import os

    secret = tmp_path / "secret"
    secret.write_text('{"epoch": 1, "epoch_s": 1}\n')
    (tmp_path / "link.jsonl").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo.jsonl")
    for name in ("link.jsonl", "fifo.jsonl"):
        with pytest.raises(ChannelError, match="plain file"):
            read_new_lines(tmp_path / name, 0)
        with pytest.raises(ChannelError, match="plain file"):
            load_logits(tmp_path / name, 2, 2)


def test_a_half_written_line_waits_and_a_pickled_logits_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"epoch": 1, "epo')
    assert read_new_lines(path, 0) == ([], 0)
    path.write_bytes(b'{"epoch": 1, "epoch_s": 1}\n{"ep')
    lines, offset = read_new_lines(path, 0)
    assert len(lines) == 1 and offset == len(b'{"epoch": 1, "epoch_s": 1}\n')
    np.save(tmp_path / "l.npy", np.array([object()] * 4, dtype=object).reshape(2, 2),
            allow_pickle=True)
    with pytest.raises(ChannelError, match="not a plain .npy"):
        load_logits(tmp_path / "l.npy", 2, 2)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20,
)
KEYS = st.sampled_from(["epoch", "epoch_s", "train_loss", "outcome", "params", "flops",
                        "versions", "error", "traceback", "duration_s", "epochs", "x"])
LIKELY = st.dictionaries(KEYS, JSON | st.integers(-(2**70), 2**70), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, LIKELY, st.text(max_size=200), st.binary(max_size=200)))
def test_the_parsers_raise_only_channel_errors(value: Any) -> None:
    line = value if isinstance(value, str | bytes) else json.dumps(value)
    for parse in (lambda: parse_progress_line(line, 3), lambda: parse_result(value, 3)):
        try:
            parsed = parse()
        except ChannelError:
            continue
        for field in ("params", "flops"):
            number = getattr(parsed, field, None)
            assert number is None or 0 <= number <= MAX_INT


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_any_logits_file_loads_or_raises_a_channel_error(tmp_path_factory: Any,
                                                         content: bytes) -> None:
    path = tmp_path_factory.mktemp("l") / "x.npy"
    path.write_bytes(content)
    try:
        array = load_logits(path, 2, 2)
    except ChannelError:
        return
    assert array.shape == (2, 2) and array.dtype == np.float32


ROWS = st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode()),
                 LIKELY.map(lambda v: json.dumps(v).encode()),
                 st.just(b'{"epoch": 1, "epoch_s": 0.1}'))


@settings(max_examples=60, deadline=None)
@given(st.lists(ROWS, max_size=4), st.one_of(JSON, LIKELY))
def test_the_watch_never_raises_on_what_a_child_writes(tmp_path_factory: Any,
                                                       lines: list[bytes], value: Any) -> None:
    scratch = tmp_path_factory.mktemp("w")
    watch = _watch(scratch, epochs=2)
    _logits(scratch, np.zeros((200, 10), np.float32))
    (scratch / progress_name(7)).write_bytes(b"\n".join(lines) + b"\n")
    watch.poll(scratch)
    verdict = watch.verdict(_ok(value))
    assert verdict["outcome"] in {"ok", "nan", "error", "oom"}
    assert verdict["outcome"] != "ok" or len(verdict["epochs"]) == 2


def test_the_run_store_never_stores_an_overflowing_number(tmp_path: Path) -> None:
    runs = RunStore(tmp_path / "runs.db")
    s = spec(GOOD)
    run_id = runs.create("m", "digits", s.model_dump(), s.key(), "md5", "fp", GOOD)
    runs.finish(run_id, {"outcome": "ok", "params": 10**20, "flops": -1, "duration_s": "x",
                         "epochs": [{"epoch": 1, "accuracy": 10**400, "loss": 0.5}]}, "accuracy")
    run = runs.get(run_id)
    assert (run.params, run.flops, run.duration_s, run.best) == (None, None, None, None)
    assert [(e.metric, e.value) for e in run.epochs] == [("loss", 0.5)]
    with pytest.raises(StoreError, match="epoch"):
        runs.add_epoch(run_id, 10**20, {"accuracy": 0.5})


class Dies(Executor):
    """An executor whose engine 'dies' mid-batch: trials are started, never finished."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, payloads: Sequence[dict[str, Any]], limits: Limits,
            on_result: Callable[[int, SandboxResult], None],
            on_tick: Callable[[], None] | None = None, scratch: Path | None = None, *,
            task_dirs: Sequence[str] | None = None, hide: Sequence[str] = ()) -> None:
        self.calls += 1


def test_a_run_that_never_finishes_is_quarantined_after_max_reruns(tmp_path: Path,
                                                                   cli: Any) -> None:
    dies = Dies()
    engine = Engine(RunStore(tmp_path / "runs.db"), dies)
    (run_id,) = engine.train([spec(GOOD)]).run_ids
    for _ in range(MAX_RERUNS):
        assert engine.resume(stale_after_s=0).run_ids == [run_id]
    assert dies.calls == 1 + MAX_RERUNS
    report = engine.resume(stale_after_s=0)
    assert dies.calls == 1 + MAX_RERUNS and report.outcomes == {"quarantined": 1}
    run = engine.runs.get(run_id)
    assert (run.status, run.outcome, run.attempts) == ("done", "quarantined", 1 + MAX_RERUNS)
    assert engine.resume(stale_after_s=0).run_ids == []
    listed = cli("runs", "--runs", tmp_path / "runs.db")
    assert "quarantined" in listed.stdout, listed


def test_orphans_below_the_limit_are_rerun(tmp_path: Path) -> None:
    runs = RunStore(tmp_path / "runs.db")
    s = spec(GOOD)
    run_id = runs.create("m", "digits", s.model_dump(), s.key(), normalised_md5(GOOD),
                         code_fingerprint(GOOD), GOOD)
    runs.start(run_id)
    assert runs.get(run_id).attempts == 1
    runs.requeue(run_id)
    assert [r.id for r in runs.orphans(0)] == [run_id]


SPY = hostile(
    """
    import json, os
    seen = {"scratch": sorted(os.listdir("..")), "cwd": os.path.basename(os.getcwd()),
            "labels": [p for p in LABELS if os.path.isfile(p) and os.path.getsize(p)
                       or os.path.isdir(p) and os.listdir(p)]}  # covered: empty
    raise RuntimeError("SEEN" + json.dumps(seen))
    """,
    head="LABELS = {labels!r}\n",
)


@pytest.mark.sandbox
def test_a_trial_sees_neither_its_rivals_nor_any_labels(tmp_path: Path) -> None:
    """Neither a rival's logits (to hand in as its own) nor a dataset's label files (digits
    lives in scikit-learn's site-packages folder) are within a trial's reach."""
    from nnrag.train.datasets import label_sources

    labels = label_sources()
    assert any(p.endswith("datasets/data") for p in labels), labels  # digits' own folder
    assert all(os.listdir(p) for p in labels if os.path.isdir(p))  # the test can fail
    engine = Engine(RunStore(tmp_path / "runs.db"), LocalExecutor(2))
    rival = spec(GOOD, "rival", budget={"epochs": 3, "wall_s": 20, "memory_mb": 1024})
    report = engine.train([rival, spec(SPY.replace("{labels!r}", repr(labels)), "spy")])
    got = {engine.runs.get(i).name: engine.runs.get(i) for i in report.run_ids}
    assert got["rival"].outcome == "ok"
    error = got["spy"].error or ""
    assert "SEEN" in error, got["spy"]
    seen = json.loads(error.split("SEEN", 1)[1])
    assert seen["cwd"] == f"run-{got['spy'].id}"
    assert [n for n in seen["scratch"] if n.startswith("run-")] == [seen["cwd"]]
    assert all(n.startswith("data-") for n in seen["scratch"] if n != seen["cwd"])
    assert seen["labels"] == []
