"""CSV export: Optuna's trials_dataframe, with list attrs as per-epoch columns."""

from __future__ import annotations

import json
import uuid

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from hpo.analysis.export import export_all, export_study, trials_frame
from hpo.objective.attrs import RESULT_ATTR
from hpo.storage.rdb import make_storage


@pytest.fixture
def storage(storage_url):
    return make_storage(storage_url)

_INPUTS = ("hpo_seed", "hpo_baseline", "extra")


def _nest(attrs: dict) -> dict:
    """The layout the training objective writes: measurements in one ``result`` attr."""
    return {**{k: v for k, v in attrs.items() if k in _INPUTS},
            RESULT_ATTR: {k: v for k, v in attrs.items() if k not in _INPUTS}}


def _study(storage, name: str | None = None, nested: bool = False) -> optuna.Study:
    layout = _nest if nested else dict
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
        user_attrs=layout({**base, "hpo_baseline": True, "val_accuracy_per_epoch": [0.6, 0.7],
                           "kink_hits_per_epoch": [3, 1], "extra": {"a": 1}}),
    ))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED,
        params={"relu_prime_zero": 0.5},
        distributions={"relu_prime_zero": optuna.distributions.FloatDistribution(0, 1)},
        user_attrs=layout({**base, "hpo_baseline": False, "val_accuracy_per_epoch": [0.5],
                           "kink_hits_per_epoch": [2], "extra": {"b": [1, 2]}}),
    ))
    return study


def test_csv_has_one_row_per_trial_with_readable_columns(storage, tmp_path) -> None:
    study = _study(storage)
    path = tmp_path / "out" / "trials.csv"
    assert export_study(study, path) == 2
    df = pd.read_csv(path)
    assert list(df.columns[:7]) == ["study", "number", "state", "value", "fail_reason",
                                    "user_attrs_hpo_baseline", "user_attrs_hpo_seed"]
    assert set(df["study"]) == {study.study_name}
    assert df["fail_reason"].isna().all()  # nothing failed
    assert list(df["state"]) == ["COMPLETE", "PRUNED"]
    assert list(df["params_relu_prime_zero"]) == [0.0, 0.5]
    assert df["params_precision"].iloc[0] == "float32" and pd.isna(df["params_precision"][1])
    # Per-epoch lists: one column per epoch, empty where the trial stopped earlier;
    # accuracies (stored as fractions) in percent, named so.
    assert list(df["user_attrs_val_accuracy_pct_per_epoch_1"]) == [60.0, 50.0]
    assert df["user_attrs_val_accuracy_pct_per_epoch_2"].iloc[0] == 70.0
    assert pd.isna(df["user_attrs_val_accuracy_pct_per_epoch_2"].iloc[1])
    assert list(df["user_attrs_kink_hits_per_epoch_1"]) == [3, 2]
    assert not any(c.startswith("user_attrs_val_accuracy_per_epoch") for c in df.columns)
    assert df["user_attrs_test_accuracy_pct"].tolist() == [80.0, 80.0]
    # Anything else that is not a plain value becomes JSON.
    assert json.loads(df["user_attrs_extra"].iloc[1]) == {"b": [1, 2]}
    for column in ("user_attrs_test_accuracy_pct", "user_attrs_kink_hits", "user_attrs_device",
                   "user_attrs_precision", "user_attrs_samples_per_second", "duration_s"):
        assert column in df.columns, column
    assert df["duration_s"].dtype.kind == "f"


def test_result_attr_gives_the_columns_of_flat_attrs(storage, tmp_path) -> None:
    flat = trials_frame(_study(storage))
    nested = trials_frame(_study(storage, nested=True))
    assert f"user_attrs_{RESULT_ATTR}" not in nested.columns
    times = ["study", "datetime_start", "datetime_complete", "duration_s"]
    pd.testing.assert_frame_equal(
        flat.drop(columns=times), nested.drop(columns=times)[flat.columns.drop(times)]
    )
    assert sorted(nested.columns) == sorted(flat.columns)


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
    assert list(pd.read_csv(tmp_path / "empty.csv").columns) == [
        "study", "number", "state", "value", "fail_reason"]
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


