"""Temporary SQLite studies with hand-made trials (no training) for the comparison tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hpo.config.study import (
    BaselineConfig,
    HeartbeatConfig,
    PrunerConfig,
    SamplerConfig,
    StudyConfig,
)

FIXED = {"model": "fc", "dataset": "mnist", "epochs": 1, "train_subset": 2000}
PRECISIONS = ["float32", "bfloat16"]


def make_config(name: str, url: str, *, search_derivative: bool = True) -> StudyConfig:
    space: dict[str, Any] = {"precision": CategoricalDistribution(PRECISIONS)}
    if search_derivative:
        space = {"relu_prime_zero": FloatDistribution(0.0, 1.0), **space}
    return StudyConfig(
        name=name, direction="maximize", metric="val_accuracy", storage=url, n_trials=10,
        timeout=None, sampler=SamplerConfig("random", {"seed": 0}),
        pruner=PrunerConfig("none", {}), heartbeat=HeartbeatConfig(),
        fixed=dict(FIXED), search_space=space,
        baseline=BaselineConfig(seeds=(0, 1, 2), params={}), source="<test>",
    )


class StudyBuilder:
    """Adds trials the way the service records them (params, hpo_* and metric user attrs)."""

    def __init__(self, tmp_path: Path, name: str, *, search_derivative: bool = True,
                 url: str | None = None) -> None:
        self.url = url or f"sqlite:///{tmp_path / 'studies.db'}"
        self.cfg = make_config(name, self.url, search_derivative=search_derivative)
        self.study = optuna.create_study(study_name=name, storage=self.url,
                                         direction="maximize", load_if_exists=True)
        self.study.set_user_attr("hpo_config", self.cfg.to_dict())

    def add(self, *, precision: str = "float32", rpz: float | None = 0.0, seed: int = 0,
            acc: float | None = 0.95, baseline: bool = False, twin_of: int | None = None,
            state: TrialState = TrialState.COMPLETE, diverged: bool = False,
            kink_hits: int | None = 4000, test: bool = True, sha: str | None = None,
            platform: dict[str, Any] | None = None) -> int:
        """Add one trial; ``acc`` (fraction) is both its value and its test accuracy;
        ``sha`` its params_sha256 and ``platform`` its platform record, when given."""
        params: dict[str, Any] = {"precision": precision}
        dists: dict[str, Any] = {"precision": self.cfg.search_space["precision"]}
        if "relu_prime_zero" in self.cfg.search_space:
            params["relu_prime_zero"] = rpz
            dists["relu_prime_zero"] = self.cfg.search_space["relu_prime_zero"]
        attrs: dict[str, Any] = {"hpo_baseline": baseline, "hpo_seed": seed,
                                 "diverged": diverged, "precision": precision}
        if twin_of is not None:
            attrs["hpo_twin_of"] = twin_of
        if sha is not None:
            attrs["params_sha256"] = sha
        if platform is not None:
            attrs["platform"] = platform
        if kink_hits is not None:
            attrs["kink_hits"] = kink_hits
            attrs["kink_hits_per_epoch"] = [kink_hits]
        complete = state == TrialState.COMPLETE
        if complete and test:
            attrs["test_accuracy"] = acc
        number = len(self.study.get_trials(deepcopy=False))
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=acc if complete else None,
            user_attrs=attrs, state=state,
        ))
        return number


def run_compare_cli(argv):
    """``hpo compare ...`` through its own parser, in this process."""
    import argparse

    from hpo.cli import compare_cmd

    parser = argparse.ArgumentParser(prog="hpo")
    compare_cmd.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)
