"""Fail a trial and queue its copy in one transaction, so that no crash can lose the copy.

A trial that did not end by itself (its worker was interrupted, hit an error, or died and
its heartbeat went stale) is failed and re-queued with the same parameters and seed. Done
as two writes (Optuna's ``fail_stale_trials`` sets the state, then its retry callback adds
the copy; ``study.tell`` then ``study.add_trial``), a worker killed or a connection lost
between them leaves a FAIL trial without a copy: a baseline seed that never runs and a
budget slot that the study silently does without. Here both writes are one transaction:

* :meth:`AtomicRequeue.fail_and_requeue` (mixed into the service's RDB storage) locks the
  study row, then the trial row (on SQLite: takes the database's write lock first, since
  SQLite ignores ``FOR UPDATE``), checks that the trial is still running or waiting, records
  the reason, sets FAIL and inserts the copy, numbered under the same study-row lock as
  Optuna's own ``_create_new_trial``. Of two processes failing the same trial, exactly one
  wins and the other gets ``UpdateFinishedTrialError`` and changes nothing.
* :func:`retry_template` is the copy: parameters, distributions, the input attributes
  (baseline tag, seed, twin links) and the retry lineage (system attrs ``failed_trial`` and
  ``retry_history``, as Optuna's ``RetryFailedTrialCallback`` writes them), but none of the
  failed run's results: a partial result must not show up on the copy.
* :func:`fail_stale_trials` is the workers' heartbeat check with that transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from hpo.study.twins import TWIN_ATTR, TWIN_OF_ATTR

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

__all__ = [
    "AtomicRequeue",
    "FAIL_REASON_ATTR",
    "INPUT_ATTRS",
    "STALE_REASON",
    "atomic_backend",
    "fail_stale_trials",
    "retry_template",
]

log = logging.getLogger(__name__)

FAIL_REASON_ATTR = "hpo_fail_reason"
#: The reason recorded on a trial failed by the heartbeat check ("worker lost" in reports).
STALE_REASON = "worker lost: no heartbeat within the grace period"
#: User attrs that describe a trial's input (copied to a re-queued trial); the rest are results.
INPUT_ATTRS = ("hpo_baseline", "hpo_seed", TWIN_OF_ATTR, TWIN_ATTR)

_T = models.TrialModel.__table__


def retry_template(trial: FrozenTrial, max_retry: int | None) -> FrozenTrial | None:
    """The WAITING copy that re-runs a failed ``trial``, or None when it was already retried
    ``max_retry`` times (``None``: no limit)."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        log.warning("trial %d failed %d times; not retrying it again", history[0], len(history))
        return None
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k in INPUT_ATTRS},
        system_attrs={"failed_trial": history[0], **trial.system_attrs, "retry_history": history},
    )


class AtomicRequeue:
    """Mixin for :class:`optuna.storages.RDBStorage`: :meth:`fail_and_requeue`."""

    def fail_and_requeue(
        self: RDBStorage, trial_id: int, *, reason: str | None, max_retry: int | None
    ) -> tuple[FrozenTrial, int | None]:
        """Fail a running (or waiting) trial, recording ``reason`` as its user attr
        ``hpo_fail_reason``, and queue its copy (:func:`retry_template`): both or neither.

        Returns:
            The failed trial, and the copy's number (``None`` when its retries are spent).

        Raises:
            KeyError: no such trial.
            UpdateFinishedTrialError: the trial is already finished (maybe by another
                process a moment ago, which then queued the copy); nothing was changed.
        """
        with _create_scoped_session(self.scoped_session) as session:
            if self.engine.dialect.name == "sqlite":
                # A write that changes nothing takes SQLite's write lock now, until commit:
                # the check below and the writes after it are then one step.
                session.execute(
                    sa.update(_T).where(_T.c.trial_id == trial_id).values(state=_T.c.state)
                )
            study_id = session.execute(
                sa.select(_T.c.study_id).where(_T.c.trial_id == trial_id)
            ).scalar()
            if study_id is None:
                raise KeyError(models.NOT_FOUND_MSG)
            # Study row first, as Optuna's trial creation does (one lock order: no deadlock).
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            self.check_trial_is_updatable(trial_id, row.state)
            frozen = self._build_frozen_trial_from_trial_model(row)
            if reason is not None:
                self._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, FAIL_REASON_ATTR, reason
                )
                frozen.user_attrs[FAIL_REASON_ATTR] = reason
            row.state = TrialState.FAIL
            row.datetime_complete = datetime.now()
            frozen.state, frozen.datetime_complete = TrialState.FAIL, row.datetime_complete
            template = retry_template(frozen, max_retry)
            copy = None
            if template is not None:
                copy = self._get_prepared_new_trial(study_id, template, session).number
        return frozen, copy


def atomic_backend(study: optuna.Study) -> AtomicRequeue | None:
    """The study's storage (under Optuna's cache) when it can fail and re-queue atomically."""
    backend = getattr(study._storage, "_backend", study._storage)
    return backend if isinstance(backend, AtomicRequeue) else None


def fail_stale_trials(study: optuna.Study, max_retry: int | None) -> list[int]:
    """Fail the trials whose worker stopped beating and queue their copies (one transaction
    each); Optuna's own check where the storage cannot. Returns the failed trials' ids."""
    backend = atomic_backend(study)
    if backend is None:
        optuna.storages.fail_stale_trials(study)
        return []
    failed = []
    for trial_id in backend._get_stale_trial_ids(study._study_id):
        try:
            frozen, copy = backend.fail_and_requeue(
                trial_id, reason=STALE_REASON, max_retry=max_retry
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker's check (or the trial's own worker) got there first
        failed.append(trial_id)
        log.warning("trial %d: its worker stopped sending heartbeats; failed it%s",
                    frozen.number, "" if copy is None else f" and queued trial {copy} to re-run it")
    return failed
