"""``objective: probe``: a trial's parameters -> run_probe -> user attributes and value."""

from __future__ import annotations

import json
import os
import textwrap
import uuid

import optuna
import pandas as pd
import pytest
import torch

from hpo.analysis.export import export_study
from hpo.config.study import load_study_config
from hpo.engine.numerics.platform import platform_record
from hpo.engine.probe.bifurcation import ProbeResult
from hpo.errors import ConfigError
from hpo.objective import Objective, make_objective
from hpo.objective.probe import ProbeObjective
from hpo.study.create import create_study, load_study
from hpo.worker.loop import Worker

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

DATA = os.environ.get("HPO_DATA_DIR")
STUDY = """\
name: {name}
objective: probe
metric: {metric}
n_trials: 3
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
probe: {{inits: 3, alphas: [0.0, 0.5], compare: all}}
train:
  model: fc
  depth: 1
  train_subset: 256
  val_size: 256
  seed: 5
search_space:
  width: {{type: int, low: 8, high: 32}}
  batch_size: {{type: categorical, choices: [32, 64]}}
  precision: {{type: categorical, choices: [float32, float16]}}
"""


def _cfg(tmp_path, metric: str = "bifurcated_fraction", storage: str | None = None):
    path = tmp_path / "probe.yaml"
    path.write_text(textwrap.dedent(STUDY.format(name=f"probe-{uuid.uuid4().hex[:8]}",
                                                 metric=metric)))
    return load_study_config(path, storage_override=storage)


class FakeProbe:
    """Stands in for run_probe: records its calls, returns a fixed outcome."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.train_sets: list[str] = []

    def __call__(self, spec, *, inits, alphas, compare, data_dir=None,
                 train_set="split") -> ProbeResult:
        self.calls.append((spec, inits, alphas, compare))
        self.train_sets.append(train_set)
        return ProbeResult(
            spec=spec.to_dict(), inits=inits, alphas=alphas, compare=compare,
            method="batched", train_samples=256, batches_per_epoch=4, bifurcated=2,
            bifurcated_fraction=2 / 3, batches_examined=9, hazard_per_batch=2 / 9,
            median_samples_to_bifurcation=96.0, samples_to_bifurcation=[64, None, 128],
            kinked_batches=3, device="cpu", torch_version="fake", wall_time_s=0.5,
            platform=platform_record("cpu"),
        )


PARAMS = {"width": 16, "batch_size": 64, "precision": "float16"}


def test_params_become_the_probed_spec_and_the_result_becomes_attrs(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    fake = FakeProbe()
    trial = optuna.trial.FixedTrial(PARAMS)
    value = ProbeObjective(cfg, probe_fn=fake)(trial)
    assert value == pytest.approx(2 / 3)
    ((spec, inits, alphas, compare),) = fake.calls
    assert (spec.width, spec.batch_size, spec.precision) == (16, 64, "float16")
    assert (spec.depth, spec.train_subset, spec.seed, spec.relu_prime_zero) == (1, 256, 5, None)
    assert (inits, alphas, compare) == (3, (0.0, 0.5), "all")
    attrs = trial.user_attrs
    assert attrs["bifurcated_fraction"] == pytest.approx(2 / 3)
    assert attrs["hazard_per_batch"] == pytest.approx(2 / 9)
    assert attrs["median_samples_to_bifurcation"] == 96.0
    assert (attrs["batches_examined"], attrs["inits"], attrs["bifurcated"]) == (9, 3, 2)
    assert json.loads(attrs["samples_to_bifurcation"]) == [64, None, 128]
    assert (attrs["hpo_seed"], attrs["precision"], attrs["probe_method"]) == (5, "float16",
                                                                               "batched")


def test_metric_hazard_per_batch(tmp_path) -> None:
    cfg = _cfg(tmp_path, metric="hazard_per_batch")
    value = ProbeObjective(cfg, probe_fn=FakeProbe())(optuna.trial.FixedTrial(PARAMS))
    assert value == pytest.approx(2 / 9)


def test_make_objective_picks_the_probe_and_the_train_objective_refuses_it(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    assert isinstance(make_objective(cfg), ProbeObjective)
    with pytest.raises(ConfigError, match="metric"):
        Objective(cfg)


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_tiny_real_probe(tmp_path) -> None:
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path)
    trial = optuna.trial.FixedTrial(PARAMS)
    value = make_objective(cfg, data_dir=DATA)(trial)
    attrs = trial.user_attrs
    assert 0.0 <= value <= 1.0 and value == attrs["bifurcated_fraction"]
    per_init = json.loads(attrs["samples_to_bifurcation"])
    assert len(per_init) == attrs["inits"] == 3
    assert attrs["bifurcated"] == sum(s is not None for s in per_init)
    assert attrs["train_samples"] == 256 and attrs["batches_per_epoch"] == 4
    platform = attrs["platform"]  # one attribute, a dict read inside the probe's flags
    assert platform["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert platform["flags"]["deterministic_algorithms"] is True
    assert platform["flags"]["cuda_matmul_allow_tf32"] is False


def test_probe_study_runs_on_workers_and_exports_its_columns(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'probe.db'}"
    cfg = _cfg(tmp_path, storage=url)
    create_study(cfg, url)
    study, stored = load_study(cfg.name, url)
    assert stored.objective == "probe" and stored.probe == cfg.probe
    stats = Worker(study, ProbeObjective(stored, probe_fn=FakeProbe()),
                   poll_interval=0.05).run(handle_signals=False)
    assert stats.completed == 3
    out = tmp_path / "probe.csv"
    assert export_study(study, out) == 3
    df = pd.read_csv(out)
    for column in ("value", "params_width", "params_batch_size", "params_precision",
                   "user_attrs_bifurcated_fraction", "user_attrs_hazard_per_batch",
                   "user_attrs_median_samples_to_bifurcation", "user_attrs_batches_examined",
                   "user_attrs_inits", "user_attrs_samples_to_bifurcation"):
        assert column in df.columns, column
    assert json.loads(df["user_attrs_samples_to_bifurcation"][0]) == [64, None, 128]
    record = platform_record("cpu")
    # One machine: the platform columns are constant, kept in the side file...
    side = json.loads((tmp_path / "probe.platform.json").read_text())["columns"]
    assert side["platform_cpu_model"] == record["cpu_model"]
    assert "platform_cpu_model" not in df.columns
    # ... or inline on request.
    export_study(study, out, inline_platform=True)
    df = pd.read_csv(out)
    assert df["platform_cpu_model"].tolist() == [record["cpu_model"]] * 3
    tf32 = record["flags"]["cudnn_allow_tf32"]
    assert df["platform_flags_cudnn_allow_tf32"].tolist() == [tf32] * 3
    assert set(df["study"]) == {cfg.name} and set(df["model"]) == {"fc"}
    assert df["value"].tolist() == pytest.approx([2 / 3] * 3)
    # The same study name with the train objective is another search: refused.
    train_cfg = load_study_config(_train_version(tmp_path, cfg.name), storage_override=url)
    with pytest.raises(ConfigError, match="objective"):
        create_study(train_cfg, url, wait_s=0)


def _train_version(tmp_path, name: str):
    path = tmp_path / "train.yaml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, metric="val_accuracy"))
                    .replace("objective: probe\n", "")
                    .replace("probe: {inits: 3, alphas: [0.0, 0.5], compare: all}\n", ""))
    return path
