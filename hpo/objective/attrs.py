"""What a trial's user attributes hold, and how to read them whichever way they were stored.

A training trial's measurements (per-epoch accuracies and kink hits, fingerprint,
precision, device, timings, ...) are written when it ends as **one** user attribute,
``result`` (a JSON object): one storage write instead of one per field, since every
``trial.set_user_attr`` is a transaction of its own. The two headline numbers,
:data:`HEADLINE` (``test_accuracy`` and ``kink_hits``), are attributes of their own as well,
so the dashboard's trial page shows them at a glance. So are the attributes set around the
run, which workers, the re-queue and the twins read one by one: the inputs
``hpo_baseline`` and ``hpo_seed``, the twin links ``hpo_twin_of``/``hpo_twin``, the worker
marker and the fail reason.

A probe trial (:mod:`hpo.objective.probe`) stores its measurements as attributes of their
own: it runs for minutes, so a dozen writes are nothing beside it.

Studies written by earlier versions hold the measurements as separate attributes;
:func:`trial_attrs` reads both layouts, and the CSV export
(:mod:`hpo.analysis.export`) gives both the same columns (``user_attrs_<field>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["HEADLINE", "RESULT_ATTR", "trial_attrs"]

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
