"""Sampler factories: the grid runs each point once across parallel workers."""

from __future__ import annotations

import contextlib

import optuna
import pytest

from hpo.config.samplers import make_sampler
from hpo.config.study import SamplerConfig


@pytest.mark.parametrize("seed", [None, 7])
def test_workers_with_their_own_seed_offsets_share_one_grid_order(seed) -> None:
    # Before: each worker shuffled the grid with its own seed, and GridSampler gives trial
    # number n the n-th point of its own order, so workers ran points twice and skipped others.
    grid = {"a": tuple(range(6)), "b": ("x", "y", "z")}
    cfg = SamplerConfig(name="grid", options={} if seed is None else {"seed": seed}, grid=grid)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="g", storage=storage)
    workers = [optuna.load_study(study_name="g", storage=storage,
                                 sampler=make_sampler(cfg, seed_offset=i)) for i in range(3)]
    seen = []
    for n in range(18):  # the workers take turns, as parallel workers interleave
        study = workers[n % 3]
        trial = study.ask()
        seen.append((trial.suggest_categorical("a", list(grid["a"])),
                     trial.suggest_categorical("b", list(grid["b"]))))
        # The grid's last tell calls study.stop(), which raises outside optimize().
        with contextlib.suppress(RuntimeError):
            study.tell(trial, 0.0)
    assert len(set(seen)) == 18  # every point exactly once


def test_other_samplers_still_take_the_offset() -> None:
    cfg = SamplerConfig(name="random", options={"seed": 3})
    draws = []
    for offset in (0, 1):
        study = optuna.create_study(sampler=make_sampler(cfg, seed_offset=offset))
        draws.append(study.ask().suggest_float("x", 0, 1))
    assert draws[0] != draws[1]


def test_an_enqueued_twin_ending_with_one_grid_point_left_does_not_crash() -> None:
    # Before: GridSampler.after_trial read the ending trial's grid_id when one point was
    # left; an enqueued trial (a paired twin) has none, so the worker died with KeyError.
    cfg = SamplerConfig(name="grid", options={}, grid={"a": (1, 2)})
    study = optuna.create_study(sampler=make_sampler(cfg))
    study.optimize(lambda t: t.suggest_categorical("a", [1, 2]), n_trials=1)
    study.enqueue_trial({"a": 1})  # the twin of the first grid point
    study.optimize(lambda t: t.suggest_categorical("a", [1, 2]), n_trials=1)
    twin = study.trials[-1]
    assert twin.state == optuna.trial.TrialState.COMPLETE and twin.params == {"a": 1}
    # The last grid point still runs and then the grid stops the study, as Optuna's does.
    study.optimize(lambda t: t.suggest_categorical("a", [1, 2]), n_trials=5)
    assert sorted(t.params["a"] for t in study.trials) == [1, 1, 2]