def test_platform_record_becomes_readable_columns(storage, tmp_path) -> None:
    from hpo.engine.numerics.platform import platform_record

    record = platform_record("cpu")
    gpu = {**record, "device": "cuda", "cuda_device": "NVIDIA H200", "cuda_capability": "9.0",
           "cuda": "13.0", "cudnn": 91200,
           "flags": {**record["flags"], "cuda_matmul_allow_tf32": True}}
    study = _study(storage)  # two trials without a record (an older version's)
    for platform in (record, gpu):
        study.add_trial(optuna.trial.create_trial(
            value=0.9, user_attrs={"hpo_seed": 1, "platform": platform}))
    path = tmp_path / "platform.csv"
    assert export_study(study, path, inline_platform=True) == 4
    assert not (tmp_path / "platform.platform.json").exists()  # nothing left out
    df = pd.read_csv(path)
    assert "user_attrs_platform" not in df.columns  # no JSON blob: one column per field
    assert df.columns[-1].startswith("platform_")  # after every other column
    rows = df.iloc[2:]
    assert list(rows["platform_cpu_model"]) == [record["cpu_model"]] * 2
    assert list(rows["platform_cpu_capability"]) == [record["cpu_capability"]] * 2
    assert list(rows["platform_torch"]) == [record["torch"]] * 2
    assert list(rows["platform_num_threads"]) == [record["num_threads"]] * 2
    assert pd.isna(rows["platform_cuda_device"].iloc[0])
    assert rows["platform_cuda_device"].iloc[1] == "NVIDIA H200"
    assert str(rows["platform_cuda_capability"].iloc[1]) == "9.0"
    assert list(rows["platform_flags_cuda_matmul_allow_tf32"]) == [False, True]
    assert "platform_flags_fp16_reduced_precision_reduction" in df.columns
    assert df["platform_cpu_model"].iloc[:2].isna().all()  # trials without a record: empty


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


def _service_study(tmp_path, name: str, url: str | None = None) -> optuna.Study:
    """A study with a stored config (as hpo create leaves it) and a tuned trial with its
    twin, recorded as the objective records them (one ``result`` attr)."""
    from hpo.engine.numerics.platform import platform_record
    from tests.analysis._studies import StudyBuilder

    builder = StudyBuilder(tmp_path, name, url=url)
    dists = {k: builder.cfg.search_space[k] for k in ("relu_prime_zero", "precision")}
    platform = platform_record("cpu")
    for number, (rpz, link) in enumerate([(0.5, {"hpo_twin": 1}), (0.0, {"hpo_twin_of": 0})]):
        result = {"test_accuracy": 0.9 + 0.01 * number, "kink_hits_per_epoch": [2, 1],
                  "val_accuracy_per_epoch": [0.85, 0.875], "train_loss_per_epoch": [0.5, 0.25],
                  "kink_hits_per_layer": {"2": [2, 0], "4": [0, 1]}, "platform": platform}
        builder.study.add_trial(optuna.trial.create_trial(
            params={"relu_prime_zero": rpz, "precision": "bfloat16"}, distributions=dists,
            value=0.875, user_attrs={"hpo_seed": 7, "hpo_baseline": False, "kink_hits": 3,
                                     **link, RESULT_ATTR: result}))
    return builder.study


