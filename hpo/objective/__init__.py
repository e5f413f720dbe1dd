"""Objectives: an Optuna trial -> one engine run -> the trial's user attributes.

``hpo.objective.train.make_objective(cfg)`` builds the callable a worker optimizes;
:mod:`.probe` is ``objective: probe`` (a bifurcation probe per trial); :mod:`.attrs` reads
what a trial stored.
"""

__all__ = ["attrs", "probe", "train"]
