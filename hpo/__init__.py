"""reluprime-hpo: treat ReLU'(0) as a hyperparameter and measure when it matters.

The Python API is the command line's own: each ``hpo`` command is one function here
(``hpo run`` is :func:`run_study`, ``hpo compare`` is :func:`compare`, ...), re-exported from
the layer that implements it. ``import hpo`` stays cheap: a name is imported when first used
(PEP 562), so torch and Optuna load only then. Example: README "## From Python".
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> (module, attribute): the layer that implements it.
_EXPORTS: dict[str, tuple[str, str]] = {
    # load a study config from a YAML path or a dict (storage and n_trials settled)
    "load_study_config": ("hpo.worker.local", "load_config"),
    # hpo create: create the study and queue its baseline trials -> optuna.Study
    "create_study": ("hpo.worker.local", "create"),
    # hpo run: create the study and run N local worker processes -> StudyRun
    "run_study": ("hpo.worker.local", "run_study"),
    # hpo status: trial counts, best trial, baseline -> StudySnapshot
    "study_status": ("hpo.worker.local", "status"),
    # hpo export: the trials as a pandas DataFrame (and a CSV file if asked)
    "trials_dataframe": ("hpo.analysis.api", "export"),
    # hpo compare: tuned vs default derivatives -> CompareResult (.table: a DataFrame)
    "compare": ("hpo.analysis.api", "compare"),
    # hpo probe: how often two ReLU'(0) values give different gradients -> ProbeResult
    "probe": ("hpo.engine.probe.bifurcation", "run_probe"),
    # hpo diverge: L1 distance between weights trained with different ReLU'(0)
    "diverge": ("hpo.analysis.diverge", "run_divergence"),
    # hpo reproduce section3: the paper's Section 3 as a study, and its report
    "reproduce_section3": ("hpo.analysis.api", "reproduce_section3"),
    # hpo reproduce section4: the paper's CIFAR10/SVHN protocols as studies, beside its numbers
    "reproduce_section4": ("hpo.analysis.reproduce.section4", "reproduce_section4"),
    # hpo reproduce epfl-*: the EPFL reproduction's experiments, beside its numbers
    "reproduce_epfl_initial": ("hpo.analysis.reproduce.epfl_initial", "reproduce_epfl_initial"),
    "reproduce_epfl_fc": ("hpo.analysis.reproduce.epfl_fc", "reproduce_epfl_fc"),
    "reproduce_epfl_hpo": ("hpo.analysis.reproduce.epfl_hpo", "reproduce_epfl_hpo"),
    "reproduce_epfl_volume": ("hpo.analysis.reproduce.epfl_volume", "reproduce_epfl_volume"),
    # hpo train: one training run
    "train": ("hpo.engine.train", "train"),
    # the settings of one training run, and of a study
    "TrainSpec": ("hpo.engine.spec", "TrainSpec"),
    "StudyConfig": ("hpo.config.study", "StudyConfig"),
    # results
    "StudyRun": ("hpo.worker.local", "StudyRun"),
    "CompareResult": ("hpo.analysis.api", "CompareResult"),
    # every error hpo raises for bad input or a failed step (exit codes: .exit_code)
    "HpoError": ("hpo.errors", "HpoError"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import an API name on first use (PEP 562) and keep it."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'hpo' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
