"""The predictor's API: reading LEMUR-format records, fit, predict, save, load, evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nnrag.exceptions import PredictDataError, PredictError, PredictorVersionError
from nnrag.predict import (
    Predictor,
    Trial,
    evaluate,
    feature_names,
    model_family,
    read_lemur,
    read_runs,
)
from nnrag.predict._features import SOURCE_FEATURES, hp_features, source_features

from ._lemur import model_code, write_lemur


@pytest.fixture(scope="module")
def lemur(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lemur(tmp_path_factory.mktemp("lemur"), trials_per_model=6)


@pytest.fixture(scope="module")
def fitted(lemur: Path) -> Predictor:
    return Predictor().fit(read_lemur(lemur).trials)


def test_families_strip_variant_prefixes_and_suffixes() -> None:
    assert model_family("ast-dimension-AlexNet-0ab30f1d33e386ce2eaa951367c5ec24") == "AlexNet"
    assert model_family("AlexNet-ad69700d-0e12-458f-afad-93f03988a4e7") == "AlexNet"
    assert model_family("AlexNet") == "AlexNet"
    assert model_family("BayesianNet-2") == "BayesianNet"
    assert model_family("InceptionV3-2") == "InceptionV3"
    assert model_family("ga-115") == "ga"
    assert model_family("rag-04b5b215909876acbf5aa88bbdbe0ab5") == "rag"


def test_source_features_count_layers_statically() -> None:
    names = dict(zip(SOURCE_FEATURES, source_features(model_code(32, 2)), strict=True))
    assert names["layer_Conv2d"] == 3
    assert names["layer_BatchNorm2d"] == 2
    assert names["weight_layers"] == 4  # 3 convolutions and a linear layer
    assert names["width_max"] == 32
    assert names["opt_SGD"] == 1 and names["opt_Adam"] == 0
    assert names["parse_failed"] == 0
    broken = dict(zip(SOURCE_FEATURES, source_features("def f(:\n"), strict=True))
    assert broken["parse_failed"] == 1 and math.isnan(broken["layer_Conv2d"])


def test_transform_names_become_kind_size_and_flip() -> None:
    kind, size, flip = hp_features({"transform": "echo_64_flip"}, None, None)[5:8]
    assert (kind, size, flip) == (1.0, 64.0, 1.0)
    kind, size, flip = hp_features({"transform": "norm"}, None, None)[5:8]
    assert kind == 0.0 and math.isnan(size) and flip == 0.0


def test_reader_builds_one_curve_per_trial_and_counts_skips(tmp_path: Path) -> None:
    bad = [{"task": "img-classification", "dataset": "mnist", "model": "Tiny8-0", "epoch": 1,
            "uid": "nan", "accuracy": float("nan")},
           {"task": "img-classification", "model": "Tiny8-0", "epoch": 1, "uid": "x",
            "accuracy": 0.5},
           "{not json"]
    report = read_lemur(write_lemur(tmp_path / "l", extra_rows=bad))
    assert len(report.trials) == 18
    assert all(len(t.curve) == 3 and t.curve == tuple(sorted(t.curve)) for t in report.trials)
    assert report.skipped == {"other task": 1, "missing field": 1, "bad JSON": 1,
                              "non-finite or out-of-range accuracy": 1}
    assert report.trials[0].code is not None and report.trials[0].epochs == 3


def test_reader_refuses_a_folder_without_its_files(tmp_path: Path) -> None:
    with pytest.raises(PredictDataError, match="stats.jsonl.gz"):
        read_lemur(tmp_path)


def test_reader_refuses_a_truncated_gzip(tmp_path: Path) -> None:
    folder = write_lemur(tmp_path / "l")
    data = (folder / "stats.jsonl.gz").read_bytes()
    (folder / "stats.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(PredictDataError, match="truncated"):
        read_lemur(folder)


def test_prediction_has_an_ordered_interval_and_respects_the_curve(fitted: Predictor) -> None:
    code = model_code(128, 2)
    zero = fitted.predict(code, {"lr": 0.1, "momentum": 0.9, "batch": 64}, "cifar-10")
    assert zero.k == 0 and 0 <= zero.low <= zero.mean <= zero.high <= 1
    assert zero.seen_structure
    later = fitted.predict(code, {"lr": 0.1}, "cifar-10", curve=[0.5, 0.9])
    assert later.k == 2 and later.low >= 0.9 and later.mean >= 0.9  # never below what it reached
    new = fitted.predict(model_code(8, 0).replace("nn.ReLU()", "nn.GELU()"), {}, "mnist")
    assert not new.seen_structure


def test_predictor_learns_the_signal(lemur: Path, fitted: Predictor) -> None:
    scores = evaluate(fitted, read_lemur(lemur).trials)
    assert set(scores) == {"k0", "k1", "k2"}
    assert scores["k0"].n == 36 and scores["k2"].n == 36
    assert scores["k2"].rmse < scores["k2"].baseline_rmse  # better than "last observed"
    assert scores["k2"].r > 0.9


def test_save_and_load_give_the_same_predictions(fitted: Predictor, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "p.json")
    loaded = Predictor.load(path)
    code = model_code(32, 0)
    assert loaded.predict(code, {"lr": 0.01}, "mnist", [0.3]) == \
        fitted.predict(code, {"lr": 0.01}, "mnist", [0.3])
    assert loaded.trained_on == fitted.trained_on


def test_an_incompatible_version_is_refused_with_a_refit_message(fitted: Predictor,
                                                                  tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(PredictorVersionError, match="re-fit"):
        Predictor.load(path)
    data["version"] = 1
    data["heads"]["0"]["features"] = data["heads"]["0"]["features"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(PredictorVersionError, match="re-fit"):
        Predictor.load(path)


def test_a_file_that_is_not_a_predictor_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(PredictError, match="not a saved predictor"):
        Predictor.load(tmp_path / "x.json")
    with pytest.raises(PredictError, match="predict fit"):
        Predictor.load(tmp_path / "missing.json")


def test_scikit_learn_fallback_fits_and_round_trips(lemur: Path, tmp_path: Path) -> None:
    predictor = Predictor(learner="sklearn").fit(read_lemur(lemur).trials)
    loaded = Predictor.load(predictor.save(tmp_path / "s.json"))
    code = model_code(32, 2)
    assert loaded.learner == "sklearn"
    assert loaded.predict(code, {"lr": 0.1}, "cifar-10", [0.4]) == \
        predictor.predict(code, {"lr": 0.1}, "cifar-10", [0.4])


def test_unknown_datasets_are_skipped_at_fit_and_refused_at_predict(lemur: Path,
                                                                    fitted: Predictor) -> None:
    trials = read_lemur(lemur).trials
    odd = Trial("Tiny8-0", "no-such-data", {}, (0.1, 0.2), code=model_code(8, 0))
    predictor = Predictor().fit([*trials, odd])
    assert predictor.trained_on["skipped"] == {"unknown dataset": 1}
    with pytest.raises(PredictError, match="unknown dataset 'imagenet-22k'"):
        fitted.predict(None, {}, "imagenet-22k")


def test_too_few_trials_cannot_fit() -> None:
    with pytest.raises(PredictError, match="at least"):
        Predictor().fit([Trial("m", "mnist", {}, (0.5,))])


def test_run_store_records_become_trials(tmp_path: Path) -> None:
    from nnrag.train import RunStore

    store = RunStore(tmp_path / "runs.db")
    spec = {"dataset": "digits", "metric": "accuracy", "transform": "none",
            "hyperparameters": {"lr": 0.05, "momentum": 0.9, "batch_size": 32},
            "budget": {"epochs": 3}}
    ok = store.create("m1", "digits", spec, "k", "md5", "fp", model_code(8, 0))
    store.finish(ok, {"outcome": "ok", "epochs": [{"epoch": e, "accuracy": 0.3 * e}
                                                   for e in (1, 2, 3)]}, "accuracy")
    failed = store.create("m2", "digits", spec, "k", "md5", "fp", model_code(8, 0))
    store.finish(failed, {"outcome": "error", "epochs": []}, "accuracy")
    store.close()
    report = read_runs(tmp_path / "runs.db")
    assert [t.curve for t in report.trials] == [(0.3, 0.6, 0.8999999999999999)]
    trial = report.trials[0]
    assert trial.hyperparameters["batch"] == 32 and trial.epochs == 3
    assert report.skipped == {"run error": 1}


def test_feature_layout_grows_with_k() -> None:
    assert len(feature_names(2)) == len(feature_names(0)) + 5
