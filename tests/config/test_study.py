"""Study YAML -> StudyConfig: every malformed file gives one line naming the key and value."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.config import (
    BaselineConfig,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
    load_study_config,
    make_pruner,
    make_sampler,
    parse_search_space,
)
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError, UsageError

STUDY_CONFIGS = Path(__file__).resolve().parents[2] / "study_configs"

BASE: dict[str, Any] = {
    "name": "t",
    "n_trials": 4,
    "sampler": {"name": "tpe", "seed": 0},
    "train": {"model": "fc", "dataset": "mnist", "epochs": 1, "train_subset": 500},
    "search_space": {
        "relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0},
        "precision": {"type": "categorical", "choices": ["float32", "bfloat16"]},
    },
    "baseline": {"seeds": 2},
}
DELETE = object()


def _edit(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted keys set (or deleted with DELETE)."""
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
    return d


def _write(tmp_path: Path, data: Any, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _load(tmp_path: Path, changes: dict[str, Any] | None = None, **kw: Any) -> StudyConfig:
    return load_study_config(_write(tmp_path, _edit(BASE, changes or {})), **kw)


MOBILENET = {"train.model": "mobilenet_v3_small", "train.channels": 3}

# (changes to BASE, key path the message must name, bad value it must show)
MALFORMED = [
    pytest.param({"nmae": "x"}, "nmae", "'nmae'", id="unknown-top-key"),
    pytest.param({"train.widht": 64}, "train.widht", "'widht'", id="unknown-train-key"),
    pytest.param(
        {"search_space.relu_prime_zero.lo": 0},
        "search_space.relu_prime_zero.lo",
        "'lo'",
        id="unknown-dist-key",
    ),
    pytest.param(
        {"sampler.n_startup": 3}, "sampler.n_startup", "'n_startup'", id="unknown-sampler-option"
    ),
    pytest.param(
        {"pruner": {"name": "median", "warmup": 1}},
        "pruner.warmup",
        "'warmup'",
        id="unknown-pruner-option",
    ),
    pytest.param(
        {"heartbeat": {"intervall": 5}},
        "heartbeat.intervall",
        "'intervall'",
        id="unknown-heartbeat-key",
    ),
    pytest.param({"baseline.seed": 1}, "baseline.seed", "'seed'", id="unknown-baseline-key"),
    pytest.param(
        {"train.negative_slope": float("nan"), "train.activation": "leaky_relu"},
        "train.negative_slope",
        "nan",
        id="nan-derivative",
    ),
    pytest.param(
        {"search_space.relu_prime_zero.high": float("nan")},
        "search_space.relu_prime_zero.high",
        "nan",
        id="nan-search-bound",
    ),
    pytest.param({"train.width": 0}, "train.width", "0", id="width-zero"),
    pytest.param(
        {"search_space.relu_prime_zero": {"type": "float", "low": 2.0, "high": 1.0}},
        "search_space.relu_prime_zero.low",
        "2.0",
        id="low-above-high",
    ),
    pytest.param(
        {"search_space.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
        "search_space.lr.low",
        "0.0",
        id="log-low-zero",
    ),
    pytest.param(
        {"search_space.relu_prime_zero.step": 0.3},
        "search_space.relu_prime_zero.step",
        "0.3",
        id="step-not-dividing",
    ),
    pytest.param(
        {
            "search_space.lr": {
                "type": "float",
                "low": 0.001,
                "high": 0.1,
                "log": True,
                "step": 0.001,
            }
        },
        "search_space.lr.step",
        "0.001",
        id="log-and-step",
    ),
    pytest.param(
        {"search_space.precision.choices": []},
        "search_space.precision.choices",
        "[]",
        id="empty-choices",
    ),
    pytest.param(
        {"search_space.precision.choices": ["float32"]},
        "search_space.precision.choices",
        "['float32']",
        id="one-choice",
    ),
    pytest.param(
        {"search_space.precision.choices": ["float32", "float8"]},
        "search_space.precision.choices[1]",
        "'float8'",
        id="unknown-precision",
    ),
    pytest.param(
        {"search_space.precision.choices": ["float32", "float32"]},
        "search_space.precision.choices[1]",
        "'float32'",
        id="duplicate-choice",
    ),
    pytest.param({"train.model": "resnet9"}, "train.model", "'resnet9'", id="unknown-model"),
    pytest.param({"train.dataset": "svhn2"}, "train.dataset", "'svhn2'", id="unknown-dataset"),
    pytest.param(
        {"train.activation": "gelu"}, "train.activation", "'gelu'", id="unknown-activation"
    ),
    pytest.param({"sampler": {"name": "bayes"}}, "sampler.name", "'bayes'", id="unknown-sampler"),
    pytest.param({"pruner": {"name": "patient"}}, "pruner.name", "'patient'", id="unknown-pruner"),
    pytest.param(
        {"sampler.n_startup_trials": "5"},
        "sampler.n_startup_trials",
        "'5'",
        id="sampler-option-type",
    ),
    pytest.param(
        {"pruner": {"name": "median", "n_startup_trials": -1}},
        "pruner",
        "{'n_startup_trials': -1}",
        id="pruner-option-value",
    ),
    pytest.param(
        {"search_space.dropout": {"type": "float", "low": 0.0, "high": 0.5}},
        "search_space.dropout",
        "'dropout'",
        id="not-a-train-field",
    ),
    pytest.param(
        {"search_space.seed": {"type": "int", "low": 0, "high": 3}},
        "search_space.seed",
        "'seed'",
        id="seed-searched",
    ),
    pytest.param(
        {"train.precision": "float32"},
        "search_space.precision",
        "'precision'",
        id="fixed-and-searched",
    ),
    pytest.param(
        {**MOBILENET, "search_space.width": {"type": "int", "low": 32, "high": 64}},
        "search_space.width.low",
        "32",
        id="width-not-for-mobilenet",
    ),
    pytest.param(
        {"search_space.relu6_prime_six": {"type": "float", "low": 0.0, "high": 1.0}},
        "search_space.relu6_prime_six.low",
        "0.0",
        id="relu6-prime-for-relu",
    ),
    pytest.param(
        {
            "search_space.activation": {"type": "categorical", "choices": ["relu6", "relu"]},
            "search_space.relu6_prime_six": {"type": "float", "low": 0.0, "high": 1.0},
        },
        "search_space.relu6_prime_six.low",
        "'relu'",
        id="relu6-prime-with-activation-choice",
    ),
    pytest.param(
        {"search_space.relu_prime_zero.type": "uniform"},
        "search_space.relu_prime_zero.type",
        "'uniform'",
        id="unknown-dist-type",
    ),
    pytest.param(
        {"search_space.width": {"type": "int", "low": 32.5, "high": 64}},
        "search_space.width.low",
        "32.5",
        id="int-with-float-bound",
    ),
    pytest.param(
        {"search_space.depth": {"type": "float", "low": 1.0, "high": 3.0}},
        "search_space.depth.low",
        "1.0",
        id="float-for-int-field",
    ),
    pytest.param({"n_trials": "ten"}, "n_trials", "'ten'", id="n-trials-type"),
    pytest.param({"n_trials": True}, "n_trials", "True", id="n-trials-bool"),
    pytest.param({"name": "my study"}, "name", "'my study'", id="bad-name"),
    pytest.param({"direction": "up"}, "direction", "'up'", id="bad-direction"),
    pytest.param({"metric": "test_accuracy"}, "metric", "'test_accuracy'", id="bad-metric"),
    pytest.param(
        {"heartbeat": {"interval": 10, "grace": 5}},
        "heartbeat.grace",
        "5",
        id="grace-below-interval",
    ),
    pytest.param({"timeout": -5}, "timeout", "-5", id="negative-timeout"),
    pytest.param(
        {"storage": 5}, "storage", "5", id="storage-not-a-string"
    ),
    pytest.param(
        {"baseline.params": {"width": 64}},
        "baseline.params.width",
        "'width'",
        id="baseline-param-not-searched",
    ),
    pytest.param(
        {"baseline.params": {"relu_prime_zero": 0.5}},
        "baseline.params.relu_prime_zero",
        "0.5",
        id="baseline-param-derivative",
    ),
    pytest.param(
        {
            "search_space.width": {"type": "int", "low": 32, "high": 64},
            "baseline.params": {"width": 128},
        },
        "baseline.params.width",
        "128",
        id="baseline-param-out-of-range",
    ),
    pytest.param(
        {"search_space.width": {"type": "int", "low": 100, "high": 200}},
        "baseline.params.width",
        "64",
        id="baseline-default-out-of-range",
    ),
    pytest.param(
        {"search_space.relu_prime_zero.low": 0.5},
        "search_space.relu_prime_zero",
        "0.0",
        id="baseline-derivative-out-of-range",
    ),
    pytest.param(
        {"search_space.relu_prime_zero": DELETE, "train.relu_prime_zero": 0.5},
        "train.relu_prime_zero",
        "0.5",
        id="baseline-with-fixed-derivative",
    ),
    pytest.param(
        {"baseline.seeds": [1, 1]}, "baseline.seeds", "[1, 1]", id="baseline-duplicate-seeds"
    ),
    pytest.param({"baseline.seeds": 0}, "baseline.seeds", "0", id="baseline-zero-seeds"),
    pytest.param(
        {"sampler": {"name": "grid"}},
        "search_space.relu_prime_zero",
        "[0.0, 1.0]",
        id="grid-continuous",
    ),
    pytest.param({"sampler": {"name": "cmaes"}}, "sampler.name", "'cmaes'", id="cmaes-categorical"),
    pytest.param({"train": ["fc"]}, "train", "['fc']", id="train-not-mapping"),
    pytest.param(
        {"search_space.width": [32, 64]}, "search_space.width", "[32, 64]", id="entry-not-mapping"
    ),
    pytest.param({"search_space": {}}, "search_space", "{}", id="nothing-searched"),
    # a setting the model does not read (TrainSpec refuses it; the file names where it is)
    pytest.param({"train.model": "resnet18", "train.width": 64}, "train.width", "64",
                 id="width-for-resnet18"),
    pytest.param({"train.width_mult": 0.5}, "train.width_mult", "0.5", id="width-mult-for-fc"),
    pytest.param({"train.model": "resnet18",
                  "search_space.width": {"type": "int", "low": 16, "high": 64}},
                 "search_space.width.low", "16", id="width-searched-for-resnet18"),
    pytest.param({"train.model": "resnet18",
                  "search_space.depth": {"type": "categorical", "choices": [1, 2]}},
                 "search_space.depth.choices[0]", "1", id="depth-searched-for-resnet18"),
]


@pytest.mark.parametrize(("changes", "path", "got"), MALFORMED)
def test_malformed_config_names_key_path_and_value(tmp_path, changes, path, got):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, changes)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'study.yaml'}: {path}: "), msg
    assert got in msg.partition("(got ")[2], msg
    assert "fix:" in msg, msg
    assert info.value.exit_code == 2


