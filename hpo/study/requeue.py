"""Re-queue failed trials exactly once, from public Optuna calls that are reconciled.

A trial that did not end by itself is failed and re-queued as a WAITING copy with the same
parameters and seed. Failing and queueing are two writes, so a crash between them is
repaired (:func:`reconcile`), duplicates are discarded (:func:`superseded`), and dead or
orphaned workers' trials are failed (:class:`StaleTrialRequeue`, :func:`fail_orphans`).
See docs/design.md#re-queueing-failed-trials-exactly-once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.storage.rdb import grace_period_s, is_finished_trial_error
from hpo.study.twins import TWIN_ATTR, TWIN_OF_ATTR

__all__ = [
    "DUPLICATE_RETRY",
    "FAIL_REASON_ATTR",
    "ORPHAN_REASON",
    "RECONCILE_AFTER_S",
    "RETRY_REASON_ATTR",
    "STALE_REASON",
    "WORKER_ATTR",
    "StaleTrialRequeue",
    "copy_of",
    "fail_orphans",
    "fail_reason",
    "is_discarded",
    "queue_copy",
    "reconcile",
    "retry_template",
    "superseded",
]

log = logging.getLogger(__name__)

FAIL_REASON_ATTR = "hpo_fail_reason"
#: On a copy: why the trial it re-runs failed (that trial may carry no reason of its own).
RETRY_REASON_ATTR = "hpo_retry_reason"
#: ``host:pid`` of the worker running a trial, written right after its first heartbeat.
WORKER_ATTR = "hpo_worker"
#: The reason of a FAIL trial without :data:`FAIL_REASON_ATTR` (Optuna's heartbeat check).
STALE_REASON = "worker lost: no heartbeat within the grace period"
ORPHAN_REASON = "worker lost: it died before its first heartbeat"
#: Reasons that start with this are never retried.
_DISCARD_PREFIX = "discarded:"
DUPLICATE_RETRY = "discarded: duplicate retry"
#: User attrs that describe a trial's input (copied to a re-queued trial); the rest are results.
_INPUT_ATTRS = ("hpo_baseline", "hpo_seed", TWIN_OF_ATTR, TWIN_ATTR)
#: A FAIL trial is reconciled once it ended this long ago (its own worker queues the copy
#: within milliseconds; a worker retrying through an outage may take longer, and a
#: duplicate it then adds is discarded).
RECONCILE_AFTER_S = 10.0


def fail_reason(trial: FrozenTrial) -> str | None:
    """Why a FAIL trial failed (``"worker lost: ..."`` when it carries no reason: Optuna's
    heartbeat check failed it); None for a trial that did not fail. For reports and CLI."""
    if trial.state != TrialState.FAIL:
        return None
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return str(reason) if reason else STALE_REASON


def is_discarded(trial: FrozenTrial) -> bool:
    """A trial told FAIL on purpose (over budget, a duplicate): never retried."""
    return (fail_reason(trial) or "").startswith(_DISCARD_PREFIX)


def copy_of(trial: FrozenTrial) -> int | None:
    """The number of the failed trial that ``trial`` re-runs, or None (not a copy)."""
    history = trial.system_attrs.get("retry_history")
    return int(history[-1]) if history else None


def _age_s(when: datetime, now: datetime | None = None) -> float:
    """Seconds since ``when``: a FrozenTrial's timestamp, naive local time in Optuna 4.0 and
    5.0 alike (5.0 stores UTC and converts it back to local time when it reads)."""
    if now is None:
        now = datetime.now(when.tzinfo) if when.tzinfo is not None else datetime.now()
    return (now - when).total_seconds()


def retry_template(trial: FrozenTrial, max_retry: int | None) -> FrozenTrial | None:
    """The WAITING copy that re-runs a failed ``trial``, or None when it was already retried
    ``max_retry`` times (``None``: no limit). Inputs and lineage only, none of its results."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        return None
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k in _INPUT_ATTRS}
    reason = fail_reason(trial)
    if reason is not None:
        user_attrs[RETRY_REASON_ATTR] = reason
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=user_attrs,
        system_attrs={"failed_trial": history[0], **trial.system_attrs, "retry_history": history},
    )


