"""Read stored trials with plain SQL: the FrozenTrials Optuna's RDBStorage builds, for about a
third of its CPU and of its round trips to the database.

A worker reads its study's trials about ten times per trial: the budget check, ``ask`` (its
queue pop and the new trial), the TPE sampler (with ``constant_liar``, Optuna's default, it
re-reads the running trials), the median pruner once per epoch, ``tell``. Optuna's
``_CachedStorage`` keeps the finished trials, so each read fetches only the unfinished and
the new ones, but ``RDBStorage`` builds them through the ORM (identity map, one loader query
per relation): 3-5 ms of CPU per read, the largest share of a worker's time outside training
(``bench/storage_overhead.py``).

:func:`read_trials` and :func:`read_trial` return what ``RDBStorage._get_trials`` and
``RDBStorage.get_trial`` return: they select the same trials, then everything stored about
them (params, values, user and system attributes, intermediate values) in one UNION ALL
statement instead of five, and build the FrozenTrials with Optuna's own conversions
(distributions from JSON, stored infinities and NaN, naive-UTC times to local time). A
missing study or trial raises the same ``KeyError``. On PostgreSQL the reads also skip
psycopg2's BEGIN and COMMIT (:func:`_reading`). ``tests/storage/test_trial_reads.py``
compares both paths trial by trial.
"""

from __future__ import annotations

import datetime
import heapq
import json
from collections.abc import Container, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.exc
from optuna.distributions import json_to_distribution
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import optuna

__all__ = ["PlainSqlTrialReads", "read_trial", "read_trials"]

_DIALECTS = ("sqlite", "postgresql")  # the SQL below is written for these
_UTC = datetime.timezone.utc
_PSYCOPG2_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE: no transaction open

_T = models.TrialModel.__table__
_STUDIES = models.StudyModel.__table__

# A read is two statements: the trials, then everything stored about them in one UNION ALL
# by trial id (a round trip each matters: a worker reads ~10 times per trial, from a server
# that shares the CPUs with the workers); a single trial is one statement. Both select rows
# (trial_id, kind, row id, state or name or key, float, JSON, stored value type, number or
# objective or step, start, end), ordered by trial, then kind, then insertion. Ids are
# passed as a list (Optuna's loaders do the same): joined to a subquery on the trials,
# PostgreSQL's planner may scan the other tables whole. Enum columns are cast to text:
# PostgreSQL stores each as its own type, which one column cannot hold; SQLAlchemy stores
# the member's name. Written for SQLite and PostgreSQL; other databases keep Optuna's code.
_TRIAL, _PARAM, _VALUE, _USER_ATTR, _SYSTEM_ATTR, _INTERMEDIATE = range(-1, 5)
_FLOAT = sa.Float(precision=53)
_ORDER = tuple(sa.literal_column(c) for c in ("trial_id", "kind", "row_id"))
_CHUNK = 500  # ids per statement: what Optuna's loaders send, an IN list any SQLite takes


def _null(type_: Any) -> Any:
    return sa.cast(sa.null(), type_)


def _trials_part(where: Any) -> sa.Select:
    return sa.select(
        _T.c.trial_id,
        sa.literal(_TRIAL, sa.Integer).label("kind"),
        _T.c.trial_id.label("row_id"),
        sa.cast(_T.c.state, sa.String).label("key_"),
        _null(_FLOAT).label("num"),
        _null(sa.Text).label("json"),
        _null(sa.String).label("vtype"),
        _T.c.number.label("pos"),
        _T.c.datetime_start.label("started"),  # typed: SQLite's text becomes a datetime
        _T.c.datetime_complete.label("completed"),
    ).where(where)


def _related_part(kind: int, model: Any, row_id: str, which: Any, *, name: str = "",
                  number: str = "", text: str = "", value_type: str = "",
                  index: str = "") -> sa.Select:
    table = model.__table__

    def column(column_name: str, type_: Any) -> Any:
        return table.c[column_name] if column_name else _null(type_)

    return sa.select(
        table.c.trial_id,
        sa.literal(kind, sa.Integer).label("kind"),
        table.c[row_id].label("row_id"),
        column(name, sa.String).label("key_"),
        column(number, _FLOAT).label("num"),
        column(text, sa.Text).label("json"),
        (sa.cast(table.c[value_type], sa.String) if value_type else _null(sa.String))
        .label("vtype"),
        column(index, sa.Integer).label("pos"),
        _null(sa.DateTime).label("started"),
        _null(sa.DateTime).label("completed"),
    ).where(which(table.c.trial_id))