def test_missing_required_key(tmp_path):
    with pytest.raises(ConfigError, match=r"study.yaml: train: required key is missing"):
        _load(tmp_path, {"train": DELETE})


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"{missing}: file not found"):
        load_study_config(missing)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "name: t\ntrain:\n  model: fc\n  epochs: [1\nn_trials: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: line \d+, column \d+: invalid YAML"):
        load_study_config(path)


def test_duplicate_key_is_an_error_with_its_line(tmp_path):
    path = _write(tmp_path, "name: t\nn_trials: 2\nn_trials: 3\ntrain: {model: fc}\n")
    with pytest.raises(
        ConfigError, match=r"line 3, column 1: invalid YAML: duplicate key 'n_trials'"
    ):
        load_study_config(path)


def test_yaml_python_tags_are_refused(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_study_config(path)


def test_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 (PyYAML's default) reads 1e-3 as the string "1e-3"
    text = yaml.safe_dump(BASE).replace("epochs: 1", "epochs: 1\n  lr: 1e-3\n  weight_decay: 5E-4")
    cfg = load_study_config(_write(tmp_path, text))
    assert cfg.fixed["lr"] == 1e-3 and cfg.fixed["weight_decay"] == 5e-4


def test_valid_config_values(tmp_path):
    cfg = _load(tmp_path)
    assert cfg.name == "t" and cfg.direction == "maximize" and cfg.metric == "val_accuracy"
    assert cfg.storage is None  # no storage: in the file: the project default, resolved later
    assert cfg.sampler == SamplerConfig("tpe", {"seed": 0})
    assert cfg.pruner == PrunerConfig("median", {})
    assert cfg.baseline == BaselineConfig(seeds=(0, 1), params={})
    assert cfg.search_space["relu_prime_zero"] == FloatDistribution(0.0, 1.0)
    assert cfg.total_budget == 4 + 2 * 2  # a baseline per precision and seed


def test_storage_override_replaces_the_file_setting(tmp_path):
    cfg = _load(tmp_path, {"storage": "sqlite:///a.db"}, storage_override="sqlite:///b.db")
    assert cfg.storage == "sqlite:///b.db"


# -- search space -> distributions ---------------------------------------------------------
SPACES = [
    ({"type": "float", "low": 0.0, "high": 1.0}, FloatDistribution(0.0, 1.0)),
    ({"type": "float", "low": 0, "high": 1}, FloatDistribution(0.0, 1.0)),
    (
        {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        FloatDistribution(1e-4, 0.1, log=True),
    ),
    (
        {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25},
        FloatDistribution(0.0, 1.0, step=0.25),
    ),
    (
        {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
        FloatDistribution(0.0, 0.3, step=0.1),
    ),
    ({"type": "int", "low": 1, "high": 4}, IntDistribution(1, 4)),
    ({"type": "int", "low": 32, "high": 256, "log": True}, IntDistribution(32, 256, log=True)),
    (
        {"type": "int", "low": 1000, "high": 10000, "step": 1000},
        IntDistribution(1000, 10000, step=1000),
    ),
    (
        {"type": "categorical", "choices": ["float32", "bfloat16"]},
        CategoricalDistribution(["float32", "bfloat16"]),
    ),
    ({"type": "categorical", "choices": [True, False]}, CategoricalDistribution([True, False])),
    ({"type": "categorical", "choices": [None, 1000]}, CategoricalDistribution([None, 1000])),
]


@pytest.mark.parametrize(("entry", "expected"), SPACES)
def test_search_space_to_distribution(entry, expected):
    assert parse_search_space({"p": entry}) == {"p": expected}


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"type": "int", "low": 0, "high": 10, "log": True}, "p.low"),
        ({"type": "int", "low": 1, "high": 10, "step": 4}, "p.step"),
        ({"type": "int", "low": 1, "high": 10, "step": 0}, "p.step"),
        ({"type": "float", "low": 1.0, "high": 1.0}, "p"),
        ({"type": "float", "low": 0.0, "high": 1.0, "step": -0.5}, "p.step"),
        ({"type": "float", "low": 0.0}, "p.high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": "yes"}, "p.log"),
        ({"low": 0.0, "high": 1.0}, "p.type"),
        ({"type": "categorical", "choices": [[1], [2]]}, "p.choices[0]"),
    ],
)
def test_search_space_rejects(entry, path):
    with pytest.raises(ConfigError) as info:
        parse_search_space({"p": entry}, source="f.yaml")
    assert str(info.value).startswith(f"f.yaml: search_space.{path}: ")


