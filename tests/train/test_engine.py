"""The execution engine end to end: specs, outcomes, dedup, resume, write-back, CLI."""

from __future__ import annotations

import json
import sqlite3
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nnrag.index import code_fingerprint, normalised_md5
from nnrag.train.engine import Engine
from nnrag.train.executors import LocalExecutor
from nnrag.train.runstore import MIGRATIONS, SCHEMA_VERSION, RunStore
from nnrag.train.spec import SpecError, TrainSpec, load_spec, parse_spec
from nnrag.train.wiring import indexed_engine

pytestmark = pytest.mark.sandbox

GOOD = '''
import torch
from torch import nn


def supported_hyperparameters():
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.fc = nn.Linear(in_shape[1] * in_shape[2] * in_shape[3], out_shape[0])

    def forward(self, x):
        return self.fc(x.flatten(1))

    def train_setup(self, prm):
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(x), y)
            loss.backward()
            self.optimizer.step()
'''


def bad(body: str) -> str:
    """GOOD with ``forward`` replaced by ``body``."""
    head, _, tail = GOOD.partition("    def forward(self, x):\n"
                                   "        return self.fc(x.flatten(1))\n")
    return head + textwrap.indent(textwrap.dedent(body), "    ") + tail


def spec(code: str, **kw: object) -> TrainSpec:
    data = {"model": {"code": code, "name": kw.pop("name", "m")}, "dataset": "digits",
            "budget": {"epochs": 2, "wall_s": 20, "memory_mb": 1024}, "limit": 300,
            "hyperparameters": {"lr": 0.1}}
    data.update(kw)
    return parse_spec(data)


@pytest.fixture(autouse=True)
def _no_pooled_workers_left() -> Iterator[None]:
    """Engines keep sandbox workers for the next call; other tests count our children."""
    yield
    from nnrag.sandbox import shutdown_pool

    shutdown_pool()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return indexed_engine(RunStore(tmp_path / "runs.db"), LocalExecutor(2), tmp_path / "index.db")


def test_trains_and_records_epochs(engine: Engine, tmp_path: Path) -> None:
    report = engine.train([spec(GOOD)])
    run = engine.runs.get(report.run_ids[0])
    assert run.outcome == "ok" and run.params == 64 * 10 + 10
    metrics = {(e.epoch, e.metric) for e in run.epochs}
    assert {(1, "accuracy"), (2, "accuracy"), (1, "test_loss")} <= metrics
    assert run.best > 0.5  # a linear model on digits learns quickly
    assert json.loads(run.versions)["torch"]
    assert run.indexed_as == f"trained.m_{normalised_md5(GOOD)[:8]}.Net"
    # written back: retrieval can ask for proven blocks only, and shows their result
    from nnrag.index import Store
    from nnrag.search import Filters, Searcher

    hits = Searcher(Store(tmp_path / "index.db"), model="hashing").search(
        "net linear", mode="lexical", filters=Filters(proven=True)
    )
    assert [h.qualname for h in hits] == [run.indexed_as]
    assert hits[0].trained == f"accuracy {run.best:.3f} on digits"


OUTCOMES = [
    ("forever", "def forward(self, x):\n    while True:\n        pass\n", "timeout"),
    ("bomb", "def forward(self, x):\n    keep = []\n    while True:\n"
             "        keep.append(bytearray(1 << 26))\n", "oom"),
    ("nan", "def forward(self, x):\n    return self.fc(x.flatten(1)) * float('nan')\n", "nan"),
    ("raises", "def forward(self, x):\n    raise ValueError('broken block')\n", "error"),
    ("exits", "def forward(self, x):\n    import os\n    os._exit(3)\n", "error"),
    ("socket", "def forward(self, x):\n    import socket\n"
               "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n", "error"),
]


def test_every_failure_is_an_outcome_not_a_crash(engine: Engine) -> None:
    specs = [spec(bad(body), name=name, budget={"epochs": 1, "wall_s": 8, "memory_mb": 1024})
             for name, body, _ in OUTCOMES]
    report = engine.train(specs)
    got = {engine.runs.get(i).name: engine.runs.get(i) for i in report.run_ids}
    for name, _, outcome in OUTCOMES:
        assert got[name].outcome == outcome, (name, got[name].error)
    assert "broken block" in got["raises"].traceback
    assert report.trained == len(OUTCOMES)


