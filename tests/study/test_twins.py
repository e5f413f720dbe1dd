"""Paired baselines: one default-derivative twin per tuned trial, same seed and settings,
never duplicated by parallel workers or retries, outside the search budget.

Runs against SQLite and, when HPO_TEST_POSTGRES_URL is set, PostgreSQL. Training is faked
(the fake records the specs) except in one tiny real run that checks the initial weights.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from hpo.analysis.trials import pair_trials, read_trials
from hpo.config.study import StudyConfig, load_study_config
from hpo.engine.spec import TrainSpec
from hpo.objective.train import Objective
from hpo.study.budget import BUDGET_ATTR, DUPLICATE_TWIN, FAIL_REASON_ATTR
from hpo.study.create import create_study, load_study, open_study
from hpo.study.twins import is_tuned, lineage_root, paired_seed, twin_params
from hpo.worker.loop import Worker
from hpo.worker.progress import format_status, snapshot
from tests.objective.test_train import FakeTrain

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DATA = os.environ.get("HPO_DATA_DIR")
def _cfg(tmp_path: Path, url: str, **changes: Any) -> StudyConfig:
    name = f"twins-{uuid.uuid4().hex[:10]}"
    data: dict[str, Any] = {
        "name": name,
        "n_trials": 6,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "heartbeat": {"interval": 1, "grace": 30},
        "train": {"model": "fc", "depth": 1, "width": 16, "train_subset": 500,
                  "val_size": 500, "epochs": 2, "seed": 100},
        "search_space": {
            # 0.0 is PyTorch's: those trials need no twin
            "relu_prime_zero": {"type": "categorical", "choices": [0.0, 0.5, 1.0]},
            "batch_size": {"type": "int", "low": 16, "high": 128, "log": True},
        },
        "baseline": {"mode": "paired"},
    }
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_study_config(path, storage_override=url)


def _run_workers(
    cfg: StudyConfig, url: str, n: int, fake_for=FakeTrain, pruner=None
) -> list[Any]:
    create_study(cfg, url)
    fakes = []

    def run(index: int) -> None:
        study, stored, storage = open_study(cfg.name, url, seed_offset=index)
        if pruner is not None:
            study.pruner = pruner
        fake = fake_for()
        fakes.append(fake)
        Worker(study, Objective(stored, train_fn=fake), storage=storage, poll_interval=0.05,
               max_consecutive_failures=10).run(handle_signals=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return fakes


def _split(study: optuna.Study):
    trials = study.get_trials(deepcopy=False)
    twins = [t for t in trials if t.user_attrs.get("hpo_twin_of") is not None]
    search = [t for t in trials if not t.user_attrs.get("hpo_baseline")]
    return trials, search, twins


def _check_pairs(study: optuna.Study, cfg: StudyConfig, n_trials: int) -> list[Any]:
    """Exactly n_trials search trials + one twin per tuned one, every pair found; returns
    the finished tuned trials."""
    trials, search, twins = _split(study)
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    finished_search = [t for t in search if t.state in FINISHED]
    assert len(finished_search) == n_trials
    tuned = [t for t in finished_search if t.params["relu_prime_zero"] != 0.0]
    assert tuned
    finished_twins = [t for t in twins if t.state in FINISHED]
    assert len(finished_twins) == len(tuned)
    assert len([t for t in trials if t.state in FINISHED]) == n_trials + len(tuned)
    by_key = {t.user_attrs["hpo_twin_of"]: t for t in finished_twins}
    assert len(by_key) == len(finished_twins)  # one twin per tuned trial
    for t in tuned:
        twin = by_key[t.user_attrs["hpo_twin"]]
        assert twin.params == {**t.params, "relu_prime_zero": 0.0}
        assert twin.user_attrs["hpo_seed"] == t.user_attrs["hpo_seed"]
        assert twin.user_attrs["hpo_baseline"] is True
    seeds = [t.user_attrs["hpo_seed"] for t in finished_search]
    assert len(set(seeds)) == len(seeds)  # every pair is its own replicate
    records, _ = read_trials(study, cfg)
    pairs = pair_trials(records)
    assert {(p.tuned, p.default) for p in pairs} == {
        (t.number, by_key[t.user_attrs["hpo_twin"]].number) for t in tuned
    }
    return tuned


# -- pure helpers ----------------------------------------------------------------------
def test_tuned_means_a_derivative_other_than_pytorchs() -> None:
    assert not is_tuned(TrainSpec())
    assert not is_tuned(TrainSpec(relu_prime_zero=0.0))
    assert is_tuned(TrainSpec(relu_prime_zero=0.5))
    assert not is_tuned(TrainSpec(activation="leaky_relu", negative_slope=0.2,
                                  relu_prime_zero=0.2))
    assert is_tuned(TrainSpec(activation="leaky_relu", relu_prime_zero=0.0))
    assert is_tuned(TrainSpec(activation="relu6", relu6_prime_six=1.0))


def test_seed_and_twin_params(tmp_path) -> None:
    cfg = _cfg(tmp_path, "sqlite://")
    assert paired_seed(cfg, 7, {}) == 107
    assert paired_seed(cfg, 9, {"failed_trial": 7, "retry_history": [7]}) == 107
    assert lineage_root(9, {"failed_trial": 7}) == 7
    params = {"relu_prime_zero": 0.5, "batch_size": 32}
    assert twin_params(cfg, params) == {"relu_prime_zero": 0.0, "batch_size": 32}
    leaky = _cfg(tmp_path, "sqlite://", train={"model": "fc", "activation": "leaky_relu",
                                               "negative_slope": 0.5})
    assert twin_params(leaky, params)["relu_prime_zero"] == 0.5


def test_fixed_trial_in_paired_mode_gets_its_own_seed_and_no_twin(tmp_path) -> None:
    cfg = _cfg(tmp_path, "sqlite://")
    fake = FakeTrain(accuracies=(0.5, 0.6))
    trial = optuna.trial.FixedTrial({"relu_prime_zero": 0.5, "batch_size": 32}, number=3)
    Objective(cfg, train_fn=fake)(trial)
    assert fake.specs[0].seed == 103 and trial.user_attrs["hpo_seed"] == 103
    assert "hpo_twin" not in trial.user_attrs


# -- workers ---------------------------------------------------------------------------
class PruneAtZero(optuna.pruners.BasePruner):
    """Prunes every run with ReLU'(0) = 0 at its first report (twins would be among them)."""

    def prune(self, study, trial) -> bool:
        return trial.params.get("relu_prime_zero") == 0.0


