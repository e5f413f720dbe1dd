"""CSV export: Optuna's trials_dataframe, with list attrs as per-epoch columns."""

from __future__ import annotations

import json
import uuid

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from hpo.analysis.export import export_all, export_study, trials_frame
from hpo.storage.rdb import make_storage


@pytest.fixture
def storage(storage_url):
    return make_storage(storage_url)

def _study(storage, name: str | None = None) -> optuna.Study:
    study = optuna.create_study(study_name=name or f"export-{uuid.uuid4().hex[:10]}",
                                storage=storage, direction="maximize")
    base = {"hpo_seed": 0, "precision": "float32", "device": "cpu", "kink_hits": 4,
            "test_accuracy": 0.8, "samples_per_second": 900.0}
    study.add_trial(optuna.trial.create_trial(
        params={"relu_prime_zero": 0.0, "precision": "float32"},
        distributions={"relu_prime_zero": optuna.distributions.FloatDistribution(0, 1),
                       "precision": optuna.distributions.CategoricalDistribution(
                           ["float32", "bfloat16"])},
        value=0.7,
        user_attrs={**base, "hpo_baseline": True, "val_accuracy_per_epoch": [0.6, 0.7],
                    "kink_hits_per_epoch": [3, 1], "extra": {"a": 1}},
    ))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED,
        params={"relu_prime_zero": 0.5},
        distributions={"relu_prime_zero": optuna.distributions.FloatDistribution(0, 1)},
        user_attrs={**base, "hpo_baseline": False, "val_accuracy_per_epoch": [0.5],
                    "kink_hits_per_epoch": [2], "extra": {"b": [1, 2]}},
    ))
    return study


def test_csv_has_one_row_per_trial_with_readable_columns(storage, tmp_path) -> None:
    study = _study(storage)
    path = tmp_path / "out" / "trials.csv"
    assert export_study(study, path) == 2
    df = pd.read_csv(path)
    assert list(df.columns[:6]) == ["number", "state", "value", "fail_reason",
                                    "user_attrs_hpo_baseline", "user_attrs_hpo_seed"]
    assert df["fail_reason"].isna().all()  # nothing failed
    assert list(df["state"]) == ["COMPLETE", "PRUNED"]
    assert list(df["params_relu_prime_zero"]) == [0.0, 0.5]
    assert df["params_precision"].iloc[0] == "float32" and pd.isna(df["params_precision"][1])
    # Per-epoch lists: one column per epoch, empty where the trial stopped earlier.
    assert list(df["user_attrs_val_accuracy_per_epoch_1"]) == [0.6, 0.5]
    assert df["user_attrs_val_accuracy_per_epoch_2"].iloc[0] == 0.7
    assert pd.isna(df["user_attrs_val_accuracy_per_epoch_2"].iloc[1])
    assert list(df["user_attrs_kink_hits_per_epoch_1"]) == [3, 2]
    assert "user_attrs_val_accuracy_per_epoch" not in df.columns
    # Anything else that is not a plain value becomes JSON.
    assert json.loads(df["user_attrs_extra"].iloc[1]) == {"b": [1, 2]}
    for column in ("user_attrs_test_accuracy", "user_attrs_kink_hits", "user_attrs_device",
                   "user_attrs_precision", "user_attrs_samples_per_second", "duration_s"):
        assert column in df.columns, column
    assert df["duration_s"].dtype.kind == "f"


def test_failed_trials_say_why(storage, tmp_path) -> None:
    study = optuna.create_study(study_name=f"failed-{uuid.uuid4().hex[:10]}", storage=storage)
    reason = {"hpo_fail_reason": "interrupted (SIGINT)"}
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=reason))
    # Failed by Optuna's heartbeat check, which can set no attribute: the worker was lost.
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    assert export_study(study, tmp_path / "failed.csv") == 2
    reasons = list(pd.read_csv(tmp_path / "failed.csv")["fail_reason"])
    assert reasons[0] == "interrupted (SIGINT)"
    assert reasons[1].startswith("worker lost")


def test_empty_study_exports_a_header(storage, tmp_path) -> None:
    study = optuna.create_study(study_name=f"empty-{uuid.uuid4().hex[:10]}", storage=storage)
    assert export_study(study, tmp_path / "empty.csv") == 0
    assert list(pd.read_csv(tmp_path / "empty.csv").columns) == ["number", "state", "value",
                                                                  "fail_reason"]
    assert trials_frame(study).empty


def test_queued_trials_without_duration_export(storage, tmp_path) -> None:
    study = optuna.create_study(study_name=f"queued-{uuid.uuid4().hex[:10]}", storage=storage)
    study.enqueue_trial({"x": 1.0}, user_attrs={"hpo_baseline": True, "hpo_seed": 0})
    assert export_study(study, tmp_path / "queued.csv") == 1
    df = pd.read_csv(tmp_path / "queued.csv")
    assert df["state"].tolist() == ["WAITING"] and pd.isna(df["duration_s"][0])
    assert bool(df["user_attrs_hpo_baseline"][0]) is True


def test_export_all_writes_one_file_per_study(tmp_path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'all.db'}")
    _study(storage, "first")
    _study(storage, "second/odd name")
    paths = export_all(storage, tmp_path / "csv")
    assert sorted(p.name for p in paths) == ["first.csv", "second_odd_name.csv"]
    assert all(len(pd.read_csv(p)) == 2 for p in paths)


def test_a_named_objective_still_exports_as_value(storage, tmp_path) -> None:
    import warnings

    study = _study(storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_accuracy"])  # what hpo create does
    assert "value_val_accuracy" in study.trials_dataframe().columns  # Optuna's own name
    df = trials_frame(study)
    assert "value" in df.columns and "value_val_accuracy" not in df.columns
    assert df.loc[df["number"] == 0, "value"].iloc[0] == pytest.approx(0.7)