def queue_copy(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Add the copy of a failed trial; False when its retries are spent."""
    template = retry_template(trial, max_retry)
    if template is None:
        log.warning("trial %d failed %d times; not retrying it again",
                    int(trial.system_attrs.get("failed_trial", trial.number)),
                    len(trial.system_attrs.get("retry_history", [])) + 1)
        return False
    study.add_trial(template)
    return True


def superseded(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the duplicate copies: of several copies of one failed trial, all but the
    lowest-numbered one that is not discarded (those already discarded are left out)."""
    groups: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        original = copy_of(t)
        if original is not None:
            groups.setdefault(original, []).append(t)
    out: set[int] = set()
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda t: t.number)
        winner = next((t for t in copies if not is_discarded(t)), None)
        out.update(t.number for t in copies if t is not winner and not is_discarded(t))
    return out


def reconcile(
    study: optuna.Study,
    trials: list[FrozenTrial],
    max_retry: int | None,
    *,
    min_age_s: float = RECONCILE_AFTER_S,
) -> list[int]:
    """Queue the missing copy of every FAIL trial that has retries left, no copy and no
    ``discarded:`` reason, and ended more than ``min_age_s`` ago.

    Args:
        trials: the study's trials, as just read (no extra read here).

    Returns:
        The numbers of the trials that got a copy.
    """
    copied = {copy_of(t) for t in trials}
    duplicates = superseded(trials)
    repaired = []
    for t in trials:
        if t.state != TrialState.FAIL or t.number in copied or t.number in duplicates:
            continue
        if is_discarded(t) or t.datetime_complete is None:
            continue
        if _age_s(t.datetime_complete) < min_age_s:
            continue
        template = retry_template(t, max_retry)
        if template is None:
            continue  # retries spent: said once, when its last copy was queued
        study.add_trial(template)
        repaired.append(t.number)
        log.warning("trial %d failed (%s) without a copy queued (its process died in "
                    "between); queued one", t.number, fail_reason(t))
    return repaired


def fail_orphans(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    trials: list[FrozenTrial],
    max_retry: int | None,
) -> list[int]:
    """Fail (and re-queue) RUNNING trials that never got :data:`WORKER_ATTR` and started
    more than the grace period ago: their worker died before its first heartbeat.

    Returns:
        The numbers of the trials failed here.
    """
    grace = grace_period_s(storage) if isinstance(storage, optuna.storages.RDBStorage) else None
    if grace is None:
        return []
    orphans = [
        t for t in trials
        if t.state == TrialState.RUNNING and WORKER_ATTR not in t.user_attrs
        and t.datetime_start is not None and _age_s(t.datetime_start) > grace
    ]
    if not orphans:
        return []
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for t in orphans:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, ORPHAN_REASON)
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except RuntimeError as exc:
            if not is_finished_trial_error(exc):
                raise
            continue  # finished meanwhile (by its worker after all, or another check)
        failed.append(t.number)
        queued = queue_copy(study, storage.get_trial(trial_id), max_retry)
        log.warning("trial %d: its worker died before its first heartbeat; failed it%s",
                    t.number, " and queued its copy" if queued else "")
    return failed


class StaleTrialRequeue:
    """The storage's stale-trial callback: queue the copy of a trial that
    ``optuna.storages.fail_stale_trials`` just failed (cf. ``RetryFailedTrialCallback``,
    which copies every user attr, results included)."""

    def __init__(self, max_retry: int | None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        queued = queue_copy(study, trial, self.max_retry)
        log.warning("trial %d: its worker stopped sending heartbeats; failed it%s",
                    trial.number, " and queued its copy" if queued else "")

