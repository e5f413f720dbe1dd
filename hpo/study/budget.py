"""The study's budget: which trials count, and why the count is exact.

Budget accounting (exact, whatever the number of workers and machines)
----------------------------------------------------------------------
The budget ``B`` (study user attr ``hpo_budget`` = search trials + baselines) is the number
of trials that must end COMPLETE or PRUNED. A trial *holds a slot* while it is WAITING,
RUNNING, COMPLETE or PRUNED; a FAIL trial holds none, so crashed, interrupted or errored
trials never eat the budget (they are re-queued with the same parameters and seed instead).

* Before asking, a worker stops when ``B`` trials are finished, and waits (without asking)
  while all ``B`` slots are held by other workers' running trials: if one of them dies, its
  heartbeat goes stale, it is failed and re-queued, and a waiting worker runs the copy.
* After ``study.ask()`` the trial has its number. Optuna numbers trials under a lock on the
  study row, so every trial with a lower number is already visible. The trial is *in budget*
  when fewer than ``B`` slot-holding trials have a lower number. Two workers racing for the
  last slot both ask, but only the lower number is in budget; the other is **discarded**:
  told FAIL at once, before any parameter is sampled, with user attr
  ``hpo_fail_reason="discarded: over budget"``. A discarded trial holds no slot and trains
  nothing, so it never becomes an extra finished trial.
* Why that is exact: suppose ``B + 1`` trials finished. When the highest-numbered of them
  was checked, the ``B`` others already existed (lower numbers are committed first) and held
  slots (a trial that ends finished never was FAIL), so its rank was ``B``: it would have
  been discarded. This relies on Optuna numbering trials under the study-row lock
  (Optuna's RDB storage inserts the trial before it counts the study's trials; on SQLite
  every transaction holds the database's write lock from its start,
  :func:`hpo.storage.sqlite_file.tune_sqlite_engine`).

Duplicate copies of a failed trial (:func:`hpo.study.requeue.superseded`: two processes
re-queued it at once) hold no slot either: every count here leaves them out, and a worker
that pops one discards it (``"discarded: duplicate retry"``). The rule reads only stored
trials, so every worker leaves out the same ones.

Paired twins (``baseline: {mode: paired}``, :mod:`hpo.study.twins`) are outside ``B``: the
study's total grows by one per tuned trial that gets a twin. Every count above leaves twins
(user attr ``hpo_twin_of``, kept by their retries) out (:func:`budget_rank`); a popped twin
runs only when no lower-numbered twin of the same tuned lineage (the trial and its retries)
holds a slot (:func:`twin_rank`), else it is discarded (``"discarded: duplicate twin"``).
The study is spent when ``B`` non-twin trials are finished and no twin waits or runs. Exact:
the argument above bounds non-twin trials at ``B`` and, with a budget of 1 per lineage, each
lineage at one finished twin; and none is missed: a tuned trial enqueues its twin after its
budget check and before training, so before it can finish, and once ``B`` non-twin trials
are finished no other one runs past its check (its rank would be ``B``), so every twin there
will be already exists when the workers stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import StorageError
from hpo.study.requeue import DUPLICATE_RETRY, FAIL_REASON_ATTR, copy_of, queue_copy, superseded
from hpo.study.twins import TWIN_OF_ATTR, is_twin, lineage_root

__all__ = [
    "BUDGET_ATTR",
    "DISCARDED",
    "DUPLICATE_RETRY",
    "DUPLICATE_TWIN",
    "FAIL_REASON_ATTR",
    "FINISHED_STATES",
    "SLOT_STATES",
    "Admission",
    "admit",
    "all_slots_held",
    "budget_rank",
    "nothing_left",
    "slot_holders",
    "requeue",
    "study_budget",
    "study_spent",
    "twin_rank",
]

log = logging.getLogger(__name__)

BUDGET_ATTR = "hpo_budget"
DISCARDED = "discarded: over budget"
DUPLICATE_TWIN = "discarded: duplicate twin"
#: States of trials that hold a slot of the budget.
SLOT_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def study_budget(study: optuna.Study) -> int:
    """The study's total budget (search + baseline trials), set by ``hpo create``: one read
    of the study's user attrs."""
    budget = study.user_attrs.get(BUDGET_ATTR)
    if not isinstance(budget, int):
        raise StorageError(
            f"study {study.study_name!r} has no {BUDGET_ATTR!r} attribute (got {budget!r}); "
            "it was not created by 'hpo create'; fix: create it with hpo create CONFIG."
        )
    return budget