def test_twins_share_seed_and_settings_and_count_outside_the_budget(storage_url, tmp_path):
    cfg = _cfg(tmp_path, storage_url)
    (fake,) = _run_workers(cfg, storage_url, 1, lambda: FakeTrain(accuracies=(0.5, 0.6)),
                           pruner=PruneAtZero())
    study, _ = load_study(cfg.name, storage_url)
    assert len(_check_pairs(study, cfg, 6)) < 6  # the sampler drew both kinds
    assert study.user_attrs[BUDGET_ATTR] == 6
    # What the engine was asked to train: the twin's spec is the tuned one with ReLU'(0) = 0
    # (same seed, hence the same initial weights and batch order).
    specs = {(s.seed, s.relu_prime_zero): s for s in fake.specs}
    for (seed, alpha), spec in specs.items():
        if alpha != 0.0:
            assert specs[(seed, 0.0)] == spec.replace(relu_prime_zero=0.0)
    snap = snapshot(study)
    _, search, twins = _split(study)
    assert (snap.twins, snap.twins_finished) == (len(twins), len(twins))
    assert snap.budget == 6 + len(twins) == snap.finished
    assert any("twins" in line for line in format_status(snap))
    # The pruner stopped the search trials with ReLU'(0) = 0, but never a twin.
    assert all(t.state == TrialState.COMPLETE for t in twins)
    assert any(t.state == TrialState.PRUNED for t in search)


def test_parallel_workers_never_duplicate_twins(storage_url, tmp_path):
    cfg = _cfg(tmp_path, storage_url, n_trials=8)
    _run_workers(cfg, storage_url, 3, lambda: FakeTrain(accuracies=(0.5, 0.6)))
    study, _ = load_study(cfg.name, storage_url)
    _check_pairs(study, cfg, 8)
    # Re-running the study (create + a new worker) adds nothing.
    _run_workers(cfg, storage_url, 1, lambda: FakeTrain(accuracies=(0.5, 0.6)))
    again, _ = load_study(cfg.name, storage_url)
    assert len(again.get_trials()) == len(study.get_trials())