# -- round trip -------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(STUDY_CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_study_configs_load_and_round_trip(path):
    cfg = load_study_config(path)
    assert cfg.name == path.stem
    assert cfg.storage is None  # every shipped study goes to the project's storage/hpo.db
    assert cfg.fixed.get("device", "cpu") == "cpu"  # the shipped defaults run on a CPU
    d = json.loads(json.dumps(cfg.to_dict()))
    assert StudyConfig.from_dict(d) == cfg
    for params, seed in cfg.baseline_trials():
        assert cfg.train_spec(params, seed).seed == seed
    make_sampler(cfg.sampler)
    make_pruner(cfg.pruner)


def test_study_configs_folder_has_the_documented_studies():
    names = {p.stem for p in STUDY_CONFIGS.glob("*.yaml")}
    assert {
        "quickstart",
        "fc_mnist_reference",
        "mobilenet_v3_mnist_relu6",
        "mobilenet_v3_mnist_default",
        "fc_fashion_mnist",
    } <= names


def test_storage_is_any_non_empty_string_checked_when_opened(tmp_path):
    # The config package knows nothing of storages: hpo.storage.rdb.make_storage checks the
    # URL, and hpo.study.create masks its password before storing the config.
    url = "postgresql+psycopg2://alice:s3cret@db:5432/hpo"
    assert _load(tmp_path, storage_override=url).to_dict()["storage"] == url
    assert _load(tmp_path, {"storage": "sqlit:///x.db"}).storage == "sqlit:///x.db"


