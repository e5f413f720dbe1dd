"""Create a study once, load it in many workers.

The study keeps its own config (study user attr ``hpo_config``, storage password masked)
so that workers, the dashboard and the export need only the study name and the storage.
``hpo create`` also runs the re-queue reconciler (:func:`hpo.study.requeue.reconcile`), so a
FAIL trial whose copy a crash lost is repaired before any worker starts. Baseline trials are
enqueued by the one process that creates the study (``enqueue_trial(skip_if_exists=True)``
races when several workers start at once), and a completion marker lets a later run repair
an enqueue that a crash interrupted, without ever duplicating a baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from hpo.config.study import StudyConfig, make_pruner, make_sampler
from hpo.errors import ConfigError, StorageError, StudyNotFoundError, one_line
from hpo.storage.rdb import make_storage
from hpo.storage.urls import mask_url
from hpo.study.requeue import StaleTrialRequeue, reconcile

__all__ = [
    "ATTR_BASELINES_ENQUEUED",
    "ATTR_BUDGET",
    "ATTR_CONFIG",
    "OpenStudy",
    "baseline_key",
    "create_study",
    "load_study",
    "name_metric",
    "open_study",
]

logger = logging.getLogger(__name__)

ATTR_CONFIG = "hpo_config"
ATTR_BUDGET = "hpo_budget"
ATTR_BASELINES_ENQUEUED = "hpo_baselines_enqueued"  # set once every baseline is enqueued
# Config keys that decide what the study's trials mean; the rest (n_trials, timeout,
# sampler, pruner, heartbeat, storage, source) may change between runs.
_SEARCH_KEYS = (
    "direction", "objective", "metric", "probe", "train", "search_space", "baseline", "cells",
)
# RDBStorage turns most driver errors into StorageInternalError; the rest surface as is.
_STORAGE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)


def create_study(
    cfg: StudyConfig, storage: str | BaseStorage, *, wait_s: float = 30.0
) -> optuna.Study:
    """Create the study, or load it when it exists; enqueue its baselines exactly once.

    Args:
        cfg: the validated study config.
        storage: a storage URL or an Optuna storage.
        wait_s: how long a process that did not create the study waits for the creator to
            finish enqueueing the baselines before it enqueues the missing ones itself (the
            creator crashed).

    Raises:
        ConfigError: the stored study was created with a different search (nothing is
            written then).
        StorageError: the storage cannot be reached.
    """
    storage_obj = _storage(storage, cfg)
    try:
        try:
            storage_obj.create_new_study([_direction(cfg.direction)], cfg.name)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            created = False
        study = _open(cfg, storage_obj)
        if created:
            logger.info("created study %s", cfg.name)
            _write_config(study, cfg)
            name_metric(study, cfg)
            _enqueue_baselines(study, cfg)
        else:
            _adopt(study, cfg, wait_s, _where(storage))
            reconcile(study, study.get_trials(deepcopy=False), cfg.heartbeat.max_retry)
    except _STORAGE_ERRORS as exc:
        raise StorageError(
            f"storage {_where(storage)}: {one_line(exc, limit=300)}; fix: check that "
            "the database is reachable and writable."
        ) from exc
    return study


class OpenStudy(NamedTuple):
    """A loaded study, its stored config, and the storage it was loaded from (what
    heartbeats and trial reads by id go through)."""

    study: optuna.Study
    cfg: StudyConfig
    storage: BaseStorage


def _open_storage(url: str, cfg: StudyConfig) -> optuna.storages.RDBStorage:
    """The storage at ``url`` with the study's heartbeat settings and the stale-trial
    callback that queues a dead worker's trial again (:class:`StaleTrialRequeue`)."""
    return make_storage(url, cfg.heartbeat,
                        stale_trial_callback=StaleTrialRequeue(cfg.heartbeat.max_retry))


def load_study(
    name: str, storage: str | BaseStorage, *, seed_offset: int = 0
) -> tuple[optuna.Study, StudyConfig]:
    """Load a study created by :func:`create_study`, with its stored config.

    Args:
        name: the study name.
        storage: a storage URL or an Optuna storage.
        seed_offset: added to the sampler seed (give each parallel worker its own).

    Raises:
        StudyNotFoundError: no such study (the message lists the existing ones), or the study
            was not created by reluprime-hpo.
        StorageError: the storage cannot be reached.
    """
    opened = open_study(name, storage, seed_offset=seed_offset)
    return opened.study, opened.cfg


def open_study(name: str, storage: str | BaseStorage, *, seed_offset: int = 0) -> OpenStudy:
    """:func:`load_study`, also returning the storage (opened from a URL with the study's
    heartbeat settings)."""
    probe = make_storage(storage) if isinstance(storage, str) else storage
    try:
        names = sorted(s.study_name for s in probe.get_all_studies())
        if name not in names:
            raise StudyNotFoundError(
                f"study {name!r} not found in {_where(storage)} (got {name!r}); existing "
                f"studies: {names or 'none'}; fix: create it with `hpo create CONFIG.yaml` or "
                "pick an existing name."
            )
        attrs = probe.get_study_user_attrs(probe.get_study_id_from_name(name))
    except _STORAGE_ERRORS as exc:
        raise StorageError(
            f"storage {_where(storage)}: {one_line(exc, limit=300)}"
        ) from exc
    if ATTR_CONFIG not in attrs:
        raise StudyNotFoundError(
            f"study {name!r} in {_where(storage)} has no stored hpo_config (it was not "
            "created by reluprime-hpo, or its creation was interrupted); fix: run `hpo create` "
            "with its study file."
        )
    cfg = StudyConfig.from_dict(attrs[ATTR_CONFIG])
    if isinstance(storage, str):
        cfg = dataclasses.replace(cfg, storage=storage)
        probe.engine.dispose()
        storage_obj: BaseStorage = _open_storage(storage, cfg)  # with the study's heartbeat
    else:
        storage_obj = storage
    return OpenStudy(_open(cfg, storage_obj, seed_offset=seed_offset), cfg, storage_obj)


