"""The objective: trial params -> TrainSpec -> (fake) engine run -> user attrs / pruning."""

from __future__ import annotations

import math
import textwrap

import optuna
import pytest

from hpo.config.study import load_study_config
from hpo.engine.numerics.platform import platform_record
from hpo.engine.result import TrainResult
from hpo.engine.spec import TrainSpec
from hpo.engine.train import EpochReport
from hpo.objective.attrs import HEADLINE, RESULT_ATTR, trial_attrs
from hpo.objective.params import suggest_params
from hpo.objective.train import Objective

STUDY = """\
name: objective-test
n_trials: 4
sampler: {name: random, seed: 0}
train:
  model: fc
  depth: 1
  width: 16
  train_subset: 500
  val_size: 500
  epochs: 3
  seed: 7
search_space:
  relu_prime_zero: {type: float, low: 0.0, high: 1.0}
  batch_size: {type: int, low: 16, high: 128, log: true}
  precision: {type: categorical, choices: [float32, bfloat16]}
"""


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY))
    return load_study_config(path)


class FakeTrain:
    """Stands in for hpo.engine.train.train: records its specs, reports every epoch."""

    def __init__(self, accuracies=(0.5, 0.6, 0.7), diverge_at: int | None = None):
        self.accuracies = accuracies
        self.diverge_at = diverge_at
        self.specs: list[TrainSpec] = []

    def __call__(self, spec, *, data_dir=None, on_epoch_end=None) -> TrainResult:
        self.specs.append(spec)
        result = TrainResult(device="cpu", precision=spec.precision, torch_version="fake",
                             params_sha256="ab" * 32, configured_activations=1,
                             wall_time_s=1.5, samples_per_second=1000.0,
                             platform={**platform_record("cpu"), "torch": "fake"})
        for epoch in range(1, spec.epochs + 1):
            if epoch == self.diverge_at:
                result.diverged = True
                result.divergence_reason = f"non-finite training loss (nan) at epoch {epoch}"
                result.kink_hits_per_epoch.append(3)
                result.kink_hits += 3
                return result
            acc = self.accuracies[epoch - 1]
            result.val_accuracy.append(acc)
            result.kink_hits_per_epoch.append(epoch)
            result.kink_hits += epoch
            result.train_loss.append(1.0 / epoch)
            result.kink_hits_per_layer.setdefault("1", []).append(epoch)
            result.kink_hits_per_layer.setdefault("3", []).append(0)
            result.epochs_completed = epoch
            if on_epoch_end is not None:
                on_epoch_end(EpochReport(epoch, acc, 1.0 / epoch, epoch, 0.1))
        result.test_accuracy = 0.75
        return result


PARAMS = {"relu_prime_zero": 0.25, "batch_size": 64, "precision": "bfloat16"}


def test_params_become_the_spec_and_the_result_becomes_attrs(cfg) -> None:
    fake = FakeTrain()
    trial = optuna.trial.FixedTrial(PARAMS)
    value = Objective(cfg, train_fn=fake)(trial)
    assert value == 0.7  # the last epoch's validation accuracy
    (spec,) = fake.specs
    assert (spec.relu_prime_zero, spec.batch_size, spec.precision) == (0.25, 64, "bfloat16")
    assert (spec.width, spec.epochs, spec.seed) == (16, 3, 7)  # fixed settings and seed
    # The inputs and headline numbers are attributes of their own; the other measurements
    # one ``result`` attribute.
    assert set(trial.user_attrs) == {"hpo_seed", "hpo_baseline", RESULT_ATTR, *HEADLINE}
    attrs = trial_attrs(trial.user_attrs)
    assert attrs["val_accuracy_per_epoch"] == [0.5, 0.6, 0.7]
    assert attrs["kink_hits_per_epoch"] == [1, 2, 3] and attrs["kink_hits"] == 6
    assert attrs["test_accuracy"] == 0.75
    # The training loss per epoch, and the kink hits of each activation layer per epoch.
    assert attrs["train_loss_per_epoch"] == [1.0, 0.5, 1.0 / 3]
    assert attrs["kink_hits_per_layer"] == {"1": [1, 2, 3], "3": [0, 0, 0]}
    assert attrs["hpo_seed"] == 7 and attrs["hpo_baseline"] is False
    assert attrs["diverged"] is False and "divergence_reason" not in attrs
    for key in ("configured_activations", "precision", "device", "torch_version",
                "wall_time_s", "samples_per_second", "params_sha256"):
        assert key in attrs, key


def test_baseline_trials_train_with_their_own_seed(cfg) -> None:
    fake = FakeTrain()
    trial = optuna.trial.FixedTrial({**PARAMS, "relu_prime_zero": 0.0})
    trial.set_user_attr("hpo_baseline", True)
    trial.set_user_attr("hpo_seed", 2)
    Objective(cfg, train_fn=fake)(trial)
    assert fake.specs[0].seed == 2
    assert trial.user_attrs["hpo_baseline"] is True