class FailFirstTuned(FakeTrain):
    """Raises once for the first tuned spec it sees (its twin is already enqueued)."""

    failed: list[int] = []

    def __call__(self, spec, **kwargs):
        if spec.relu_prime_zero not in (None, 0.0) and not FailFirstTuned.failed:
            FailFirstTuned.failed.append(spec.seed)
            raise RuntimeError("worker hiccup")
        return super().__call__(spec, **kwargs)


def test_retried_tuned_trial_reuses_its_twin_and_seed(storage_url, tmp_path):
    FailFirstTuned.failed = []
    cfg = _cfg(tmp_path, storage_url)
    _run_workers(cfg, storage_url, 1, lambda: FailFirstTuned(accuracies=(0.5, 0.6)))
    study, _ = load_study(cfg.name, storage_url)
    (failed,) = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert failed.user_attrs[FAIL_REASON_ATTR].startswith("error: RuntimeError")
    (retry,) = [t for t in study.get_trials()
                if t.system_attrs.get("failed_trial") == failed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert retry.user_attrs["hpo_seed"] == FailFirstTuned.failed[0] == 100 + failed.number
    assert retry.user_attrs["hpo_twin"] == failed.number  # the original enqueued the twin
    _check_pairs(study, cfg, 6)


def test_duplicate_twin_of_one_lineage_is_discarded(storage_url, tmp_path):
    storage_cfg = _cfg(tmp_path, storage_url)
    study = create_study(storage_cfg, storage_url)
    dists = {"x": optuna.distributions.FloatDistribution(0, 1)}
    # Trial 0, tuned, failed; trial 1 is its retry; each (as if a frozen process woke up)
    # enqueued a twin: the two twins are of one lineage, only the first may run.
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 0.5},
                                              distributions=dists))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params={"x": 0.5}, distributions=dists,
        system_attrs={"failed_trial": 0, "retry_history": [0]}))
    for number in (0, 1):
        study.enqueue_trial({"x": 0.0}, user_attrs={"hpo_baseline": True, "hpo_twin_of": number})
    study.set_user_attr(BUDGET_ATTR, 1)
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        return trial.suggest_float("x", 0, 1)

    study, _ = load_study(storage_cfg.name, storage_url)
    stats = Worker(study, objective, poll_interval=0.05).run(handle_signals=False)
    assert ran == [1, 2]  # the retry (in budget) and the first twin
    trials = study.get_trials()
    assert trials[3].state == TrialState.FAIL
    assert trials[3].user_attrs[FAIL_REASON_ATTR] == DUPLICATE_TWIN
    assert (stats.stopped_by, stats.discarded) == ("budget", 1)
    assert snapshot(study).discarded == 1


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_twin_starts_from_the_tuned_trials_initial_weights(tmp_path):
    from hpo.engine.train import train

    url = f"sqlite:///{tmp_path / 'real.db'}"
    cfg = _cfg(tmp_path, url, n_trials=1,
               train={"model": "fc", "depth": 1, "width": 8, "train_subset": 256,
                      "val_size": 256, "epochs": 1, "batch_size": 64, "seed": 100},
               search_space={"relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0}})
    start: dict[tuple[int, float], dict[str, torch.Tensor]] = {}

    def recording_train(spec, **kwargs):
        def observe(epoch, model):
            if epoch == 0:
                start[(spec.seed, spec.relu_prime_zero)] = {
                    k: v.detach().clone() for k, v in model.named_parameters()}
        return train(spec, observe_model=observe, **kwargs)

    torch.set_num_threads(1)
    create_study(cfg, url)
    study, stored = load_study(cfg.name, url)
    Worker(study, Objective(stored, train_fn=recording_train, data_dir=DATA),
           poll_interval=0.05).run(handle_signals=False)
    (tuned_key,) = [k for k in start if k[1] != 0.0]
    twin_key = (tuned_key[0], 0.0)
    assert set(start) == {tuned_key, twin_key} and tuned_key[0] == 100
    tuned, twin = start[tuned_key], start[twin_key]
    assert tuned.keys() == twin.keys()
    assert all(torch.equal(tuned[k], twin[k]) for k in tuned)
    assert len([t for t in study.get_trials() if t.state == TrialState.COMPLETE]) == 2
