"""The study's budget: which trials count, and why the count is exact.

The budget (study user attr ``hpo_budget``) is the number of trials that must end COMPLETE
or PRUNED. A trial holds a slot while WAITING, RUNNING, COMPLETE or PRUNED; a trial asked
for once all slots are held is discarded (told FAIL before sampling), as are duplicate
retries and duplicate twins; paired twins are outside the budget.
See docs/design.md#study-budget-exact-for-any-number-of-workers.
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
_FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


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
    Twins and duplicate copies are not counted.
    Why: docs/design.md#study-budget-exact-for-any-number-of-workers."""
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
    finished = sum(t.state in _FINISHED_STATES and not is_twin(t) for t in live)
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
    (every lower-numbered trial is among them: see
    docs/design.md#study-budget-exact-for-any-number-of-workers).

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
