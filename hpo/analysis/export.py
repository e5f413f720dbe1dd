"""Study trials -> a tidy CSV a notebook reads directly, one row per trial, from Optuna's
``Study.trials_dataframe``.

Every row names its ``study`` and the study's fixed training settings (``model``,
``dataset``, ``epochs`` ...), so ``hpo export --all`` concatenates into one table; accuracies
are percent (columns ``*_pct``); seeds, twin links and kink hits are integers; a training
trial's ``result`` fields are ``user_attrs_<field>`` columns; the platform columns that are
constant over the exported trials go to a side file ``<name>.platform.json`` unless kept
inline. See docs/design.md#exported-csv-columns.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo.config.study import StudyConfig
from hpo.errors import HpoError
from hpo.objective.attrs import RESULT_ATTR
from hpo.study.create import ATTR_CONFIG
from hpo.study.requeue import fail_reason

__all__ = [
    "PLATFORM_SUFFIX",
    "SETTINGS",
    "export_all",
    "export_study",
    "platform_path",
    "safe_file_name",
    "trials_frame",
    "write_frame",
]

log = logging.getLogger(__name__)

_PLATFORM_ATTR = "platform"  # the trial's platform record (hpo.objective)
#: The side file beside ``<name>.csv`` holding the platform columns constant over its rows.
PLATFORM_SUFFIX = ".platform.json"
#: Training settings on every row (with every setting the study file fixes), as the trial
#: ran them; a searched one stays ``params_<name>``, a model setting its model does not read
#: is empty.
SETTINGS = (
    "model", "dataset", "depth", "width", "activation", "precision", "normalize",
    "batch_size", "train_subset", "val_size", "optimizer", "lr", "epochs", "device",
)
# Stored as fractions (never changed in the database), exported as percent.
_PERCENT = {
    "user_attrs_test_accuracy": "user_attrs_test_accuracy_pct",
    "user_attrs_val_accuracy_per_epoch": "user_attrs_val_accuracy_pct_per_epoch",
}
_INTEGERS = (
    "user_attrs_hpo_seed", "user_attrs_hpo_twin_of", "user_attrs_hpo_twin",
    "user_attrs_kink_hits", "user_attrs_configured_activations", "user_attrs_train_samples",
)
_INTEGER_PREFIXES = ("user_attrs_kink_hits_per_epoch_", "user_attrs_kink_hits_layer_")
_LAYERS = "user_attrs_kink_hits_per_layer"  # {layer: hits per epoch} -> one total per layer

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
    "study",
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


def trials_frame(study: optuna.Study, *, inline_platform: bool = False) -> pd.DataFrame:
    """The study's trials as a flat table (columns: docs/design.md#exported-csv-columns).

    Args:
        inline_platform: keep every ``platform_*`` column in the table; by default those
            constant over the trials that carry a platform record are left out and kept in
            ``df.attrs["platform"]`` (what :func:`write_frame` writes to the side file).
    """
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
    df.insert(0, "study", study.study_name)
    reasons = {t.number: fail_reason(t) for t in trials}
    df["fail_reason"] = df["number"].map(reasons)
    if f"user_attrs_{RESULT_ATTR}" in df:
        df = _inline_result(df)
    df = _percent(df)
    if _LAYERS in df:
        df = _layer_totals(df)
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
    _integers(df, _int_params(trials))
    first = [c for c in _FIRST if c in df.columns]
    settings = _settings(study, trials, df["number"])
    rest = [c for c in df.columns if c not in first]
    df = pd.concat([df[first], settings, df[rest]], axis=1)
    if platform is None:
        return df
    constant = {} if inline_platform else _constant_platform(platform)
    df = pd.concat([df, platform.drop(columns=list(constant))], axis=1)
    if constant:
        has_record = platform.notna().any(axis=1)
        df.attrs["platform"] = {
            "study": study.study_name,
            "trials": [int(n) for n in df.loc[has_record, "number"]],
            "columns": constant,
        }
    return df


def write_frame(df: pd.DataFrame, path: str | Path) -> list[Path]:
    """Write ``df`` to the CSV file ``path`` (parents created) and, when it holds constant
    platform columns (``df.attrs["platform"]``), those to :func:`platform_path` (a stale
    side file from an earlier export is removed). Returns the files written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    side = platform_path(out)
    record = df.attrs.get("platform")
    if not record:
        side.unlink(missing_ok=True)
        return [out]
    side.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return [out, side]


