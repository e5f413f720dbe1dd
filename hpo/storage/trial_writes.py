"""A running trial's frequent writes with plain SQL: Optuna's checks and rows, less CPU.

Per trial a worker writes each sampled parameter, each epoch's intermediate value and at
least one heartbeat. Optuna's ``RDBStorage`` does each through the ORM (load the trial
object, flush a new one): about a millisecond of CPU each, more than the statements
themselves. :class:`PlainSqlTrialWrites` makes the same writes with the same checks, in the
same transactions:

* a missing trial raises ``KeyError``, a finished one ``UpdateFinishedTrialError``
  (``check_trial_is_updatable``), a parameter whose distribution does not match the study's
  earlier ones ``ValueError``, and a parameter set twice keeps its first value (Optuna
  ignores the duplicate-key error);
* an intermediate value or a heartbeat that exists is overwritten (one upsert instead of a
  read, then an insert or an update);
* the heartbeat is the database's ``CURRENT_TIMESTAMP``, as Optuna's is.

Written for SQLite (3.24 and later: upserts) and PostgreSQL; any other database keeps
Optuna's ORM code. ``tests/storage/test_trial_writes.py`` compares the stored rows.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.orm
from optuna import distributions
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState

__all__ = ["PlainSqlTrialWrites", "trial_state"]

_T = models.TrialModel.__table__
_P = models.TrialParamModel.__table__
_I = models.TrialIntermediateValueModel.__table__
_H = models.TrialHeartbeatModel.__table__
_STATE = sa.select(_T.c.state, _T.c.study_id).where(_T.c.trial_id == sa.bindparam("trial_id"))
_EARLIER_DISTRIBUTION = (
    sa.select(_P.c.distribution_json)
    .join(_T, _T.c.trial_id == _P.c.trial_id)
    .where(_T.c.study_id == sa.bindparam("study_id"), _P.c.param_name == sa.bindparam("name"))
    .limit(1)
)
_ADD_PARAM = sa.insert(_P)
_to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr


def trial_state(connection: sa.Connection, trial_id: int) -> tuple[TrialState, int]:
    """(state, study id) of a stored trial.

    Raises:
        KeyError: no trial ``trial_id`` (what Optuna's ``find_or_raise_by_id`` raises).
    """
    row = connection.execute(_STATE, {"trial_id": trial_id}).first()
    if row is None:
        raise KeyError(models.NOT_FOUND_MSG)
    return row.state, row.study_id


def _insert(dialect: str) -> Any:
    """The dialect's INSERT that takes ON CONFLICT, or None."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert

        return insert
    return None


def _build_upserts(insert: Any) -> tuple[Any, Any] | None:
    if insert is None:
        return None
    value = insert(_I)
    beat = insert(_H).values(
        trial_id=sa.bindparam("trial_id"), heartbeat=sa.func.current_timestamp()
    )
    return (
        value.on_conflict_do_update(
            index_elements=[_I.c.trial_id, _I.c.step],
            set_={
                "intermediate_value": value.excluded.intermediate_value,
                "intermediate_value_type": value.excluded.intermediate_value_type,
            },
        ),
        beat.on_conflict_do_update(
            index_elements=[_H.c.trial_id], set_={"heartbeat": beat.excluded.heartbeat}
        ),
    )


_UPSERTS: dict[str, tuple[Any, Any] | None] = {}  # by dialect name, built at first use


class PlainSqlTrialWrites:
    """Mixin for an ``RDBStorage`` subclass (list it before ``RDBStorage`` among the bases):
    parameters, intermediate values and heartbeats written with plain SQL."""

    if TYPE_CHECKING:  # what the mixin uses of RDBStorage
        engine: sa.Engine
        scoped_session: sa.orm.scoped_session

        def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None: ...

    def _upserts(self) -> tuple[Any, Any] | None:
        """(intermediate value, heartbeat) upserts for this engine, or None (use Optuna's)."""
        dialect = self.engine.dialect.name
        if dialect not in _UPSERTS:
            _UPSERTS[dialect] = _build_upserts(_insert(dialect))
        return _UPSERTS[dialect]

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: distributions.BaseDistribution,
        previous_distribution: distributions.BaseDistribution | None,
    ) -> None:
        if self._upserts() is None:
            return super()._set_trial_param(  # type: ignore[misc]
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            )
        # True: a parameter already set (a concurrent duplicate) is ignored, as Optuna does.
        with _create_scoped_session(self.scoped_session, True) as session:
            connection = session.connection()
            state, study_id = trial_state(connection, trial_id)
            self.check_trial_is_updatable(trial_id, state)
            if previous_distribution is None:
                earlier = connection.execute(
                    _EARLIER_DISTRIBUTION, {"study_id": study_id, "name": param_name}
                ).scalar()
                if earlier is not None:
                    previous_distribution = distributions.json_to_distribution(earlier)
            if previous_distribution is not None:
                distributions.check_distribution_compatibility(previous_distribution, distribution)
            connection.execute(_ADD_PARAM, {
                "trial_id": trial_id,
                "param_name": param_name,
                "param_value": param_value_internal,
                "distribution_json": distributions.distribution_to_json(distribution),
            })

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        upserts = self._upserts()
        if upserts is None:
            return super().set_trial_intermediate_value(  # type: ignore[misc]
                trial_id, step, intermediate_value
            )
        stored, value_type = _to_stored(intermediate_value)
        with _create_scoped_session(self.scoped_session, True) as session:
            connection = session.connection()
            state, _study_id = trial_state(connection, trial_id)
            self.check_trial_is_updatable(trial_id, state)
            connection.execute(upserts[0], {
                "trial_id": trial_id,
                "step": step,
                "intermediate_value": stored,
                "intermediate_value_type": value_type,
            })

    def record_heartbeat(self, trial_id: int) -> None:
        upserts = self._upserts()
        if upserts is None:
            return super().record_heartbeat(trial_id)  # type: ignore[misc]
        with _create_scoped_session(self.scoped_session, True) as session:
            session.connection().execute(upserts[1], {"trial_id": trial_id})
