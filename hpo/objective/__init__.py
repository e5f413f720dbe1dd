"""The objective layer: what one trial runs and records.

:func:`make_objective` gives the callable a worker hands each trial: :class:`Objective`
(train one run, report per epoch, prune when told) or :class:`ProbeObjective` (run the
bifurcation probe); :func:`trial_attrs` reads back what a trial recorded.
"""

from __future__ import annotations

from hpo.objective.attrs import HEADLINE, RESULT_ATTR, trial_attrs
from hpo.objective.factory import make_objective
from hpo.objective.probe import ProbeFn, ProbeObjective
from hpo.objective.train import Objective, TrainFn

__all__ = [
    "HEADLINE",
    "RESULT_ATTR",
    "Objective",
    "ProbeFn",
    "ProbeObjective",
    "TrainFn",
    "make_objective",
    "trial_attrs",
]