def test_round_trip_of_grid_and_baseline_params(tmp_path):
    cfg = _load(
        tmp_path,
        {
            "sampler": {"name": "grid", "seed": 1},
            "search_space.relu_prime_zero.step": 0.5,
            "search_space.width": {"type": "int", "low": 32, "high": 96, "step": 32},
            "baseline.params": {"width": 96, "precision": "float32"},
        },
    )
    assert cfg.sampler.grid == {
        "relu_prime_zero": (0.0, 0.5, 1.0),
        "precision": ("float32", "bfloat16"),
        "width": (32, 64, 96),
    }
    assert StudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_from_dict_rejects_another_format():
    with pytest.raises(ConfigError, match="format"):
        StudyConfig.from_dict({"format": 99})


# -- train_spec and baselines -----------------------------------------------------------
def test_train_spec_merges_fixed_params_and_seed(tmp_path):
    cfg = _load(tmp_path, {"train.seed": 7})
    spec = cfg.train_spec({"relu_prime_zero": 0.25, "precision": "bfloat16"})
    assert spec == TrainSpec(
        model="fc",
        dataset="mnist",
        epochs=1,
        train_subset=500,
        seed=7,
        relu_prime_zero=0.25,
        precision="bfloat16",
    )
    assert cfg.train_spec({}, seed=3).seed == 3
    with pytest.raises(ConfigError):
        cfg.train_spec({"width": 0})
    with pytest.raises(UsageError):
        cfg.train_spec({"nonsense": 1})