def name_metric(study: optuna.Study, cfg: StudyConfig) -> bool:
    """Give the study's objective value its name, ``cfg.metric`` (``val_accuracy``,
    ``bifurcated_fraction``...), so the dashboard does not call it "Objective 0".

    Written once: a study that already has metric names (its own, or a user's) keeps them.

    Returns:
        Whether the name was written now.
    """
    with warnings.catch_warnings():  # experimental in Optuna 4 and 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names is not None:
            return False
        study.set_metric_names([cfg.metric])
    return True


def baseline_key(params: Mapping[str, Any], seed: int) -> str:
    """A canonical key for one baseline run, to spot it among the stored trials."""
    return json.dumps({"params": dict(params), "seed": seed}, sort_keys=True)


# ----------------------------------------------------------------------------------
def _storage(storage: str | BaseStorage, cfg: StudyConfig) -> BaseStorage:
    return _open_storage(storage, cfg) if isinstance(storage, str) else storage


def _where(storage: str | BaseStorage) -> str:
    if isinstance(storage, str):
        return mask_url(storage)
    url = getattr(storage, "url", None)
    return mask_url(url) if url else type(storage).__name__


def _direction(direction: str) -> StudyDirection:
    return StudyDirection.MAXIMIZE if direction == "maximize" else StudyDirection.MINIMIZE


def _open(cfg: StudyConfig, storage: BaseStorage, seed_offset: int = 0) -> optuna.Study:
    return optuna.load_study(
        study_name=cfg.name,
        storage=storage,
        sampler=make_sampler(cfg.sampler, seed_offset=seed_offset),
        pruner=make_pruner(cfg.pruner),
    )


def _normalised(d: Mapping[str, Any]) -> dict[str, Any]:
    """The config as stored: JSON, and never a storage password."""
    out = json.loads(json.dumps(d, sort_keys=True))
    if isinstance(out.get("storage"), str):
        out["storage"] = mask_url(out["storage"])
    return out


def _write_config(study: optuna.Study, cfg: StudyConfig) -> None:
    # budget first: a process that sees the config may rely on the budget being there
    study.set_user_attr(ATTR_BUDGET, cfg.total_budget)
    study.set_user_attr(ATTR_CONFIG, _normalised(cfg.to_dict()))


def _search_differences(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    diffs = []
    for key in _SEARCH_KEYS:
        a, b = stored.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and key != "baseline":
            diffs += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            diffs.append(key)
    return diffs


def _adopt(study: optuna.Study, cfg: StudyConfig, wait_s: float, where: str) -> None:
    """Check an existing study against ``cfg`` and finish what its creator left undone."""
    new = _normalised(cfg.to_dict())
    stored = _wait_for(study, ATTR_CONFIG, wait_s)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(
                f"{cfg.source}: name: study {cfg.name!r} already exists with trials but was "
                f"not created by reluprime-hpo (got {cfg.name!r}); fix: choose another name."
            )
        logger.warning("study %s has no stored config (creator interrupted?); writing it", cfg.name)
        _write_config(study, cfg)
    else:
        if study.direction != _direction(cfg.direction):
            stored = {**stored, "direction": study.direction.name.lower()}
        diffs = _search_differences(stored, new)
        if diffs:
            raise ConfigError(
                f"{cfg.source}: study {cfg.name!r} already exists in {where} "
                f"with a different search (got changes in {', '.join(diffs)}); allowed: "
                "changing n_trials, timeout, sampler, pruner, heartbeat; fix: give the "
                "changed study a new name: (or restore the stored settings)."
            )
        if stored != new or ATTR_BUDGET not in study.user_attrs:
            logger.info(
                "study %s: updating its stored run settings (n_trials, sampler, ...)", cfg.name
            )
            _write_config(study, cfg)
    if name_metric(study, cfg):  # a study created before metric names were set
        logger.info("study %s: named its objective %s", cfg.name, cfg.metric)
    if _wait_for(study, ATTR_BASELINES_ENQUEUED, wait_s) is None:
        logger.warning(
            "study %s: baseline enqueue was interrupted; enqueueing the missing ones", cfg.name
        )
        _enqueue_baselines(study, cfg)


def _wait_for(study: optuna.Study, attr: str, wait_s: float) -> Any:
    """The study user attr, waiting up to ``wait_s`` for a creator in another process."""
    deadline = time.monotonic() + wait_s
    while True:
        attrs = study.user_attrs  # read from the storage on every access
        if attr in attrs or time.monotonic() >= deadline:
            return attrs.get(attr)
        time.sleep(0.25)


def _enqueue_baselines(study: optuna.Study, cfg: StudyConfig) -> None:
    done = {
        _trial_key(t) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("hpo_baseline")
    }
    added = 0
    for params, seed in cfg.baseline_trials():
        if baseline_key(params, seed) in done:
            continue
        study.enqueue_trial(params, user_attrs={"hpo_baseline": True, "hpo_seed": seed})
        added += 1
    study.set_user_attr(ATTR_BASELINES_ENQUEUED, len(cfg.baseline_trials()))
    if added:
        logger.info("study %s: enqueued %d baseline trial(s)", cfg.name, added)


def _trial_key(trial: FrozenTrial) -> str:
    # A waiting trial keeps its enqueued values in system_attrs["fixed_params"] until a
    # worker runs it; afterwards they are its params.
    params = trial.system_attrs.get("fixed_params") or trial.params
    return baseline_key(params, trial.user_attrs.get("hpo_seed"))