def test_reformatted_duplicates_are_not_retrained(engine: Engine) -> None:
    renamed = GOOD.replace("self.fc", "self.classifier").replace("# ", "") + "\n# a comment\n"
    spaced = GOOD.replace("\n\n\n", "\n\n\n\n")
    assert code_fingerprint(renamed) == code_fingerprint(GOOD)
    # a different constant is a different model (ResNet-8 vs ResNet-20): not a duplicate
    assert code_fingerprint(GOOD.replace("in_shape[3]", "in_shape[2]")) != code_fingerprint(GOOD)
    report = engine.train([spec(GOOD), spec(renamed, name="renamed"), spec(spaced, name="spaced")])
    assert (report.trained, report.deduplicated) == (1, 2)
    again = engine.train([spec(GOOD)])
    assert (again.trained, again.deduplicated) == (0, 1)
    first = engine.runs.get(report.run_ids[0])
    copy = engine.runs.get(again.run_ids[0])
    assert copy.duplicate_of == first.id and copy.best == first.best
    other_data = engine.train([spec(GOOD, seed=1)])  # another spec: trained again
    assert other_data.trained == 1


def test_resume_reruns_orphans(engine: Engine) -> None:
    s = spec(GOOD)
    run_id = engine.runs.create("m", "digits", s.model_dump(), s.key(), normalised_md5(GOOD),
                                code_fingerprint(GOOD), GOOD)
    engine.runs.start(run_id)  # an engine that died mid-trial: running, heartbeat goes stale
    assert engine.resume(stale_after_s=60).run_ids == []
    report = engine.resume(stale_after_s=0)
    assert report.run_ids == [run_id] and engine.runs.get(run_id).outcome == "ok"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"model": {}}, "model"),
        ({"model": {"file": "a.py", "code": "x"}}, "model"),
        ({"model": {"code": "x"}, "hyperparameters": {"lr": -1}}, "hyperparameters.lr"),
        ({"model": {"code": "x"}, "hyperparameters": {"learning_rate": 0.1}},
         "hyperparameters.learning_rate"),
        ({"model": {"code": "x"}, "budget": {"epochs": 0}}, "budget.epochs"),
        ({"model": {"code": "x"}, "hyperparameters": {"optimizer": "lion"}},
         "hyperparameters.optimizer"),
        ([1, 2], "mapping"),
        ({"model": {"code": "x"}, "dataset": "digit"}, "did you mean 'digits'"),
        ({"model": {"code": "x"}, "metric": "acuracy"}, "did you mean 'accuracy'"),
    ],
)
def test_invalid_specs_name_the_field(data: object, field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(data)


def test_spec_files(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(GOOD)
    (tmp_path / "s.yaml").write_text("- model: {file: m.py}\n  dataset: digits\n"
                                     "- model: {code: x}\n")
    specs = load_spec(tmp_path / "s.yaml")
    assert Path(specs[0].model.file or "").is_absolute() and len(specs) == 2
    (tmp_path / "broken.yaml").write_text("model: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")


def test_run_store_migrates_an_older_schema(tmp_path: Path) -> None:
    old = RunStore(tmp_path / "r.db", upgrade_to=1)
    assert old.version == 1
    old._conn.execute(
        "INSERT INTO runs(name, dataset, spec, spec_key, code_md5, fingerprint, status, created)"
        " VALUES ('x', 'digits', '{}', 'k', 'm', 'f', 'done', 0)"
    )
    old.close()
    new = RunStore(tmp_path / "r.db")
    assert new.version == SCHEMA_VERSION == len(MIGRATIONS)
    assert new.get(1).name == "x" and new.get(1).flops is None
    new._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    new.close()
    from nnrag.exceptions import SchemaVersionError

    with pytest.raises(SchemaVersionError):
        RunStore(tmp_path / "r.db")


def test_killed_writer_leaves_the_store_intact(tmp_path: Path) -> None:
    import multiprocessing as mp

    path = tmp_path / "r.db"
    store = RunStore(path)
    s = spec(GOOD)
    run_id = store.create("m", "digits", s.model_dump(), s.key(), "md5", "fp", GOOD)

    def writer() -> None:
        st = RunStore(path)
        st._conn.execute("BEGIN IMMEDIATE")
        st._conn.executemany("INSERT INTO epochs VALUES (?,?,?,?)",
                             [(run_id, e, "accuracy", 0.5) for e in range(1000)])
        time.sleep(30)  # killed here, mid-transaction

    proc = mp.get_context("fork").Process(target=writer)
    proc.start()
    time.sleep(1.0)
    reader = RunStore(path)  # a concurrent reader is not blocked by the open write
    assert reader.get(run_id).epochs == ()
    proc.kill()
    proc.join()
    after = RunStore(path)
    assert after.get(run_id).epochs == ()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    after.finish(run_id, {"outcome": "ok", "epochs": [{"epoch": 1, "accuracy": 0.9}]}, "accuracy")
    assert after.get(run_id).best == pytest.approx(0.9)


def test_cli_train_runs_show_leaderboard(cli, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "m.py").write_text(GOOD)
    (tmp_path / "spec.yaml").write_text(
        "model: {file: m.py}\ndataset: digits\nlimit: 300\nbudget: {epochs: 2, wall_s: 30}\n"
    )
    res = cli("train", tmp_path / "spec.yaml", "--format", "json")
    assert res.returncode == 0, res
    data = json.loads(res.stdout)
    assert data["trained"] == 1 and data["runs"][0]["outcome"] == "ok"
    assert "epoch 2" in res.stderr  # progress per epoch
    runs = json.loads(cli("runs", "--format", "json").stdout)
    assert runs[0]["name"] == "m"
    shown = json.loads(cli("show", str(runs[0]["id"]), "--format", "json").stdout)
    assert shown["spec"]["dataset"] == "digits" and len(shown["epochs"]) >= 4
    board = cli("leaderboard", "--dataset", "digits")
    assert "m" in board.stdout and board.returncode == 0
    empty = cli("leaderboard", "--dataset", "MNIST")  # registered, no runs: said, not blank
    assert empty.returncode == 0 and "no successful runs on mnist" in empty.stdout
    (tmp_path / "bad.json").write_text('{"model": {}, "dataset": "digits"}')
    for args, message in [
        (("show", "999"), "no run 999"),
        (("train", tmp_path / "m.py"), "not valid YAML"),
        (("train", tmp_path / "bad.json"), "not a valid training spec"),
        (("leaderboard", "--dataset", "imagenet"), "unknown dataset 'imagenet'; known: "),
        (("leaderboard", "--dataset", "digit"), "did you mean 'digits'? Known: "),
    ]:
        r = cli(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r


def test_cli_train_exits_1_when_a_trial_fails(cli, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "m.py").write_text(GOOD)
    (tmp_path / "raises.py").write_text(bad("def forward(self, x):\n    raise ValueError('no')\n"))
    common = "dataset: digits\n  limit: 300\n  budget: {epochs: 1, wall_s: 30}\n"
    (tmp_path / "spec.yaml").write_text(
        f"- model: {{file: m.py}}\n  {common}- model: {{file: raises.py}}\n  {common}")
    res = cli("train", tmp_path / "spec.yaml", "--format", "json")
    assert res.returncode == 1, res
    assert sorted(r["outcome"] for r in json.loads(res.stdout)["runs"]) == ["error", "ok"]
    assert "1 of 2 runs did not end ok" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "ok.yaml").write_text(f"model: {{file: m.py}}\n{common.replace('  ', '')}")
    again = cli("train", tmp_path / "ok.yaml")  # every run ok (here: a stored twin): 0
    assert again.returncode == 0 and "duplicate" in again.stderr, again


def test_ray_backend_in_local_mode(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from nnrag.train.executors import RayExecutor

    try:
        ray_exec = RayExecutor(num_cpus=2)
    except Exception as exc:  # no Ray runtime on this machine (shm, ports): not our code
        pytest.skip(f"a local Ray instance cannot start here: {exc}")
    try:
        engine = Engine(RunStore(tmp_path / "runs.db"), ray_exec)
        report = engine.train([spec(GOOD), spec(bad(OUTCOMES[3][1]), name="raises")])
        outcomes = sorted(engine.runs.get(i).outcome for i in report.run_ids)
        assert outcomes == ["error", "ok"]
    finally:
        ray_exec.shutdown()


def test_cli_datasets(cli) -> None:  # noqa: ANN001
    rows = {r["name"]: r for r in json.loads(cli("datasets", "--format", "json").stdout)}
    assert rows["digits"]["available"] and rows["digits"]["in_shape"] == [1, 8, 8]
    assert not rows["cifar10"]["available"] and "torchvision" in rows["cifar10"]["reason"]
    assert "no (see --format json)" in cli("datasets", "cifar*").stdout


BLOCK_TREE = '''
from torch import nn


class TinyCNN(nn.Module):
    """A plain indexed block: no contract, just images in, features out."""

    def __init__(self, in_chans=1, width=16):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.conv(x).relu()).flatten(1)
'''


def test_plain_block_from_the_index_trains_with_defaults(tmp_path: Path) -> None:
    from nnrag.index import Store, index_path

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "blocks.py").write_text(BLOCK_TREE)
    db = tmp_path / "index.db"
    index_path(Store(db), tmp_path / "tree", prefix="", package="tree")
    engine = indexed_engine(RunStore(tmp_path / "runs.db"), LocalExecutor(1), db)
    s = parse_spec({"model": {"block": "TinyCNN"}, "dataset": "digits", "limit": 300,
                    "hyperparameters": {"lr": 0.1}, "budget": {"epochs": 2, "wall_s": 30}})
    run = engine.runs.get(engine.train([s]).run_ids[0])
    assert run.outcome == "ok", run.error
    assert run.params == 16 * 1 * 9 + 16 + 16 * 10 + 10  # conv + the added linear head
    assert run.indexed_as.endswith(".TinyCNN")


def test_write_back_adds_only_its_own_runs_to_a_shared_index(tmp_path: Path,
                                                            nnrag_home: Path) -> None:
    """Two homes train into one index: each adds its own block, beside its own run store,
    and neither removes the other's (nor indexes a stray file of $NNRAG_HOME/trained)."""
    from nnrag.index import Store
    from nnrag.train.wiring import trained_folder

    stray = nnrag_home / "trained"
    stray.mkdir()
    (stray / "__init__.py").touch()
    (stray / "old_model.py").write_text(GOOD)  # an earlier run's file: not ours to index
    shared = tmp_path / "shared.db"
    other = GOOD.replace("return self.fc(x.flatten(1))", "return self.fc(x.flatten(1)) * 2.0")
    names = []
    for home, code, name in (("h1", GOOD, "mlp"), ("h2", other, "lenet5")):
        runs = RunStore(tmp_path / home / "runs.db")
        (run_id,) = indexed_engine(runs, LocalExecutor(1), shared).train(
            [spec(code, name=name)]).run_ids
        names.append(runs.get(run_id).indexed_as)
        assert (trained_folder(runs) / f"{names[-1].split('.')[1]}.py").read_text() == code
    assert trained_folder(RunStore(tmp_path / "h1" / "runs.db")) == tmp_path / "h1" / "trained"
    with Store(shared) as store:
        indexed = {r["qualname"] for r in store.block_definitions()}
        assert indexed == set(names) and names[0].startswith("trained.mlp_")
        (metric,) = store.block_metrics(names[0])
        assert metric.run_store == str(tmp_path / "h1" / "runs.db")


def test_the_index_keeps_a_blocks_best_run(engine: Engine, tmp_path: Path) -> None:
    from nnrag.index import Store

    good = engine.runs.get(engine.train([spec(GOOD)]).run_ids[0])
    worse = engine.runs.get(engine.train(
        [spec(GOOD, hyperparameters={"lr": 1e-6}, budget={"epochs": 1, "wall_s": 20})]
    ).run_ids[0])
    assert worse.indexed_as == good.indexed_as and worse.best < good.best
    with Store(tmp_path / "index.db") as store:
        (metric,) = store.block_metrics(good.indexed_as)
    assert (metric.value, metric.run_id) == (good.best, good.id)


def test_metric_and_transform_registries() -> None:
    import torch

    from nnrag.train.registry import METRICS, UnknownEntryError, metric_fn
    from nnrag.train.transforms import TRANSFORMS

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    assert metric_fn("accuracy")(logits, torch.tensor([0, 0])) == 0.5
    assert metric_fn("top5")(logits, torch.tensor([0, 0])) == 1.0
    assert [e.name for e in METRICS.list("*acc*")] == ["accuracy"]
    assert METRICS.list("accuracy")[0].provenance.endswith("registry.accuracy")
    assert {e.name for e in TRANSFORMS.list()} >= {"none", "standardize"}
    with pytest.raises(UnknownEntryError, match="did you mean 'accuracy'"):
        metric_fn("acuracy")


def test_block_net_uses_the_main_output_and_model_building_functions() -> None:
    """GoogLeNet-style models return (logits, aux...) while training; factories build models."""
    import collections

    import torch
    from torch import nn

    from nnrag.train.contract import BlockNet

    Outputs = collections.namedtuple("Outputs", ["logits", "aux"])

    class WithAux(nn.Module):
        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):  # noqa: ANN001, ANN202
            logits = self.fc(x.flatten(1))
            return Outputs(logits, logits.detach() * 0)

    def factory(num_classes: int = 1000) -> nn.Module:
        return WithAux(num_classes)

    for build in (WithAux, factory):
        net = BlockNet(build, (2, 1, 8, 8), (10,), {}, torch.device("cpu"))
        assert isinstance(net.head, nn.Identity)
        assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_an_engine_without_a_resolver_refuses_a_block_reference(tmp_path: Path) -> None:
    engine = Engine(RunStore(tmp_path / "runs.db"))
    s = parse_spec({"model": {"block": "zoo.layers.mlp.Mlp"}, "dataset": "digits"})
    with pytest.raises(SpecError, match="no block resolver.*index_resolver"):
        engine.train([s])
    assert engine.runs.runs() == []  # refused before anything was recorded


def test_injected_resolver_and_sink_see_the_trained_run(tmp_path: Path) -> None:
    from nnrag.train.engine import Trained
    from nnrag.train.events import TrialDone, TrialEpoch

    asked: list[str | None] = []
    got: list[Trained] = []

    def resolver(s: TrainSpec) -> tuple[str, str | None]:
        asked.append(s.model.block)
        return BLOCK_TREE, "TinyCNN"

    def sink(trained: Trained) -> str:
        got.append(trained)
        return "custom.place.Net"

    engine = Engine(RunStore(tmp_path / "runs.db"), LocalExecutor(1), resolver=resolver,
                    on_trained=sink)
    s = parse_spec({"model": {"block": "somewhere.TinyCNN"}, "dataset": "digits", "limit": 300,
                    "hyperparameters": {"lr": 0.1}, "budget": {"epochs": 1, "wall_s": 30}})
    events: list[object] = []
    run_id = engine.train([s], events.append).run_ids[0]
    assert asked == ["somewhere.TinyCNN"]
    run = engine.runs.get(run_id)
    assert run.outcome == "ok", run.error
    (trained,) = got
    assert trained.record.id == run_id and trained.record.outcome == "ok"
    assert trained.record.best is not None and trained.code == BLOCK_TREE
    assert trained.block == "TinyCNN" and trained.spec == s
    assert engine.runs.get(run_id).indexed_as == "custom.place.Net"
    assert [type(e) for e in events] == [TrialEpoch, TrialDone]
    done = events[-1]
    assert isinstance(done, TrialDone) and done.to_dict()["event"] == "done"
    assert not (tmp_path / "index.db").exists()  # nothing touched the index


def test_run_records_are_frozen_and_keep_their_json_form(tmp_path: Path) -> None:
    import dataclasses

    runs = RunStore(tmp_path / "runs.db")
    s = spec(GOOD)
    run_id = runs.create("m", "digits", s.model_dump(), s.key(), "md5", "fp", GOOD)
    runs.finish(run_id, {"outcome": "ok", "params": 5,
                         "epochs": [{"epoch": 1, "accuracy": 0.5}]}, "accuracy")
    run = runs.get(run_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.best = 1.0  # type: ignore[misc]
    data = run.to_dict()
    assert data["epochs"] == [{"epoch": 1, "metric": "accuracy", "value": 0.5}]
    assert run.spec_dict["dataset"] == "digits" and data["best"] == 0.5
    assert run.to_dict(("id", "best")) == {"id": run_id, "best": 0.5}
    assert [r.id for r in runs.leaderboard("digits")] == [run_id]


def test_a_workspace_reuses_its_warm_sandbox_worker_across_train_calls(tmp_path: Path) -> None:
    """A tune study trains one spec per call: each call must not start a fresh worker (and
    pay its torch import) — the workspace's engines share a scratch folder, so the worker
    the first call kept is the one the second call uses."""
    from nnrag.sandbox._kept import KEPT
    from nnrag.workspace import open_workspace

    ws = open_workspace(tmp_path / "home")
    first = ws.train(spec(GOOD, hyperparameters={"lr": 0.1}))
    kept = {w.pid for w in KEPT.workers()}
    second = ws.train(spec(GOOD, hyperparameters={"lr": 0.05}))
    store = ws.run_store(readonly=True)
    assert [store.get(r).outcome for r in (*first.run_ids, *second.run_ids)] == ["ok", "ok"]
    assert kept and {w.pid for w in KEPT.workers()} == kept
    assert ws.engine()._scratch() == ws.engine()._scratch()