def test_diverged_run_is_recorded_and_pruned(cfg) -> None:
    trial = optuna.trial.FixedTrial(PARAMS)
    with pytest.raises(optuna.TrialPruned, match="diverged: non-finite"):
        Objective(cfg, train_fn=FakeTrain(diverge_at=2))(trial)
    attrs = trial_attrs(trial.user_attrs)
    assert attrs["diverged"] is True
    assert "epoch 2" in attrs["divergence_reason"]
    assert attrs["val_accuracy_per_epoch"] == [0.5]
    assert attrs["test_accuracy"] is None


def test_pruner_stops_training_after_an_epoch(cfg) -> None:
    class PruneAfterSecondReport(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return len(trial.intermediate_values) >= 2

    study = optuna.create_study(direction="maximize", pruner=PruneAfterSecondReport())
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        Objective(cfg, train_fn=FakeTrain())(trial)
    frozen = study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert frozen.intermediate_values == {1: 0.5, 2: 0.6}
    attrs = trial_attrs(frozen.user_attrs)
    assert attrs["val_accuracy_per_epoch"] == [0.5, 0.6]
    assert attrs["train_loss_per_epoch"] == [1.0, 0.5]
    assert attrs["kink_hits"] == 3
    # No result came back: the record was read during the run (at its first epoch's end).
    assert attrs["platform"]["cpu_model"] == platform_record()["cpu_model"]


def test_the_pruner_is_not_asked_after_the_last_epoch(cfg) -> None:
    asked: list[int] = []

    class PruneEverything(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            asked.append(max(trial.intermediate_values))
            return max(trial.intermediate_values) >= 3  # would prune the finished run

    study = optuna.create_study(direction="maximize", pruner=PruneEverything())
    trial = study.ask()
    assert Objective(cfg, train_fn=FakeTrain())(trial) == 0.7  # 3 epochs: completes
    assert asked == [1, 2]


def test_suggest_params_covers_every_distribution_kind(cfg) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    params = suggest_params(study.ask(), cfg.search_space)
    assert set(params) == {"relu_prime_zero", "batch_size", "precision"}
    assert 0.0 <= params["relu_prime_zero"] <= 1.0 and 16 <= params["batch_size"] <= 128
    assert params["precision"] in ("float32", "bfloat16")


def test_non_finite_numbers_are_stored_as_null(cfg) -> None:
    fake = FakeTrain(accuracies=(0.5, 0.6, math.nan))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    Objective(cfg, train_fn=fake)(trial)
    assert trial_attrs(trial.user_attrs)["val_accuracy_per_epoch"] == [0.5, 0.6, None]


def test_attrs_reach_an_rdb_storage(cfg, tmp_path) -> None:
    from hpo.storage.rdb import make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 'objective.db'}")
    study = optuna.create_study(storage=storage, direction="maximize")
    study.enqueue_trial({**PARAMS, "relu_prime_zero": 0.0},
                        user_attrs={"hpo_baseline": True, "hpo_seed": 1})
    trial = study.ask()
    value = Objective(cfg, train_fn=FakeTrain())(trial)
    frozen = study.tell(trial, value)
    attrs = trial_attrs(frozen.user_attrs)
    assert (attrs["hpo_baseline"], attrs["hpo_seed"]) == (True, 1)
    assert attrs["val_accuracy_per_epoch"] == [0.5, 0.6, 0.7]
    assert attrs["test_accuracy"] == 0.75 and attrs["kink_hits"] == 6
    assert attrs["kink_hits_per_layer"]["1"] == [1, 2, 3]  # a dict of lists, stored as is
    # The platform is one attribute holding the whole record, stored and read back as is.
    assert attrs["platform"] == {**platform_record("cpu"), "torch": "fake"}
    assert not [key for key in attrs if key.startswith("platform_")]
    assert frozen.intermediate_values == {1: 0.5, 2: 0.6, 3: 0.7}


def test_trial_attrs_reads_both_layouts() -> None:
    flat = {"hpo_seed": 3, "kink_hits": 5, "test_accuracy": 0.9}
    nested = {"hpo_seed": 3, RESULT_ATTR: {"kink_hits": 5, "test_accuracy": 0.9}}
    assert trial_attrs(flat) == trial_attrs(nested) == flat
    # An attribute of its own wins (the worker marks a NaN objective as diverged itself).
    assert trial_attrs({"diverged": True, RESULT_ATTR: {"diverged": False}}) == {"diverged": True}
    assert trial_attrs({RESULT_ATTR: "not a dict"}) == {}
