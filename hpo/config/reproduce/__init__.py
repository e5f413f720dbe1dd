"""Published experiments as ordinary studies: one module per reproduction.

Each module turns a command's options into a plan (what runs, its study name) and the plan
into a validated :class:`~hpo.config.StudyConfig` that ``hpo.worker.local.run_study`` runs
like any study file. Bertoin et al.: ``section3`` (bifurcation sweeps), ``section4``
(CIFAR10/SVHN accuracy per ReLU'(0)). The EPFL reproduction: ``epfl_initial``, ``epfl_fc``,
``epfl_hpo``, ``epfl_volume``. ``grid``: the study shape the grid targets share.
"""

__all__ = [
    "epfl_fc", "epfl_hpo", "epfl_initial", "epfl_volume", "grid", "section3", "section4",
]
