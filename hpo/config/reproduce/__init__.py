"""Published experiments as ordinary studies: one module per reproduction.

Each module turns a command's options into a plan (what runs, its study name) and the plan
into a validated :class:`~hpo.config.StudyConfig` that ``hpo.worker.local.run_study`` runs
like any study file. ``section3``: Bertoin et al.'s Section 3 bifurcation sweeps.
"""

__all__ = ["section3"]