def _baselines(tmp_path: Path, changes: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    return _load(tmp_path, changes).baseline_trials()


def test_baseline_one_run_per_choice_and_seed(tmp_path):
    assert _baselines(tmp_path, {}) == [
        ({"relu_prime_zero": 0.0, "precision": "float32"}, 0),
        ({"relu_prime_zero": 0.0, "precision": "float32"}, 1),
        ({"relu_prime_zero": 0.0, "precision": "bfloat16"}, 0),
        ({"relu_prime_zero": 0.0, "precision": "bfloat16"}, 1),
    ]


def test_baseline_params_pin_a_categorical_and_seeds_list(tmp_path):
    runs = _baselines(tmp_path, {"baseline": {"seeds": [3, 7], "params": {"precision": "float32"}}})
    assert runs == [({"relu_prime_zero": 0.0, "precision": "float32"}, s) for s in (3, 7)]


def test_baseline_numeric_uses_default_or_given_value(tmp_path):
    space = {
        "search_space.width": {"type": "int", "low": 32, "high": 256, "log": True},
        "baseline.seeds": 1,
    }
    assert {p["width"] for p, _ in _baselines(tmp_path, space)} == {64}  # TrainSpec default
    given = _baselines(tmp_path, {**space, "baseline.params": {"width": 200}})
    assert {p["width"] for p, _ in given} == {200}


def test_baseline_leaky_relu_uses_negative_slope(tmp_path):
    runs = _baselines(
        tmp_path,
        {
            "search_space.activation": {"type": "categorical", "choices": ["relu", "leaky_relu"]},
            "baseline": {"seeds": 1, "params": {"precision": "float32"}},
        },
    )
    assert [(p["activation"], p["relu_prime_zero"]) for p, _ in runs] == [
        ("relu", 0.0),
        ("leaky_relu", 0.01),
    ]
    fixed_slope = _baselines(
        tmp_path,
        {
            "train.activation": "leaky_relu",
            "train.negative_slope": 0.2,
            "baseline": {"seeds": 1, "params": {"precision": "float32"}},
        },
    )
    assert fixed_slope == [({"relu_prime_zero": 0.2, "precision": "float32"}, 0)]


def test_baseline_relu6_derivatives_are_zero(tmp_path):
    runs = _baselines(
        tmp_path,
        {
            "train.activation": "relu6",
            "search_space.relu6_prime_six": {"type": "float", "low": 0.0, "high": 1.0},
            "search_space.precision": DELETE,
            "baseline.seeds": 1,
        },
    )
    assert runs == [({"relu_prime_zero": 0.0, "relu6_prime_six": 0.0}, 0)]


def test_no_baseline_block_means_no_baseline_runs(tmp_path):
    cfg = _load(tmp_path, {"baseline": DELETE})
    assert cfg.baseline is None and cfg.baseline_trials() == [] and cfg.total_budget == 4


def test_baseline_only_study(tmp_path):
    cfg = _load(tmp_path, {"n_trials": 0, "search_space": {}, "baseline.seeds": 3})
    assert cfg.baseline_trials() == [({}, 0), ({}, 1), ({}, 2)]
    assert cfg.total_budget == 3


# -- samplers and pruners ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("block", "cls"),
    [
        (
            {"name": "tpe", "seed": 0, "n_startup_trials": 3, "multivariate": True},
            optuna.samplers.TPESampler,
        ),
        ("random", optuna.samplers.RandomSampler),
        ({"name": "gp", "seed": 1}, optuna.samplers.GPSampler),
        ({"name": "grid", "seed": 0}, optuna.samplers.GridSampler),
    ],
)
def test_make_sampler(tmp_path, block, cls):
    changes = {"sampler": block, "search_space.relu_prime_zero.step": 0.25}
    assert isinstance(make_sampler(_load(tmp_path, changes).sampler), cls)


