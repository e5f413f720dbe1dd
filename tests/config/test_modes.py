"""Objective (train/probe), metric and baseline mode (fixed/paired) of a study file."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.config.study import BaselineConfig, ProbeConfig, StudyConfig, load_study_config
from hpo.errors import ConfigError

PAIRED: dict[str, Any] = {
    "name": "paired",
    "n_trials": 4,
    "train": {"model": "fc", "dataset": "mnist", "epochs": 1, "train_subset": 500},
    "search_space": {
        "relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0},
        "width": {"type": "int", "low": 16, "high": 64},
    },
    "baseline": {"mode": "paired"},
}
PROBE: dict[str, Any] = {
    "name": "probe",
    "objective": "probe",
    "n_trials": 2,
    "train": {"model": "fc", "dataset": "mnist", "train_subset": 500, "val_size": 500},
    "search_space": {"width": {"type": "int", "low": 16, "high": 64}},
}
DELETE = object()


def _load(tmp_path: Path, base: dict[str, Any], changes: dict[str, Any]) -> StudyConfig:
    d = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return load_study_config(path)


def test_paired_mode_has_no_fixed_runs_and_twins_outside_the_budget(tmp_path):
    cfg = _load(tmp_path, PAIRED, {})
    assert cfg.baseline == BaselineConfig(seeds=(), params={}, mode="paired")
    assert cfg.baseline.paired
    assert cfg.baseline_trials() == []
    assert cfg.total_budget == 4
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["baseline"] == {"mode": "paired"}
    assert StudyConfig.from_dict(d) == cfg


def test_fixed_mode_is_the_default_and_stores_as_before(tmp_path):
    cfg = _load(tmp_path, PAIRED, {"baseline": {"seeds": 2}})
    assert cfg.baseline.mode == "fixed" and not cfg.baseline.paired
    assert cfg.baseline == _load(tmp_path, PAIRED, {"baseline": {"mode": "fixed", "seeds": 2}}
                                 ).baseline
    d = cfg.to_dict()
    # Configs stored by earlier versions must keep comparing equal: no new keys for them.
    assert d["baseline"] == {"seeds": [0, 1], "params": {}}
    assert "objective" not in d and "probe" not in d
    old = {**d, "baseline": {"seeds": [0, 1], "params": {}}}
    assert StudyConfig.from_dict(json.loads(json.dumps(old))) == cfg


def test_probe_study_defaults_and_round_trip(tmp_path):
    cfg = _load(tmp_path, PROBE, {})
    assert (cfg.objective, cfg.metric, cfg.direction) == ("probe", "bifurcated_fraction",
                                                          "maximize")
    assert cfg.probe == ProbeConfig(inits=4, alphas=(0.0, 1.0), compare="first")
    assert cfg.baseline is None
    cfg = _load(tmp_path, PROBE, {"metric": "hazard_per_batch", "direction": "minimize",
                                  "probe": {"inits": 8, "alphas": [0, 0.5], "compare": "all"}})
    assert cfg.probe == ProbeConfig(inits=8, alphas=(0.0, 0.5), compare="all")
    assert (cfg.metric, cfg.direction) == ("hazard_per_batch", "minimize")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["objective"] == "probe" and d["probe"]["alphas"] == [0.0, 0.5]
    assert StudyConfig.from_dict(d) == cfg


def test_probe_study_may_search_precision_with_float16_without_warning(tmp_path, caplog):
    _load(tmp_path, PROBE, {"search_space.precision": {
        "type": "categorical", "choices": ["float32", "float16"]}})
    assert "float16" not in caplog.text


def test_paired_leaky_relu_twin_value_is_the_slope(tmp_path):
    cfg = _load(tmp_path, PAIRED, {"train.activation": "leaky_relu",
                                   "train.negative_slope": 0.1})
    assert cfg.baseline.paired  # 0.1 lies in [0, 1]


# (base, changes, key path the message must name, bad value it must show)
MALFORMED = [
    pytest.param(PAIRED, {"baseline.mode": "twin"}, "baseline.mode", "'twin'",
                 id="unknown-mode"),
    pytest.param(PAIRED, {"baseline.seeds": 2}, "baseline.seeds", "2", id="paired-seeds"),
    pytest.param(PAIRED, {"baseline.params": {"width": 32}}, "baseline.params", "{'width': 32}",
                 id="paired-params"),
    pytest.param(PAIRED, {"search_space.relu_prime_zero": DELETE}, "baseline.mode", "'paired'",
                 id="paired-nothing-tuned"),
    pytest.param(PAIRED, {"search_space.relu_prime_zero.low": 0.5},
                 "search_space.relu_prime_zero", "0.0", id="paired-default-outside"),
    pytest.param(PAIRED, {"train.activation": "leaky_relu", "train.negative_slope": 0.1,
                          "search_space.relu_prime_zero": {"type": "float", "low": 0.5,
                                                           "high": 1.0}},
                 "search_space.relu_prime_zero", "0.1", id="paired-leaky-slope-outside"),
    pytest.param(PAIRED, {"n_trials": 0}, "n_trials", "0", id="paired-nothing-to-run"),
    pytest.param(PAIRED, {"train.activation": "relu6", "train.relu6_prime_six": 1.0},
                 "train.relu6_prime_six", "1.0", id="paired-fixed-derivative"),
    pytest.param(PAIRED, {"objective": "probes"}, "objective", "'probes'",
                 id="unknown-objective"),
    pytest.param(PAIRED, {"metric": "bifurcated_fraction"}, "metric", "'bifurcated_fraction'",
                 id="probe-metric-for-train"),
    pytest.param(PAIRED, {"probe": {"inits": 2}}, "probe", "{'inits': 2}",
                 id="probe-block-for-train"),
    pytest.param(PROBE, {"metric": "val_accuracy"}, "metric", "'val_accuracy'",
                 id="train-metric-for-probe"),
    pytest.param(PROBE, {"baseline": {"seeds": 2}}, "baseline", "{'seeds': 2}",
                 id="probe-baseline"),
    pytest.param(PROBE, {"search_space.relu_prime_zero": {"type": "float", "low": 0.0,
                                                          "high": 1.0}},
                 "search_space.relu_prime_zero", "'relu_prime_zero'", id="probe-searched-alpha"),
    pytest.param(PROBE, {"train.relu_prime_zero": 0.5}, "train.relu_prime_zero", "0.5",
                 id="probe-fixed-alpha"),
    pytest.param(PROBE, {"probe.inits": 0}, "probe.inits", "0", id="probe-zero-inits"),
    pytest.param(PROBE, {"probe.alphas": [1.0, 1.0]}, "probe.alphas", "[1.0, 1.0]",
                 id="probe-equal-alphas"),
    pytest.param(PROBE, {"probe.alphas": [0.0]}, "probe.alphas", "[0.0]", id="probe-one-alpha"),
    pytest.param(PROBE, {"probe.alphas": [0.0, "one"]}, "probe.alphas[1]", "'one'",
                 id="probe-alpha-not-number"),
    pytest.param(PROBE, {"probe.compare": "last"}, "probe.compare", "'last'",
                 id="probe-compare"),
    pytest.param(PROBE, {"probe.method": "batched"}, "probe.method", "'method'",
                 id="probe-unknown-key"),
]


@pytest.mark.parametrize(("base", "changes", "path", "got"), MALFORMED)
def test_malformed_mode_names_key_path_value_and_fix(tmp_path, base, changes, path, got):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, base, changes)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'study.yaml'}: {path}: "), msg
    assert got in msg.partition("(got ")[2], msg
    assert "fix:" in msg, msg
    assert info.value.exit_code == 2