def platform_path(csv_path: str | Path) -> Path:
    """``runs.csv`` -> ``runs.platform.json``: the side file of an export."""
    path = Path(csv_path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(stem + PLATFORM_SUFFIX)


def export_study(study: optuna.Study, path: str | Path, *, inline_platform: bool = False) -> int:
    """Write ``study``'s trials to the CSV file ``path`` (and its platform side file: see
    :func:`write_frame`); return the rows."""
    df = trials_frame(study, inline_platform=inline_platform)
    write_frame(df, path)
    log.debug("wrote %d trials of %s to %s", len(df), study.study_name, path)
    return len(df)


def export_all(
    storage: optuna.storages.BaseStorage, directory: str | Path, *, inline_platform: bool = False
) -> list[Path]:
    """Write one ``<study name>.csv`` per study in ``storage`` into ``directory`` (the name
    made safe by :func:`safe_file_name`); return the CSV files."""
    out_dir = Path(directory)
    paths = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        path = out_dir / f"{safe_file_name(summary.study_name)}.csv"
        export_study(study, path, inline_platform=inline_platform)
        paths.append(path)
    return paths


def _percent(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracies (stored as fractions) in percent, under names that say so."""
    for old, new in _PERCENT.items():
        if old in df:
            df[old] = df[old].map(_times_100)
            df = df.rename(columns={old: new})
    return df


def _times_100(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_times_100(v) for v in value]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return 100.0 * float(value)
    return value


def _layer_totals(df: pd.DataFrame) -> pd.DataFrame:
    """``kink_hits_per_layer`` ({layer: hits per epoch}) -> ``kink_hits_layer_<layer>``, the
    hits of each activation layer over the epochs the trial ran."""
    layers = df.pop(_LAYERS)
    totals = pd.DataFrame(
        [{name: sum(h for h in hits if h is not None) for name, hits in v.items()}
         if isinstance(v, Mapping) else {} for v in layers],
        index=df.index,
    )
    totals.columns = [f"user_attrs_kink_hits_layer_{c}" for c in totals.columns]
    return pd.concat([df, totals], axis=1)


def _int_params(trials: list[optuna.trial.FrozenTrial]) -> set[str]:
    """``params_<name>`` columns of integer parameters."""
    return {
        f"params_{name}"
        for t in trials for name, d in t.distributions.items()
        if isinstance(d, optuna.distributions.IntDistribution)
    }


def _integers(df: pd.DataFrame, more: set[str]) -> None:
    """Integer columns as pandas' nullable ``Int64`` (``2``, not ``2.0``; empty where
    missing), when every value present is a whole number."""
    for column in df.columns:
        if not (column in _INTEGERS or column in more or column.startswith(_INTEGER_PREFIXES)):
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        present = values.dropna()
        if present.size == df[column].notna().sum() and (present % 1 == 0).all():
            df[column] = values.astype("Int64")


def _settings(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial], trial_numbers: pd.Series
) -> pd.DataFrame:
    """:data:`SETTINGS` and every setting the study file fixes, as each trial ran them
    (``StudyConfig.train_spec``); nothing for a study without a stored config."""
    index = trial_numbers.index
    raw = study.user_attrs.get(ATTR_CONFIG)
    if not isinstance(raw, Mapping):
        return pd.DataFrame(index=index)
    try:
        cfg = StudyConfig.from_dict(raw)
    except HpoError as exc:
        log.warning("study %s: its stored config does not load (%s); no settings columns",
                    study.study_name, exc)
        return pd.DataFrame(index=index)
    cells = {k for cell in (cfg.cells or {}).values() for k in cell}
    keys = (set(SETTINGS) | set(cfg.fixed) | cells) - set(cfg.search_space) - {"seed", "cell"}
    by_number = {}
    for t in trials:
        try:
            seed = t.user_attrs.get("hpo_seed")
            values = cfg.train_spec(t.params, None if seed is None else int(seed)).to_dict()
        except HpoError:  # settings that no longer validate: what the file fixed
            values = dict(cfg.fixed)
        by_number[t.number] = values
    rows = [by_number.get(n, {}) for n in trial_numbers]
    order = [k for k in (*SETTINGS, *cfg.fixed, *sorted(cells)) if k in keys]
    columns = {k: pd.Series([r.get(k) for r in rows], index=index, dtype=object)
               for k in dict.fromkeys(order)}
    return pd.DataFrame({k: _typed(v) for k, v in columns.items()}, index=index)


def _typed(values: pd.Series) -> pd.Series:
    """Whole numbers as ``Int64``, other numbers as floats, anything else as is."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return values.astype("Int64")
    if present and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return values.astype(float)
    return values


def _constant_platform(platform: pd.DataFrame) -> dict[str, Any]:
    """The platform columns with one value (empty counts as a value) on every trial that
    carries a platform record (trials without one never ran, or ran with an older version),
    JSON-ready."""
    rows = platform[platform.notna().any(axis=1)]
    constant = {}
    for column in rows.columns:
        values = [_plain(v) for v in rows[column]]
        if values and len({json.dumps(v, sort_keys=True) for v in values}) == 1:
            constant[column] = values[0]
    return constant


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; a missing value as None."""
    if isinstance(value, (list, dict)):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


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


def safe_file_name(name: str) -> str:
    """``name`` as a file name every system accepts: only letters, digits, ``_``, ``.`` and
    ``-`` (anything else, e.g. the colon of ``mynet:build``, becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "study"