def test_cmaes_needs_numeric_params_and_its_package(tmp_path):
    changes = {"sampler": {"name": "cmaes", "seed": 0}, "search_space.precision": DELETE}
    if importlib.util.find_spec("cmaes") is None:
        with pytest.raises(ConfigError, match=r"sampler.name: needs .*pip install cmaes"):
            _load(tmp_path, changes)
    else:
        assert isinstance(
            make_sampler(_load(tmp_path, changes).sampler), optuna.samplers.CmaEsSampler
        )


def test_grid_sampler_explores_the_grid(tmp_path):
    cfg = _load(
        tmp_path, {"sampler": {"name": "grid", "seed": 0}, "search_space.relu_prime_zero.step": 0.5}
    )
    study = optuna.create_study(sampler=make_sampler(cfg.sampler))
    seen = []

    def objective(t: optuna.Trial) -> float:
        seen.append(
            (
                t.suggest_float("relu_prime_zero", 0.0, 1.0, step=0.5),
                t.suggest_categorical("precision", ["float32", "bfloat16"]),
            )
        )
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid sampler stops after the 6 points
    assert sorted(seen) == sorted((r, p) for r in (0.0, 0.5, 1.0) for p in ("float32", "bfloat16"))


def test_seed_offset_gives_each_worker_its_own_draws():
    def draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
        study = optuna.create_study(sampler=sampler)
        return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)]

    cfg = SamplerConfig("random", {"seed": 5})
    assert draws(make_sampler(cfg)) == draws(optuna.samplers.RandomSampler(seed=5))
    assert draws(make_sampler(cfg, seed_offset=2)) == draws(optuna.samplers.RandomSampler(seed=7))