def slot_holders(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that hold a slot of the budget: WAITING, RUNNING, COMPLETE or PRUNED, not
    a twin and not a duplicate copy."""
    duplicates = superseded(trials)
    return [
        t for t in trials
        if t.state in SLOT_STATES and not is_twin(t) and t.number not in duplicates
    ]


def budget_rank(trials: list[FrozenTrial], number: int) -> int:
    """How many slot-holding trials come before trial ``number``; in budget when < budget.
    Twins and duplicate copies are not counted (see the module docstring)."""
    return sum(1 for t in slot_holders(trials) if t.number < number)


def twin_rank(trials: list[FrozenTrial], twin: FrozenTrial) -> int:
    """How many slot-holding twins of the same tuned lineage come before ``twin`` (duplicate
    copies left out); it runs only at rank 0."""
    roots = {t.number: lineage_root(t.number, t.system_attrs) for t in trials}
    duplicates = superseded(trials)

    def root(t: FrozenTrial) -> int:
        key = int(t.user_attrs[TWIN_OF_ATTR])
        return roots.get(key, key)

    mine = root(twin)
    return sum(
        1
        for t in trials
        if t.number < twin.number and t.state in SLOT_STATES and is_twin(t)
        and t.number not in duplicates and root(t) == mine
    )


def study_spent(trials: list[FrozenTrial], budget: int) -> bool:
    """``budget`` non-twin trials finished and no twin waiting or running (duplicate copies
    left out)."""
    duplicates = superseded(trials)
    live = [t for t in trials if t.number not in duplicates]
    finished = sum(t.state in FINISHED_STATES and not is_twin(t) for t in live)
    return finished >= budget and not any(
        is_twin(t) and t.state in (TrialState.WAITING, TrialState.RUNNING) for t in live
    )


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Queue a copy of a failed trial (:func:`hpo.study.requeue.queue_copy`); False when it
    was already retried ``max_retry`` times."""
    return queue_copy(study, trial, max_retry)


def nothing_left(trials: list[FrozenTrial], budget: int) -> bool:
    """The study is spent (:func:`study_spent`) and no duplicate copy waits to be popped and
    discarded: a worker can stop without leaving anything queued."""
    duplicates = superseded(trials)
    return study_spent(trials, budget) and not any(
        t.state == TrialState.WAITING and t.number in duplicates for t in trials
    )


def all_slots_held(trials: list[FrozenTrial], budget: int) -> bool:
    """Every slot is held and nothing waits: asking now would only get a discarded trial, so
    a worker waits instead (a held slot frees when its trial fails and is re-queued)."""
    return len(slot_holders(trials)) >= budget and not any(
        t.state == TrialState.WAITING for t in trials
    )


@dataclass(frozen=True)
class Admission:
    """Whether a trial just asked may run: its ``rank`` among the trials that compete with
    it, against ``limit``; ``reason`` is its fail reason when it may not."""

    rank: int
    limit: int
    reason: str

    @property
    def admitted(self) -> bool:
        return self.rank < self.limit


def admit(trials: list[FrozenTrial], number: int, budget: int) -> Admission:
    """The verdict on trial ``number``, just asked, from ``trials`` read after the ask
    (every lower-numbered trial is among them: see the module docstring).

    A duplicate copy of a failed trial never runs (the lower copy does); a twin runs when it
    is the first of its tuned lineage to hold a slot; any other trial when fewer than
    ``budget`` slot-holding trials come before it.
    """
    frozen = next(t for t in trials if t.number == number)
    if copy_of(frozen) is not None and frozen.number in superseded(trials):
        return Admission(1, 1, DUPLICATE_RETRY)
    if is_twin(frozen):  # outside the budget; one per tuned lineage
        return Admission(twin_rank(trials, frozen), 1, DUPLICATE_TWIN)
    return Admission(budget_rank(trials, number), budget, DISCARDED)
