"""``hpo status`` and ``hpo run`` progress lines: an accuracy objective in percent (as
``hpo compare`` shows it), any other objective as stored."""

from __future__ import annotations

import io
import warnings

import optuna

from hpo.worker.progress import ProgressMonitor, format_status, snapshot


def _study(metric: str | None) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="s")
    if metric is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    for value, baseline in ((0.9762, False), (0.95, True), (0.96, True)):
        study.add_trial(optuna.trial.create_trial(
            value=value, user_attrs={"hpo_baseline": baseline, "hpo_seed": 0}))
    return study


def test_accuracy_is_shown_in_percent_and_differences_in_pp() -> None:
    snap = snapshot(_study("val_accuracy"))
    text = "\n".join(format_status(snap))
    assert "best: trial 0 val_accuracy 97.62 %" in text
    assert "baseline (PyTorch derivatives): mean 95.50 % std 0.71 pp over 2 runs" in text
    assert "best search trial - baseline mean: +2.12 pp" in text
    assert "0.97" not in text  # no fraction anywhere
    line = ProgressMonitor(_study("val_accuracy"), io.StringIO()).line(snap)
    assert "| best val_accuracy 97.62 % (#0) |" in line


def test_the_stored_config_names_the_metric_of_an_older_study() -> None:
    study = _study(None)
    study.set_user_attr("hpo_config", {"metric": "val_accuracy"})
    assert snapshot(study).percent


def test_another_objective_is_shown_as_stored() -> None:
    snap = snapshot(_study("hazard_per_batch"))
    text = "\n".join(format_status(snap))
    assert "best: trial 0 value 0.9762" in text and "%" not in text
    assert "best search trial - baseline mean: +0.0212" in text