def _related_parts(which: Any) -> list[sa.Select]:
    """Everything stored about the trials whose id satisfies ``which(trial_id_column)``."""
    return [
        _related_part(_PARAM, models.TrialParamModel, "param_id", which, name="param_name",
                      number="param_value", text="distribution_json"),
        _related_part(_VALUE, models.TrialValueModel, "trial_value_id", which,
                      number="value", value_type="value_type", index="objective"),
        _related_part(_USER_ATTR, models.TrialUserAttributeModel, "trial_user_attribute_id",
                      which, name="key", text="value_json"),
        _related_part(_SYSTEM_ATTR, models.TrialSystemAttributeModel,
                      "trial_system_attribute_id", which, name="key", text="value_json"),
        _related_part(_INTERMEDIATE, models.TrialIntermediateValueModel,
                      "trial_intermediate_value_id", which, number="intermediate_value",
                      value_type="intermediate_value_type", index="step"),
    ]


def _trials_statement(where: Any) -> sa.Select:
    return _trials_part(where).order_by(_T.c.trial_id)


_VALUE_TYPE = models.TrialValueModel.TrialValueType
_INTERMEDIATE_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType
_IN_STUDY = _T.c.study_id == sa.bindparam("study_id")
_ABOVE = _T.c.trial_id > sa.bindparam("above")
_INCLUDED_OR_ABOVE = sa.or_(_T.c.trial_id.in_(sa.bindparam("ids", expanding=True)), _ABOVE)
# What Optuna's cache asks for (all states: every trial, the newer ones, or those and some
# unfinished older ones), built once: building a statement costs more than running it.
_ALL_STATES = {
    condition: _trials_statement(
        _IN_STUDY if condition is None else sa.and_(_IN_STUDY, condition)
    )
    for condition in (None, _ABOVE, _INCLUDED_OR_ABOVE)
}
_RELATED = sa.union_all(
    *_related_parts(lambda trial_id: trial_id.in_(sa.bindparam("ids", expanding=True)))
).order_by(*_ORDER)
_ONE_TRIAL = sa.union_all(
    _trials_part(_T.c.trial_id == sa.bindparam("trial_id")),
    *_related_parts(lambda trial_id: trial_id == sa.bindparam("trial_id")),
).order_by(*_ORDER)
_STUDY_EXISTS = sa.select(_STUDIES.c.study_id).where(
    _STUDIES.c.study_id == sa.bindparam("study_id")
)
_SA = models.StudyUserAttributeModel.__table__
_STUDY_ATTR = sa.select(_SA.c.value_json).where(
    _SA.c.study_id == sa.bindparam("study_id"), _SA.c.key == sa.bindparam("key")
)
_HB = models.TrialHeartbeatModel.__table__
_BEATS = (
    sa.select(_T.c.trial_id, _HB.c.heartbeat, sa.func.now())  # now(): as Optuna's check reads it
    .select_from(_T.join(_HB, _HB.c.trial_id == _T.c.trial_id))
    .where(_T.c.study_id == sa.bindparam("study_id"), _T.c.state == TrialState.RUNNING)
    .order_by(_T.c.trial_id)
)
_to_value = models.TrialValueModel.stored_repr_to_value
_to_intermediate = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value