@pytest.mark.parametrize(
    ("block", "cls"),
    [
        ({"name": "none"}, optuna.pruners.NopPruner),
        (
            {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
            optuna.pruners.MedianPruner,
        ),
        (
            {"name": "hyperband", "min_resource": 1, "max_resource": 3},
            optuna.pruners.HyperbandPruner,
        ),
        (
            {"name": "successive_halving", "reduction_factor": 2},
            optuna.pruners.SuccessiveHalvingPruner,
        ),
    ],
)
def test_make_pruner(tmp_path, block, cls):
    assert isinstance(make_pruner(_load(tmp_path, {"pruner": block}).pruner), cls)


def test_make_sampler_and_pruner_reject_unknown_names():
    with pytest.raises(ConfigError, match="sampler.name"):
        make_sampler(SamplerConfig("nope", {}))
    with pytest.raises(ConfigError, match="pruner.name"):
        make_pruner(PrunerConfig("nope", {}))


def test_float16_on_cpu_warns(tmp_path, caplog):
    _load(tmp_path, {"search_space.precision.choices": ["float32", "float16"]})
    assert any("float16" in r.getMessage() for r in caplog.records)


def test_float_grid_values_are_clean(tmp_path):
    cfg = _load(
        tmp_path,
        {
            "sampler": {"name": "grid"},
            "search_space.relu_prime_zero": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
        },
    )
    assert cfg.sampler.grid["relu_prime_zero"] == (0.0, 0.1, 0.2, 0.3)
    assert all(math.isfinite(v) for v in cfg.sampler.grid["relu_prime_zero"])


def test_the_package_exports_its_public_names():
    import hpo.config

    for name in hpo.config.__all__:
        value = getattr(hpo.config, name)
        home = getattr(value, "__module__", None)
        assert home is None or home.startswith("hpo.config."), (name, home)
    assert "StudyConfig" in dir(hpo.config)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hpo.config.nope  # noqa: B018


CLOSE_MATCHES = [
    pytest.param({"smapler": "tpe"}, "smapler", "did you mean 'sampler'?", id="top-key"),
    pytest.param({"train.lrr": 0.1}, "train.lrr", "did you mean 'lr'?", id="train-key"),
    pytest.param({"heartbeat": {"intervall": 5}}, "heartbeat.intervall",
                 "did you mean 'interval'?", id="heartbeat-key"),
    pytest.param({"direction": "maximise"}, "direction", "did you mean 'maximize'?",
                 id="direction-choice"),
    pytest.param({"sampler": {"name": "TPE"}}, "sampler.name", "did you mean 'tpe'?",
                 id="sampler-choice"),
    pytest.param({"sampler": {"name": "tpe", "n_startup_trial": 3}},
                 "sampler.n_startup_trial", "did you mean 'n_startup_trials'?",
                 id="sampler-option"),
    pytest.param({"search_space.relu_prime_zer": {"type": "float", "low": 0.0, "high": 1.0}},
                 "search_space.relu_prime_zer", "did you mean 'relu_prime_zero'?",
                 id="searched-name"),
    pytest.param({"search_space.precision.choices": ["float32", "fp16"]},
                 "search_space.precision.choices[1]", "Did you mean 'float16'?",
                 id="precision-choice"),
    pytest.param({"train.activation": "relu_6"}, "train.activation", "Did you mean 'relu6'?",
                 id="activation-choice"),
    pytest.param({"search_space.lr": {"type": "floatt", "low": 0.01, "high": 0.1}},
                 "search_space.lr.type", "did you mean 'float'?", id="distribution-type"),
]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"train.model": "resnet18", "train.width": 64}, "train.width"),
        ({"train.model": "resnet18",
          "search_space.width": {"type": "int", "low": 16, "high": 64}}, "search_space.width"),
    ],
)
def test_a_setting_the_model_does_not_read_names_it_the_model_and_what_it_reads(
    tmp_path, changes, path
):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, changes)
    msg = str(info.value)
    assert f": {path}" in msg and "\n" not in msg
    assert "is not read by model 'resnet18'" in msg and "reads none of depth, width" in msg


@pytest.mark.parametrize(("changes", "path", "hint"), CLOSE_MATCHES)
def test_a_misspelling_gets_its_close_match_once(tmp_path, changes, path, hint):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, changes)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'study.yaml'}: {path}: "), msg
    assert msg.count(hint) == 1 and msg.lower().count("did you mean") == 1, msg


def test_make_sampler_suggests_the_close_name():
    with pytest.raises(ConfigError, match=r"got 'rnadom'; did you mean 'random'\?"):
        make_sampler(SamplerConfig("rnadom", {}))
    with pytest.raises(ConfigError, match=r"got 'hyperbnad'; did you mean 'hyperband'\?"):
        make_pruner(PrunerConfig("hyperbnad", {}))
