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