class PlainSqlTrialReads:
    """Mixin for an ``RDBStorage`` subclass (list it before ``RDBStorage`` among the bases):
    its trial reads (``_get_trials``, which Optuna's ``_CachedStorage`` calls, and
    ``get_trial``) use :func:`read_trials` and :func:`read_trial`; the heartbeat check
    (``_get_stale_trial_ids``) is one statement; and :meth:`read_study_user_attr` reads one
    study attribute."""

    if TYPE_CHECKING:  # what the mixin uses of RDBStorage
        engine: sa.Engine
        heartbeat_interval: int | None
        grace_period: int | None

        def get_study_user_attrs(self, study_id: int) -> dict[str, Any]: ...

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        if self.engine.dialect.name not in _DIALECTS:
            return super()._get_trials(  # type: ignore[misc]
                study_id, states, included_trial_ids, trial_id_greater_than
            )
        return read_trials(self, study_id, states, included_trial_ids,  # type: ignore[arg-type]
                           trial_id_greater_than)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        if self.engine.dialect.name not in _DIALECTS:
            return super().get_trial(trial_id)  # type: ignore[misc]
        return read_trial(self, trial_id)  # type: ignore[arg-type]

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's check (RUNNING trials whose heartbeat is older than the grace period by
        the database's clock) in one statement: the trials, their heartbeats and the clock."""
        if self.engine.dialect.name not in _DIALECTS:
            return super()._get_stale_trial_ids(study_id)  # type: ignore[misc]
        assert self.heartbeat_interval is not None  # only called with heartbeats on
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        with _reading(self) as connection:  # type: ignore[arg-type]
            rows = connection.execute(_BEATS, {"study_id": study_id}).all()
        stale = []
        for trial_id, beat, now in rows:
            if now.replace(tzinfo=None) - beat > datetime.timedelta(seconds=grace):
                stale.append(trial_id)
        return stale

    def read_study_user_attr(self, study_id: int, key: str) -> Any:
        """One user attribute of a study, None when unset: ``get_study_user_attrs`` parses
        them all, the stored study config included, to return one.

        Raises:
            KeyError: no study ``study_id``.
        """
        if self.engine.dialect.name not in _DIALECTS:
            return self.get_study_user_attrs(study_id).get(key)
        args = {"study_id": study_id, "key": key}
        with _reading(self) as connection:  # type: ignore[arg-type]
            value = connection.execute(_STUDY_ATTR, args).scalar()
            if value is None and connection.execute(_STUDY_EXISTS, args).first() is None:
                raise KeyError(models.NOT_FOUND_MSG)  # what Optuna raises for no such study
        return None if value is None else json.loads(value)


def read_trials(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    states: Container[TrialState] | None,
    included_trial_ids: set[int],
    trial_id_greater_than: int,
) -> list[FrozenTrial]:
    """What ``RDBStorage._get_trials`` returns (same arguments): the study's trials in
    ``states`` whose id is in ``included_trial_ids`` or above ``trial_id_greater_than``
    (all of them when it is -1), ordered by trial id.

    Raises:
        KeyError: no study ``study_id``.
    """
    included = {i for i in included_trial_ids if i <= trial_id_greater_than}
    args = {"study_id": study_id, "above": trial_id_greater_than, "ids": sorted(included)}
    if included and trial_id_greater_than > -1:
        which = _INCLUDED_OR_ABOVE
    elif trial_id_greater_than > -1:
        which = _ABOVE
    else:
        which = None
    if states is None:
        every, filtered = _ALL_STATES[None], _ALL_STATES[which]
    else:
        assert isinstance(states, Iterable)
        subset = sa.and_(_IN_STUDY, _T.c.state.in_(states))
        every = _trials_statement(subset)
        filtered = every if which is None else _trials_statement(sa.and_(subset, which))
    with _reading(storage) as connection:
        try:
            rows = connection.execute(filtered, args).all()
        except sqlalchemy.exc.OperationalError as exc:
            if exc.connection_invalidated or connection.dialect.name != "sqlite":
                raise  # the storage went away (the caller retries), or a real error
            # Too many ids for the IN list (SQLite's variable limit): what Optuna falls back
            # to as well.
            rows = [
                r for r in connection.execute(every, args).all()
                if r.trial_id in included or r.trial_id > trial_id_greater_than
            ]
        if not rows:
            if connection.execute(_STUDY_EXISTS, args).first() is None:
                raise KeyError(models.NOT_FOUND_MSG)  # what Optuna raises for no such study
            return []
        ids = [row.trial_id for row in rows]  # ascending: so is each chunk's output
        related = [
            row
            for start in range(0, len(ids), _CHUNK)
            for row in connection.execute(_RELATED, {"ids": ids[start:start + _CHUNK]})
        ]
    return _build(heapq.merge(rows, related, key=lambda r: (r.trial_id, r.kind, r.row_id)))


