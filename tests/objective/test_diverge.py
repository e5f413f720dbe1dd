"""``objective: diverge``: a trial's ReLU'(0) beside a ReLU'(0) = 0 reference, per epoch."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path

import optuna
import pytest
import torch

from hpo.config.study import load_study_config
from hpo.engine.spec import TrainSpec
from hpo.engine.train import train
from hpo.errors import ConfigError
from hpo.objective import make_objective
from hpo.objective.diverge import (
    DivergeObjective,
    l1_distance,
    trace_run,
    weight_sum,
)

DATA = os.environ.get("HPO_DATA_DIR")
needs_mnist = pytest.mark.skipif(not DATA or not (Path(DATA) / "MNIST").exists(),
                                 reason="needs the MNIST files (HPO_DATA_DIR)")

STUDY = """\
name: diverge-test
objective: diverge
metric: {metric}
n_trials: 3
sampler: {{name: grid, seed: 0}}
pruner: {{name: none}}
train:
  model: fc
  depth: 1
  width: 16
  batch_norm: true
  train_subset: 512
  val_size: 1
  batch_size: 64
  epochs: 2
  shuffle: false
  kink_grad: set
  precision: bfloat16
  seed: 3
search_space:
  relu_prime_zero: {{type: categorical, choices: [0.0, 1.0]}}
"""


def _cfg(tmp_path: Path, metric: str = "l1_distance"):
    path = tmp_path / "diverge.yaml"
    path.write_text(textwrap.dedent(STUDY.format(metric=metric)))
    return load_study_config(path)


def test_their_weight_sum_difference_is_not_a_distance() -> None:
    names = ["0.weight", "0.bias"]
    a = [torch.tensor([1.0, -1.0]), torch.tensor([5.0])]
    b = [torch.tensor([-1.0, 1.0]), torch.tensor([0.0])]
    # Opposite changes cancel in the sum, and biases are left out: 0 where L1 is 9.
    assert weight_sum(a, names) == weight_sum(b, names) == 0.0
    assert l1_distance(a, b) == 9.0


def test_the_native_weight_sum_is_rounded_in_the_runs_dtype() -> None:
    w = [torch.full((1000,), 1.001, dtype=torch.bfloat16)]
    exact = weight_sum(w, ["w.weight"])
    native = weight_sum(w, ["w.weight"], native=True)
    assert exact == pytest.approx(1000.0)  # bfloat16(1.001) is 1.0
    assert native == 1000.0 and float(torch.tensor(native, dtype=torch.bfloat16)) == native
    coarse = [torch.tensor([1024.0, 5.0], dtype=torch.bfloat16)]
    assert weight_sum(coarse, ["weight"]) == 1029.0
    assert weight_sum(coarse, ["weight"], native=True) == 1032.0  # bfloat16 steps of 8 there


def test_a_study_of_another_objective_is_refused(tmp_path) -> None:
    cfg = dataclasses.replace(_cfg(tmp_path), objective="train", metric="val_accuracy")
    with pytest.raises(ConfigError, match="not a diverge study"):
        DivergeObjective(cfg)


def test_the_metric_must_be_one_of_the_objective(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(STUDY.format(metric="val_accuracy"))
    with pytest.raises(ConfigError, match="metric"):
        load_study_config(path)


@needs_mnist
def test_the_test_accuracy_per_epoch_is_the_engines_at_the_end() -> None:
    spec = TrainSpec(model="fc", depth=1, width=16, train_subset=256, val_size=1, epochs=2,
                     shuffle=False, seed=1)
    trace = trace_run(spec, data_dir=DATA)
    assert len(trace.params) == len(trace.test_accuracy) == 3
    assert trace.test_accuracy[-1] == trace.result.test_accuracy
    assert trace.names == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert not torch.equal(trace.params[0][0], trace.params[2][0])  # it trained
    # observing (copies, test evaluations) leaves the run bitwise as the engine alone trains it
    assert trace.result.params_sha256 == train(spec, data_dir=DATA).params_sha256


@needs_mnist
def test_no_shuffle_trains_the_split_in_one_fixed_order() -> None:
    base = dict(model="fc", depth=1, width=8, train_subset=256, val_size=1, epochs=1)
    assert TrainSpec().shuffle is True
    fixed = [train(TrainSpec(**base, shuffle=False, seed=s), data_dir=DATA) for s in (1, 2)]
    shuffled = [train(TrainSpec(**base, seed=s), data_dir=DATA) for s in (1, 1)]
    assert shuffled[0].params_sha256 == shuffled[1].params_sha256
    assert fixed[0].params_sha256 != shuffled[0].params_sha256  # another batch order
    assert fixed[0].params_sha256 != fixed[1].params_sha256  # other initial weights


@needs_mnist
def test_control_is_exactly_zero_and_the_reference_is_trained_once(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    objective = make_objective(cfg, data_dir=DATA)
    assert isinstance(objective, DivergeObjective)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(
        {"relu_prime_zero": [0.0, 1.0]}, seed=0), direction="maximize")
    study.optimize(objective, n_trials=2)
    assert objective.references.trained == 1  # both trials share one bfloat16 reference
    by_alpha = {t.params["relu_prime_zero"]: t for t in study.trials}
    control, moved = by_alpha[0.0], by_alpha[1.0]
    for key in ("l1", "weight_sum_difference", "weight_sum_difference_native"):
        assert control.user_attrs[key] == [0.0, 0.0], key  # epochs 1 and 2
        assert control.user_attrs[f"{key}_initial"] == 0.0
        assert moved.user_attrs[f"{key}_initial"] == 0.0  # the same initial weights
    assert control.user_attrs["params_sha256"] == control.user_attrs["reference_params_sha256"]
    a = moved.user_attrs
    # batch norm in bfloat16 puts pre-activations exactly on 0: alpha = 1 moves the weights
    assert sum(a["reference_kink_hits"]) > 0 and a["l1"][-1] > 0
    assert moved.value == a["l1"][-1] and control.value == 0.0
    assert a["reference_test_accuracy"] == control.user_attrs["test_accuracy_per_epoch"]
    assert len(a["test_accuracy_per_epoch"]) == 2 and a["train_samples"] == 512
    assert a["test_accuracy_per_epoch_initial"] == a["reference_test_accuracy_initial"]
    assert a["n_params"] == 784 * 16 + 16 + 16 * 10 + 10 + 2 * 16  # with batch norm
