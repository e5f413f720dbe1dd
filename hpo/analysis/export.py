"""Study trials -> CSV, one row per trial, from Optuna's ``Study.trials_dataframe``.

Optuna's column names, readable without parsing Python reprs: ``duration_s``, one column per
epoch for per-epoch lists, ``platform_<field>`` and ``platform_flags_<flag>`` columns, JSON
for other lists and dicts, a training trial's ``result`` fields as ``user_attrs_<field>``,
and ``fail_reason``. The columns every analysis needs come first.
See docs/design.md#exported-csv-columns.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo.objective.attrs import RESULT_ATTR
from hpo.study.requeue import fail_reason

__all__ = ["export_all", "export_study", "trials_frame"]

log = logging.getLogger(__name__)

_PLATFORM_ATTR = "platform"  # the trial's platform record (hpo.objective)

_ATTRS = (
    "number",
    "state",
    "value",
    "datetime_start",
    "datetime_complete",
    "duration",
    "params",
    "user_attrs",
)
_FIRST = (
    "number",
    "state",
    "value",
    "fail_reason",
    "user_attrs_hpo_baseline",
    "user_attrs_hpo_seed",
    "user_attrs_hpo_twin_of",  # paired mode: a twin's tuned trial
    "user_attrs_hpo_twin",  # paired mode: a tuned trial's twin (its hpo_twin_of)
)


def _inline_result(df: pd.DataFrame) -> pd.DataFrame:
    """The fields of the ``result`` attribute (:mod:`hpo.objective.attrs`) as the columns
    ``user_attrs_<field>`` that older studies, which stored them one by one, also have."""
    nested = df.pop(f"user_attrs_{RESULT_ATTR}")
    fields = pd.DataFrame(
        [v if isinstance(v, dict) else {} for v in nested], index=df.index
    ).add_prefix("user_attrs_")
    for column in fields.columns:
        if column in df:  # an attribute of its own wins (as in trial_attrs)
            df[column] = df[column].where(df[column].notna(), fields[column])
        else:
            df[column] = fields[column]
    return df


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """The study's trials as a flat table (columns: docs/design.md#exported-csv-columns)."""
    trials = study.get_trials(deepcopy=False)
    df = study.trials_dataframe(attrs=_ATTRS)
    with warnings.catch_warnings():  # metric_names is experimental in Optuna 4 and 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        names = study.metric_names
    if names and len(names) == 1:
        # A named objective (hpo create names it after `metric:`) makes Optuna call the
        # column value_<name>; the export keeps its documented `value`.
        df = df.rename(columns={f"value_{names[0]}": "value"})
    if df.empty:
        return pd.DataFrame(columns=[c for c in _FIRST if not c.startswith("user_attrs")])
    reasons = {t.number: fail_reason(t) for t in trials}
    df["fail_reason"] = df["number"].map(reasons)
    if f"user_attrs_{RESULT_ATTR}" in df:
        df = _inline_result(df)
    platform = _platform_columns(df)
    if "duration" in df:
        # Unfinished trials have no duration: a column of only those is not timedelta-typed.
        df["duration_s"] = pd.to_timedelta(df.pop("duration")).dt.total_seconds()
    for column in list(df.columns):
        values = df[column]
        if not values.map(lambda v: isinstance(v, (list, tuple, dict))).any():
            continue
        if values.map(_is_number_list_or_missing).all():
            df = _expand(df, column)
        else:
            df[column] = values.map(_to_json)
    first = [c for c in _FIRST if c in df.columns]
    df = df[first + [c for c in df.columns if c not in first]]
    return pd.concat([df, platform], axis=1) if platform is not None else df


def export_study(study: optuna.Study, path: str | Path) -> int:
    """Write ``study``'s trials to the CSV file ``path`` (parents created); return the rows."""
    df = trials_frame(study)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    log.debug("wrote %d trials of %s to %s", len(df), study.study_name, out)
    return len(df)


def export_all(storage: optuna.storages.BaseStorage, directory: str | Path) -> list[Path]:
    """Write one ``<study name>.csv`` per study in ``storage`` into ``directory``."""
    out_dir = Path(directory)
    paths = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        path = out_dir / f"{_safe_name(summary.study_name)}.csv"
        export_study(study, path)
        paths.append(path)
    return paths


def _platform_columns(df: pd.DataFrame) -> pd.DataFrame | None:
    """Pop ``user_attrs_platform`` (a dict per trial, missing for trials that never ran)
    and return it flattened by ``pandas.json_normalize``: ``platform_<field>`` and
    ``platform_flags_<flag>`` (nested dicts joined with ``_``)."""
    column = f"user_attrs_{_PLATFORM_ATTR}"
    if column not in df:
        return None
    records = [v if isinstance(v, dict) else {} for v in df.pop(column)]
    flat = pd.json_normalize(records, sep="_")
    flat.columns = [f"{_PLATFORM_ATTR}_{c}" for c in flat.columns]
    flat.index = df.index
    return flat


def _expand(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """One column per list element, inserted where the list column was."""
    lists = df[column].map(lambda v: list(v) if isinstance(v, (list, tuple)) else [])
    width = int(lists.map(len).max())
    wide = pd.DataFrame(
        [row + [math.nan] * (width - len(row)) for row in lists],
        columns=[f"{column}_{i}" for i in range(1, width + 1)],
        index=df.index,
    )
    at = df.columns.get_loc(column)
    return pd.concat([df.iloc[:, :at], wide, df.iloc[:, at + 1:]], axis=1)


def _is_number_list_or_missing(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(
            v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in value
        )
    return value is None or (isinstance(value, float) and math.isnan(value))


def _to_json(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "study"