def read_trial(storage: optuna.storages.RDBStorage, trial_id: int) -> FrozenTrial:
    """What ``RDBStorage.get_trial`` returns.

    Raises:
        KeyError: no trial ``trial_id``.
    """
    with _reading(storage) as connection:
        trials = _build(connection.execute(_ONE_TRIAL, {"trial_id": trial_id}))
    if not trials:
        raise KeyError(models.NOT_FOUND_MSG)
    return trials[0]


@contextmanager
def _reading(storage: optuna.storages.RDBStorage) -> Iterator[sa.Connection]:
    """The connection of this thread's session (the session Optuna's reads use: its errors
    become StorageInternalError).

    On PostgreSQL with psycopg2 at READ COMMITTED (the server's default) the reads run in
    autocommit mode, as SQLAlchemy's own pre-ping does: psycopg2 would otherwise send BEGIN
    and COMMIT as two more round trips per read, and at READ COMMITTED every statement sees
    its own snapshot in a transaction or not, so the rows read are the same.
    """
    with _create_scoped_session(storage.scoped_session) as session:
        connection = session.connection()
        dbapi = connection.connection.dbapi_connection
        toggle = (
            connection.dialect.driver == "psycopg2"
            and connection.dialect.default_isolation_level == "READ COMMITTED"
            and dbapi is not None
            and not dbapi.autocommit
            and dbapi.get_transaction_status() == _PSYCOPG2_IDLE
        )
        if toggle:
            dbapi.autocommit = True
        try:
            yield connection
        finally:
            if toggle and not dbapi.closed:
                dbapi.autocommit = False


def _build(rows: Iterable[Any]) -> list[FrozenTrial]:
    """FrozenTrials from a read's rows (the conversions of
    ``RDBStorage._build_frozen_trial_from_trial_model``)."""
    trials = []
    parts: dict[str, Any] = {}
    for row in rows:
        kind = row.kind
        if kind == _TRIAL:
            parts = {"trial": row, "distributions": {}, "params": {}, "values": {},
                     "user_attrs": {}, "system_attrs": {}, "intermediate": {}}
            trials.append(parts)
        elif not parts or row.trial_id != parts["trial"].trial_id:
            continue  # not one of the trials read (cannot happen within one statement)
        elif kind == _PARAM:
            distribution = json_to_distribution(row.json)
            parts["distributions"][row.key_] = distribution
            parts["params"][row.key_] = distribution.to_external_repr(row.num)
        elif kind == _VALUE:
            parts["values"][row.pos] = _to_value(row.num, _VALUE_TYPE[row.vtype])
        elif kind == _USER_ATTR:
            parts["user_attrs"][row.key_] = json.loads(row.json)
        elif kind == _SYSTEM_ATTR:
            parts["system_attrs"][row.key_] = json.loads(row.json)
        else:
            parts["intermediate"][row.pos] = _to_intermediate(
                row.num, _INTERMEDIATE_TYPE[row.vtype]
            )
    return [_frozen(p) for p in trials]


def _frozen(parts: dict[str, Any]) -> FrozenTrial:
    trial, values = parts["trial"], parts["values"]
    trial_values: list[float] | None = None
    if values:
        trial_values = [0.0] * len(values)
        for objective, value in values.items():
            trial_values[objective] = value
    return FrozenTrial(
        number=trial.pos,
        state=TrialState[trial.key_],
        value=None,
        values=trial_values,
        datetime_start=_local(trial.started),
        datetime_complete=_local(trial.completed),
        params=parts["params"],
        distributions=parts["distributions"],
        user_attrs=parts["user_attrs"],
        system_attrs=parts["system_attrs"],
        intermediate_values=parts["intermediate"],
        trial_id=trial.trial_id,
    )


def _local(stored: datetime.datetime | None) -> datetime.datetime | None:
    """Stored naive UTC -> naive local time (``TrialModel.datetime_start``'s conversion)."""
    if stored is None:
        return None
    return stored.replace(tzinfo=_UTC).astimezone().replace(tzinfo=None)