def test_rows_name_their_study_settings_and_integers(tmp_path) -> None:
    study = _service_study(tmp_path, "tidy")
    path = tmp_path / "tidy.csv"
    assert export_study(study, path) == 2
    text = path.read_text()
    df = pd.read_csv(path)
    # The study and its fixed settings (tests/analysis/_studies.py FIXED) on every row.
    assert df["study"].tolist() == ["tidy", "tidy"]
    assert df["model"].tolist() == ["fc", "fc"] and df["dataset"].tolist() == ["mnist"] * 2
    assert df["epochs"].tolist() == [1, 1] and df["train_subset"].tolist() == [2000, 2000]
    assert df["batch_size"].tolist() == [128, 128] and df["lr"].tolist() == [0.001] * 2
    assert "precision" not in df.columns  # searched: params_precision
    assert "relu_prime_zero" not in df.columns and "seed" not in df.columns
    # Seeds, twin links and kink hits are integers (nullable): "1", never "1.0".
    header = text.splitlines()[0].split(",")
    first = dict(zip(header, text.splitlines()[1].split(",")))
    assert first["user_attrs_hpo_seed"] == "7" and first["user_attrs_hpo_twin"] == "1"
    assert first["user_attrs_hpo_twin_of"] == "" and first["train_subset"] == "2000"
    assert first["user_attrs_kink_hits_per_epoch_1"] == "2"
    assert df["user_attrs_hpo_twin_of"].tolist()[1] == 0
    nullable = pd.read_csv(path, dtype_backend="numpy_nullable")  # as the README reads it
    assert str(nullable["user_attrs_hpo_twin"].dtype) == "Int64"
    assert nullable["user_attrs_hpo_twin"].isna().tolist() == [False, True]
    # Training loss per epoch and kink hits per activation layer (totals over the epochs).
    assert df["user_attrs_train_loss_per_epoch_2"].tolist() == [0.25, 0.25]
    assert df["user_attrs_kink_hits_layer_2"].tolist() == [2, 2]
    assert df["user_attrs_kink_hits_layer_4"].tolist() == [1, 1]
    assert df["user_attrs_test_accuracy_pct"].tolist() == pytest.approx([90.0, 91.0])


def test_constant_platform_columns_go_to_a_side_file(tmp_path) -> None:
    from hpo.analysis.export import platform_path

    study = _service_study(tmp_path, "side")
    path = tmp_path / "side.csv"
    export_study(study, path)
    df = pd.read_csv(path)
    assert not [c for c in df.columns if c.startswith("platform_")]  # all constant here
    side = json.loads(platform_path(path).read_text())
    assert side["study"] == "side" and side["trials"] == [0, 1]
    record = study.trials[0].user_attrs[RESULT_ATTR]["platform"]
    assert side["columns"]["platform_cpu_model"] == record["cpu_model"]
    assert side["columns"]["platform_num_threads"] == record["num_threads"]
    # Inline on request, and the stale side file of the earlier export is removed.
    export_study(study, path, inline_platform=True)
    assert pd.read_csv(path)["platform_cpu_model"].tolist() == [record["cpu_model"]] * 2
    assert not platform_path(path).exists()


def test_a_varying_platform_column_stays_in_the_table() -> None:
    from hpo.analysis.export import _constant_platform

    platform = pd.DataFrame({"platform_cpu_model": ["a", "a", None],  # third: no record
                             "platform_num_threads": [1, 2, None]})
    assert _constant_platform(platform) == {"platform_cpu_model": "a"}
    platform["platform_cuda"] = [None, None, None]  # empty on every trial: constant too
    assert _constant_platform(platform)["platform_cuda"] is None


def test_export_all_concatenates_into_one_table(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'all.db'}"
    for name in ("one", "two"):
        _service_study(tmp_path, name, url=url)
    paths = export_all(make_storage(url), tmp_path / "csv")
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    assert sorted(set(table["study"])) == ["one", "two"] and len(table) == 4
    assert table.groupby("study")["model"].first().tolist() == ["fc", "fc"]
    assert all((tmp_path / "csv" / f"{n}.platform.json").is_file() for n in ("one", "two"))


def test_file_names_lose_characters_other_systems_refuse() -> None:
    from hpo.analysis.export import safe_file_name

    assert safe_file_name("diverge_mynet:build_mnist_seed0") == "diverge_mynet_build_mnist_seed0"
    assert safe_file_name("a/b\\c d?*") == "a_b_c_d__"
    assert safe_file_name("..") == "study"
