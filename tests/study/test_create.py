"""Create once, load anywhere: stored config, baselines enqueued exactly once."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from hpo.config.study import StudyConfig, load_study_config
from hpo.errors import ConfigError, StudyNotFoundError
from hpo.storage.rdb import make_storage
from hpo.study.create import (
    ATTR_BASELINES_ENQUEUED,
    ATTR_BUDGET,
    ATTR_CONFIG,
    baseline_key,
    create_study,
    load_study,
    open_study,
)

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, name: str | None = None, **changes: Any) -> StudyConfig:
    data: dict[str, Any] = {
        "name": name or f"s1-test-{uuid.uuid4().hex[:12]}",
        "n_trials": 3,
        "sampler": {"name": "random", "seed": 0},
        "train": {"model": "fc", "dataset": "mnist", "epochs": 1, "train_subset": 500},
        "search_space": {
            "relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0},
            "precision": {"type": "categorical", "choices": ["float32", "bfloat16"]},
            "width": {"type": "int", "low": 32, "high": 128},
        },
        "baseline": {"seeds": 2},
    }
    data.update(changes)
    path = tmp_path / f"{data['name']}-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_study_config(path)


def _baselines(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("hpo_baseline")]


def _keys(study: optuna.Study) -> list[str]:
    return sorted(
        baseline_key(t.system_attrs.get("fixed_params") or t.params, t.user_attrs["hpo_seed"])
        for t in _baselines(study)
    )


def _expected_keys(cfg: StudyConfig) -> list[str]:
    return sorted(baseline_key(p, s) for p, s in cfg.baseline_trials())


def test_create_study_stores_config_budget_and_baselines(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    study = create_study(cfg, storage_url)
    attrs = study.user_attrs
    assert StudyConfig.from_dict(attrs[ATTR_CONFIG]) == dataclasses.replace(cfg)
    assert attrs[ATTR_BUDGET] == cfg.total_budget == 3 + 4
    assert attrs[ATTR_BASELINES_ENQUEUED] == 4
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    baselines = _baselines(study)
    assert all(t.state == optuna.trial.TrialState.WAITING for t in baselines)
    assert {t.user_attrs["hpo_seed"] for t in baselines} == {0, 1}
    assert _keys(study) == _expected_keys(cfg)
    assert all(t.system_attrs["fixed_params"]["relu_prime_zero"] == 0.0 for t in baselines)


def test_create_study_again_never_duplicates_baselines(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    for _ in range(3):
        study = create_study(cfg, storage_url)
    assert len(study.trials) == 4
    assert _keys(study) == _expected_keys(cfg)


def test_concurrent_creators_enqueue_baselines_once(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            create_study(cfg, storage_url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    study = optuna.load_study(study_name=cfg.name, storage=storage_url)
    assert _keys(study) == _expected_keys(cfg)


def test_changed_search_is_refused_and_nothing_written(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    study = create_study(cfg, storage_url)
    before = (study.user_attrs, len(study.trials))
    changed = _cfg(tmp_path, cfg.name, search_space={
        "relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0},
        "precision": {"type": "categorical", "choices": ["float32", "bfloat16"]},
        "width": {"type": "int", "low": 32, "high": 256},
    }, train={"model": "fc", "dataset": "mnist", "epochs": 2, "train_subset": 500})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        create_study(changed, storage_url)
    msg = str(info.value)
    assert "search_space.width" in msg and "train.epochs" in msg and "new name" in msg
    assert "\n" not in msg
    again = optuna.load_study(study_name=cfg.name, storage=storage_url)
    assert (again.user_attrs, len(again.trials)) == before


def test_changed_baseline_or_direction_is_refused(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    create_study(cfg, storage_url)
    with pytest.raises(ConfigError, match="baseline"):
        create_study(_cfg(tmp_path, cfg.name, baseline={"seeds": 3}), storage_url)
    with pytest.raises(ConfigError, match="direction"):
        create_study(_cfg(tmp_path, cfg.name, direction="minimize"), storage_url)


def test_changed_run_settings_update_the_budget(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    create_study(cfg, storage_url)
    more = _cfg(tmp_path, cfg.name, n_trials=10, pruner={"name": "none"})
    study = create_study(more, storage_url)
    assert study.user_attrs[ATTR_BUDGET] == 10 + 4
    assert StudyConfig.from_dict(study.user_attrs[ATTR_CONFIG]).n_trials == 10
    assert len(study.trials) == 4


def test_interrupted_creation_is_completed_without_duplicates(tmp_path, storage_url):
    """The creator crashed after enqueueing one baseline: the next run adds the rest."""
    cfg = _cfg(tmp_path)
    storage = make_storage(storage_url)
    study = optuna.create_study(study_name=cfg.name, storage=storage, direction="maximize")
    study.set_user_attr(ATTR_CONFIG, cfg.to_dict())
    params, seed = cfg.baseline_trials()[0]
    study.enqueue_trial(params, user_attrs={"hpo_baseline": True, "hpo_seed": seed})
    study = create_study(cfg, storage_url, wait_s=0)
    assert _keys(study) == _expected_keys(cfg)
    assert study.user_attrs[ATTR_BUDGET] == cfg.total_budget


def test_foreign_study_with_trials_is_refused(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    foreign = optuna.create_study(study_name=cfg.name, storage=make_storage(storage_url))
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(ConfigError, match="not created by reluprime-hpo"):
        create_study(cfg, storage_url, wait_s=0)


def test_load_study_rebuilds_the_stored_config(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    create_study(cfg, storage_url)
    study, loaded, storage = open_study(cfg.name, storage_url, seed_offset=1)
    assert loaded == dataclasses.replace(cfg, storage=storage_url)
    assert study.study_name == cfg.name and len(study.trials) == 4
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)
    assert storage.get_heartbeat_interval() == cfg.heartbeat.interval  # worker-ready
    assert load_study(cfg.name, storage_url)[1] == loaded


def test_load_unknown_study_lists_existing_ones(tmp_path, storage_url):
    cfg = _cfg(tmp_path)
    create_study(cfg, storage_url)
    with pytest.raises(StudyNotFoundError) as info:
        load_study("s1-test-no-such-study", storage_url)
    assert cfg.name in str(info.value) and "'s1-test-no-such-study'" in str(info.value)
    assert info.value.exit_code == 1


def test_load_study_not_created_by_hpo(tmp_path, storage_url):
    name = f"s1-test-{uuid.uuid4().hex[:12]}"
    optuna.create_study(study_name=name, storage=make_storage(storage_url))
    with pytest.raises(StudyNotFoundError, match="no stored hpo_config"):
        load_study(name, storage_url)


def test_baseline_only_study(tmp_path, storage_url):
    cfg = _cfg(tmp_path, n_trials=0, search_space={}, baseline={"seeds": 3})
    study = create_study(cfg, storage_url)
    assert study.user_attrs[ATTR_BUDGET] == 3
    assert sorted(t.user_attrs["hpo_seed"] for t in _baselines(study)) == [0, 1, 2]


def test_the_stored_config_never_holds_the_storage_password(tmp_path, storage_url):
    cfg = dataclasses.replace(_cfg(tmp_path), storage="postgresql+psycopg2://alice:s3cret@db/h")
    study = create_study(cfg, storage_url)
    stored = study.user_attrs[ATTR_CONFIG]
    assert stored["storage"] == "postgresql+psycopg2://alice:***@db/h"
    create_study(cfg, storage_url)  # the same config again: adopted, nothing differs


def _metric_names(study: optuna.Study) -> list[str] | None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return study.metric_names


def test_the_objective_is_named_after_the_metric_for_both_objectives(tmp_path, storage_url):
    study = create_study(_cfg(tmp_path), storage_url)
    assert _metric_names(study) == ["val_accuracy"]
    probe = load_study_config(ROOT / "study_configs" / "probe_fc_mnist.yaml")
    probe = dataclasses.replace(probe, name=f"s1-probe-{uuid.uuid4().hex[:12]}")
    assert probe.metric != "val_accuracy"
    assert _metric_names(create_study(probe, storage_url)) == [probe.metric]


def test_an_older_study_gets_its_metric_name_and_a_users_name_is_kept(tmp_path, storage_url):
    import warnings

    cfg = _cfg(tmp_path)
    study = create_study(cfg, storage_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # An older study: created before the name was set (Optuna keeps the names in a
        # study system attr; an empty one reads as "no names").
        old = optuna.create_study(study_name=cfg.name + "-old", storage=storage_url,
                                  direction="maximize")
        assert old.metric_names is None
    old_cfg = dataclasses.replace(cfg, name=cfg.name + "-old")
    old.set_user_attr(ATTR_CONFIG, old_cfg.to_dict())
    assert _metric_names(create_study(old_cfg, storage_url, wait_s=0)) == ["val_accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["my accuracy"])
    assert _metric_names(create_study(cfg, storage_url)) == ["my accuracy"]
