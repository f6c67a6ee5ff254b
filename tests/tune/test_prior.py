"""The ``prior`` sampler's retrieval and mapping, and the ``llm`` sampler's proposals, on an
in-memory Optuna study (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnrag.tune.prior import (
    PriorConfig,
    PriorModel,
    adapt,
    candidates,
    load_models,
    matched_epochs,
    nearest,
    save_models,
    similarity,
    to_space,
    warm_configs,
)
from nnrag.tune.samplers import SOURCE_ATTR, LLMHook, PriorHook, schema, validate
from nnrag.tune.space import Param, default_space

optuna = pytest.importorskip("optuna")
NUMERIC = ("lr", "momentum", "batch_size", "dropout")
SPACE = {**{k: p for k, p in default_space({"dropout"}).items() if k in NUMERIC},
         "transform": Param("transform", choices=("norm", "flip"))}
CONV = (3.0, 0.0, 1.0)  # a toy histogram: Conv2d, Linear, ReLU counts
MLP = (0.0, 3.0, 2.0)


def model(name: str, features: tuple[float, ...], *configs: PriorConfig, fp: str = "",
          family: str | None = None) -> PriorModel:
    return PriorModel("lemur", name, family or name, fp or name, features, configs)


def cfg(dataset: str, best: float, **hp: object) -> PriorConfig:
    return PriorConfig(dataset, dict(hp), best, f"rec {dataset} {best}")


def test_lemur_names_are_mapped_clipped_and_snapped() -> None:
    hp = {"lr": 0.5, "momentum": 0.9, "batch": 100, "dropout": 0.7, "transform": "NORM",
          "unknown": 3, "optimizer": "adam"}
    assert to_space(hp, SPACE) == {"lr": 0.1, "momentum": 0.9, "batch_size": 128,
                                   "dropout": 0.5, "transform": "norm"}
    # batch sizes snap in log scale: log2 46 = 5.52 -> 64, log2 45 = 5.49 -> 32
    assert to_space({"batch": 46}, SPACE) == {"batch_size": 64}
    assert to_space({"batch": 45}, SPACE) == {"batch_size": 32}
    assert to_space({"transform": "norm_32_flip"}, SPACE) == {"transform": "norm"}  # its kind
    assert to_space({"transform": "echo_32"}, SPACE) == {}  # no such choice: dropped
    assert to_space({"lr": float("nan")}, SPACE) == {}


def test_a_record_keeps_what_it_was_trained_with_in_the_default_space() -> None:
    full = default_space(set())
    # LEMUR names no optimizer or scheduler: it trained with SGD, no scheduler
    assert to_space({"lr": 0.01, "batch": 32, "transform": "norm_299_flip"}, full) == {
        "lr": 0.01, "batch_size": 32, "optimizer": "sgd", "scheduler": "none",
        "transform": "standardize"}  # norm_* is nnrag's standardize
    assert to_space({"lr": 0.01, "optimizer": "Adam"}, full)["optimizer"] == "adam"
    assert to_space({"transform": "echo_32"}, full) == {}  # nothing of it fits: no defaults
    assert to_space({}, full) == {}


def test_dataset_rule_cuts_the_batch_and_scales_lr() -> None:
    params = {"lr": 0.08, "batch_size": 128, "momentum": 0.5}
    # 400 training samples: at most 400 / 8 = 50 per batch -> 32, lr scaled by 32/128
    assert adapt(params, SPACE, 400) == {"lr": pytest.approx(0.02), "batch_size": 32,
                                         "momentum": 0.5}
    assert adapt(params, SPACE, 10_000) == params
    assert adapt(params, SPACE, None) == params


def test_similarity_prefers_the_same_structure_and_excludes() -> None:
    same = model("Twin", (9.0, 9.0, 9.0), fp="abc")
    assert similarity(("abc", CONV), same) == 1.0
    conv, mlp = model("Conv", CONV, cfg("mnist", 0.9)), model("Mlp", MLP, cfg("mnist", 0.9))
    assert similarity(("x", CONV), conv) > similarity(("x", CONV), mlp)
    assert [m.name for _, m in nearest(("x", CONV), [mlp, conv], 2, min_similarity=0)] == [
        "Conv", "Mlp"]
    found = nearest(("x", CONV), [mlp, conv], 2, exclude=lambda m: m.family == "Conv",
                    min_similarity=0)
    assert [m.name for _, m in found] == ["Mlp"]
    assert nearest(("x", CONV), [model("Empty", CONV)], 2) == []  # no configurations


def test_warm_configs_order_dedup_and_provenance() -> None:
    conv = model("Conv", CONV,
                 cfg("cifar-10", 0.8, lr=0.01, momentum=0.9, batch=64),
                 cfg("mnist", 0.99, lr=0.02, momentum=0.8, batch=32),
                 cfg("mnist", 0.98, lr=0.02, momentum=0.8, batch=32),  # same after mapping
                 cfg("mnist", 0.05, lr=0.5, momentum=0.1, batch=16))
    other = model("Other", (3.0, 0.0, 1.1), cfg("svhn", 0.9, lr=0.003, batch=16))
    far = model("Far", MLP, cfg("mnist", 0.9, lr=0.004))
    warm = warm_configs(("t", CONV), [far, other, conv], SPACE, "mnist", per_model=2,
                        useful=lambda c: c.best > 0.15)
    assert [w.provenance["model"] for w in warm] == ["Conv", "Conv", "Other"]
    assert warm[0].params == {"lr": 0.02, "momentum": 0.8, "batch_size": 32}  # mnist first
    assert warm[0].provenance == {"source": "lemur", "model": "Conv", "similarity": 1.0,
                                  "dataset": "mnist", "recorded_best": 0.99, "quality": 1.0,
                                  "score": 1.0, "record": "rec mnist 0.99"}
    assert warm[1].provenance["dataset"] == "cifar-10"  # the duplicate and the useless skipped
    assert len({json.dumps(w.params, sort_keys=True) for w in warm}) == len(warm)
    # a closer dataset comes before a farther one
    two = model("Two", CONV, cfg("cifar-100", 0.5, lr=0.01), cfg("svhn", 0.9, lr=0.02))
    order = warm_configs(("t", CONV), [two], SPACE, "cifar-10", per_model=2,
                         distance=lambda d: {"svhn": 0.0, "cifar-100": 2.3}[d])
    assert [w.provenance["dataset"] for w in order] == ["svhn", "cifar-100"]
    assert warm_configs(("t", CONV), [], SPACE, "mnist") == []


def test_a_short_epoch_budget_prefers_configurations_that_were_good_early() -> None:
    slow = PriorConfig("mnist", {"lr": 0.0002, "batch": 16}, 0.99, "slow",
                       curve=(0.2, 0.4, 0.6, 0.9, 0.99))
    fast = PriorConfig("mnist", {"lr": 0.05, "batch": 64}, 0.97, "fast",
                       curve=(0.9, 0.95, 0.96, 0.97, 0.97))
    conv = model("Conv", CONV, slow, fast)
    first = [w.provenance["record"] for w in warm_configs(("t", CONV), [conv], SPACE, "mnist")]
    assert first == ["slow", "fast"]  # no budget: the overall best first
    short = warm_configs(("t", CONV), [conv], SPACE, "mnist", epochs=3)
    assert [w.provenance["record"] for w in short] == ["fast", "slow"]
    assert short[0].provenance["recorded_at_epochs"] == 0.96
    assert slow.at(3) == 0.6 and slow.at(None) == 0.99 and cfg("mnist", 0.5).at(3) == 0.5


def test_a_poor_record_of_the_nearest_model_loses_to_a_good_one_of_a_neighbour() -> None:
    # the twin by code never trained (0.16 on MNIST); a less similar model reached 0.98
    twin = model("Twin", CONV, cfg("mnist", 0.16, lr=0.1, batch=16), fp="t")
    near = model("Near", (3.0, 0.0, 1.5), cfg("mnist", 0.98, lr=0.02, batch=32),
                 cfg("mnist", 0.6, lr=0.001, batch=32))
    warm = warm_configs(("t", CONV), [twin, near], SPACE, "mnist")
    assert [w.provenance["record"] for w in warm] == ["rec mnist 0.98", "rec mnist 0.6"]
    assert warm[1].provenance["quality"] == pytest.approx(0.6 / 0.98, abs=1e-4)
    # quality is relative to the best any model reached on the dataset: 0.16 / 0.98 < 0.5
    assert warm_configs(("t", CONV), [twin, near], SPACE, "mnist", min_quality=0.7)[-1] \
        .provenance["record"] == "rec mnist 0.98"
    alone = warm_configs(("t", CONV), [twin], SPACE, "mnist")
    assert [w.provenance["quality"] for w in alone] == [1.0]  # the best known, so kept


def test_sharpness_weighs_similarity_against_quality() -> None:
    near = model("Near", (3.0, 0.5, 1.0), cfg("mnist", 0.6, lr=0.01, batch=32))  # sim 0.97
    unlike = model("Unlike", (2.0, 2.0, 1.0), cfg("mnist", 1.0, lr=0.05, batch=32))  # 0.76
    def first(**kw: float) -> str:
        return str(warm_configs(("t", CONV), [near, unlike], SPACE, "mnist", **kw)[0]
                   .provenance["model"])
    assert first() == "Unlike"  # 0.97 x 0.6 < 0.76 x 1.0
    assert first(sharpness=4.0) == "Near"  # 0.97 ** 4 x 0.6 > 0.76 ** 4 x 1.0
    assert warm_configs(("t", CONV), [near], SPACE, "mnist", sharpness=4.0)[0] \
        .provenance["score"] == pytest.approx(similarity(("t", CONV), near) ** 4, abs=1e-4)


def test_results_on_the_tuned_dataset_are_looked_at_beyond_the_k_nearest() -> None:
    # three zoo models closer by code, all recorded on mnist; one trained model less
    # similar, but with a result on the tuned dataset itself
    zoo = [model(f"Zoo{i}", CONV, cfg("mnist", 0.99, lr=0.01 * (i + 1), batch=32), fp=f"z{i}")
           for i in range(3)]
    own = PriorModel("runs", "mine", "mine", "m", (3.0, 0.0, 1.5),
                     (cfg("fashion-mnist", 0.8, lr=0.03, batch=16, optimizer="adamw"),))
    picked = candidates(("t", CONV), zoo + [own], 2, "fashion-mnist")
    assert [m.name for _, m in picked] == ["Zoo0", "Zoo1", "mine"]
    assert [m.name for _, m in nearest(("t", CONV), zoo + [own], 2)] == ["Zoo0", "Zoo1"]
    warm = warm_configs(("t", CONV), zoo + [own], default_space(set()), "fashion-mnist",
                        k_models=2, distance=lambda d: 1.0)
    assert warm[0].provenance["source"] == "runs"  # the tuned dataset outweighs the zoo's
    assert warm[0].params["optimizer"] == "adamw"  # what it was trained with, kept
    # nothing on the tuned dataset: the k nearest only, as before
    assert len(candidates(("t", CONV), zoo, 2, "fashion-mnist")) == 2
    assert candidates(("t", CONV), zoo + [own], 2, "fashion-mnist",
                      exclude=lambda m: m.source == "runs") == picked[:2]


def test_epochs_are_matched_in_optimizer_steps() -> None:
    rec = PriorConfig("mnist", {"lr": 0.05, "batch": 64}, 0.99, "r",
                      curve=(0.9, 0.95, 0.97, 0.98, 0.99))
    sizes = {"mnist": 60_000}
    # 3 epochs of 1,000 images at batch 16 = 189 steps, under one MNIST epoch (938 steps)
    assert matched_epochs(rec, {"batch_size": 16}, 3, 1000, sizes) == 1
    # 3 epochs of 60,000 at 16 = 11,250 steps = 12 MNIST epochs at 64
    assert matched_epochs(rec, {"batch_size": 16}, 3, 60_000, sizes) == 12
    assert matched_epochs(rec, {"batch_size": 64}, 3, 60_000, sizes) == 3
    for unknown in ({}, {"cifar-10": 50_000}, None):  # no size: the study's own epochs
        assert matched_epochs(rec, {"batch_size": 16}, 3, 1000, unknown) == 3
    assert matched_epochs(rec, {}, 3, 1000, sizes) == 3
    assert matched_epochs(rec, {"batch_size": 16}, None, 1000, sizes) is None
    # ranked by what it reached after one MNIST epoch, not three
    fast = PriorConfig("mnist", {"lr": 0.1, "batch": 64}, 0.98, "fast",
                       curve=(0.95, 0.96, 0.96, 0.97, 0.98))
    warm = warm_configs(("t", CONV), [model("Conv", CONV, rec, fast)], SPACE, "mnist",
                        epochs=3, train_size=1000, record_sizes=sizes)
    assert [w.provenance["record"] for w in warm] == ["fast", "r"]
    assert warm[0].provenance["record_epochs"] == 1
    assert warm[1].provenance["recorded_at_epochs"] == 0.9


def test_lemur_trials_keep_the_best_per_epoch_budget_with_their_curves() -> None:
    from nnrag.predict import Trial
    from nnrag.tune_sources import PER_DATASET, models_of_trials

    code = "import torch.nn as nn\nclass Net(nn.Module):\n    pass\n"
    late = [Trial("m", "mnist", {"lr": 0.001 * i}, (0.1, 0.2, 0.3, 0.9 + i / 100), code)
            for i in range(PER_DATASET)]
    early = Trial("m", "mnist", {"lr": 0.5}, (0.8, 0.85, 0.86, 0.87), code)
    (m,) = models_of_trials([*late, early])
    refs = {c.hyperparameters["lr"]: c for c in m.configs}
    assert set(refs) == {0.5, *(0.001 * i for i in range(PER_DATASET))}  # early kept too
    assert refs[0.5].curve == (0.8, 0.85, 0.86, 0.87)


def test_run_store_runs_carry_their_learning_curves(tmp_path: Path) -> None:
    from nnrag.train.runstore import RunStore
    from nnrag.tune_sources import run_store_models

    code = "import torch.nn as nn\nclass Net(nn.Module):\n    pass\n"
    store = RunStore(tmp_path / "runs.db")
    ids = []
    for lr, curve in ((0.001, (0.2, 0.5, 0.95)), (0.1, (0.85, 0.88, 0.9))):
        spec = {"dataset": "digits", "hyperparameters": {"lr": lr}}
        run = store.create("net", "digits", spec, f"k{lr}", "md5", "fp", code)
        store.finish(run, {"outcome": "ok", "epochs": [
            {"epoch": i + 1, "accuracy": v, "loss": 1 - v} for i, v in enumerate(curve)]},
            "accuracy")
        ids.append(run)
    assert all(r.epochs == () for r in store.runs())  # listing stays cheap
    (m,) = run_store_models(store.with_epochs(store.runs()))
    curves = {c.hyperparameters["lr"]: c.curve for c in m.configs}
    assert curves == {0.001: (0.2, 0.5, 0.95), 0.1: (0.85, 0.88, 0.9)}
    # a one-epoch study prefers the run that was good after one epoch
    warm = warm_configs(("fp", CONV), [m], SPACE, "digits", epochs=1)
    assert warm[0].params["lr"] == 0.1 and warm[0].provenance["record"] == f"run {ids[1]}"


def test_cache_round_trip_and_key(tmp_path: Path) -> None:
    models = [model("Conv", (1.0, float("nan")), cfg("mnist", 0.9, lr=0.1),
                    PriorConfig("cifar-10", {"lr": 0.1}, 0.5, "r", curve=(0.3, 0.5)))]
    path = tmp_path / "c.json.gz"
    save_models(path, "k1", models)
    assert load_models(path, "k1") is not None
    back = load_models(path, "k1") or []
    assert back[0].configs == models[0].configs and back[0].features[0] == 1.0
    assert load_models(path, "k2") is None
    assert load_models(tmp_path / "missing.json.gz", "k1") is None


def _study() -> object:
    return optuna.create_study(direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=0))


def test_prior_hook_enqueues_first_once_with_provenance() -> None:
    from nnrag.tune.space import suggest

    warm = warm_configs(("t", CONV), [model("Conv", CONV, cfg("mnist", 0.9, lr=0.02, batch=32),
                                            cfg("mnist", 0.8, lr=0.05, batch=64))],
                        SPACE, "mnist")
    study = _study()
    PriorHook(warm).start(study)
    PriorHook(warm).start(study)  # a resumed study: nothing enqueued twice
    seen = []
    for _ in range(3):
        trial = study.ask()  # type: ignore[attr-defined]
        seen.append((suggest(trial, SPACE), dict(trial.user_attrs)))
        study.tell(trial, 0.5)  # type: ignore[attr-defined]
    assert seen[0][0]["lr"] == 0.02 and seen[0][0]["batch_size"] == 32
    assert seen[1][0]["lr"] == 0.05 and seen[1][0]["batch_size"] == 64
    assert seen[0][1][SOURCE_ATTR] == "prior"
    assert json.loads(seen[0][1]["nnrag_provenance"])["record"] == "rec mnist 0.9"
    assert SOURCE_ATTR not in seen[2][1]  # then TPE


def test_llm_proposals_are_validated_and_fallbacks_counted() -> None:
    from nnrag.tune.space import suggest

    assert validate({"lr": 0.01, "batch_size": 32}, SPACE) == {"lr": 0.01, "batch_size": 32}
    assert validate({"hyperparameters": {"transform": "flip"}}, SPACE) == {"transform": "flip"}
    for bad in ({"lr": 5.0}, {"batch_size": 33}, {"nope": 1}, {"lr": "x"}, {}, [1], None,
                {"transform": "echo"}, {"batch_size": 32.5}):
        assert validate(bad, SPACE) is None, bad
    assert set(schema(SPACE)["properties"]) == set(SPACE)

    answers = iter(['```json\n{"lr": 0.03, "momentum": 0.5}\n```', "no idea", "boom"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        answer = next(answers)
        if answer == "boom":
            raise RuntimeError("backend down")
        return answer

    from nnrag.generate.parsing import extract_spec

    hook = LLMHook(ask, lambda t: extract_spec(t)[0], "class Net: pass", SPACE)
    study = _study()
    sources = []
    for _ in range(3):
        attrs = hook.before_ask(study)
        trial = study.ask()  # type: ignore[attr-defined]
        values = suggest(trial, SPACE)
        sources.append(trial.user_attrs.get(SOURCE_ATTR) or attrs.get(SOURCE_ATTR))
        if sources[-1] == "llm":
            assert values["lr"] == 0.03 and values["momentum"] == 0.5
        study.tell(trial, 0.4)  # type: ignore[attr-defined]
    assert sources == ["llm", "tpe-fallback", "tpe-fallback"]
    assert (hook.proposals, hook.fallbacks) == (3, 2)
    assert study.user_attrs["nnrag_llm_fallbacks"] == 2  # type: ignore[attr-defined]
    assert "class Net" in prompts[0] and "Trials so far" in prompts[1]
    assert '"value": 0.4' in prompts[1]
