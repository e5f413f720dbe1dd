"""What a trial's user attributes hold, how to write them, and how to read them back.

A training trial's measurements are one user attribute, ``result`` (a JSON object: one
storage write), with :data:`HEADLINE` and the inputs (``hpo_seed``, ``hpo_baseline``, twin
links, worker marker, fail reason) as attributes of their own; a probe trial stores each
measurement on its own. :func:`trial_attrs` also reads the older one-attribute-per-field
layout. Why: docs/design.md#trial-attributes
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna

__all__ = ["HEADLINE", "RESULT_ATTR", "json_safe", "set_user_attrs", "trial_attrs"]

#: The user attribute holding a finished (or pruned) training run's measurements.
RESULT_ATTR = "result"
#: Measurements stored as attributes of their own too (shown by the dashboard at a glance).
HEADLINE = ("test_accuracy", "kink_hits")


def trial_attrs(user_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's user attributes with the fields of its ``result`` attribute inlined (an
    attribute of its own wins over a ``result`` field of the same name)."""
    merged = {key: value for key, value in user_attrs.items() if key != RESULT_ATTR}
    nested = user_attrs.get(RESULT_ATTR)
    if isinstance(nested, Mapping):
        for key, value in nested.items():
            merged.setdefault(key, value)
    return merged


def set_user_attrs(
    trial: optuna.trial.BaseTrial,
    attrs: Mapping[str, Any],
    known: Mapping[str, Any] | None = None,
) -> None:
    """Set several user attributes (``trial.set_user_attr``, one storage write each), leaving
    out those that ``known`` (the trial's attrs as already read) holds with the same value:
    a baseline or a re-queued trial already carries its inputs."""
    known = known or {}
    for key, value in attrs.items():
        if key in known and known[key] == value:
            continue
        trial.set_user_attr(key, value)


def json_safe(value: Any) -> Any:
    """Storage attributes are JSON: NaN and infinities become None (also inside lists and
    dicts)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value
