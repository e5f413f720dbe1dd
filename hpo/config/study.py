"""Study YAML files -> frozen, validated config objects.

Everything a user can get wrong in a study file is checked here, before anything touches a
database, and reported as one line: ``<file>: <key.path>: <problem> (got <value>); allowed:
...; fix: ...`` (a :class:`~hpo.errors.ConfigError`). The checks live in
:mod:`hpo.config.schema` (the file's layout), :mod:`hpo.config.search_space` (distributions,
grids, baselines), :mod:`hpo.config.samplers` (sampler/pruner options and factories) and
:mod:`hpo.config.yamlfile` (parsing, message format); this module holds the typed objects and
re-exports the factories.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    distribution_to_json,
    json_to_distribution,
)

from hpo.config import schema as config_schema
from hpo.config.samplers import make_pruner, make_sampler
from hpo.config.search_space import expand_baseline, parse_search_space
from hpo.config.yamlfile import read_yaml
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "BaselineConfig",
    "HeartbeatConfig",
    "ProbeConfig",
    "PrunerConfig",
    "SamplerConfig",
    "StudyConfig",
    "load_study_config",
    "make_pruner",
    "make_sampler",
    "parse_search_space",
]

logger = logging.getLogger(__name__)

CONFIG_FORMAT = 1  # bump when to_dict's layout changes incompatibly


@dataclass(frozen=True)
class SamplerConfig:
    """Which Optuna sampler explores the search space.

    Attributes:
        name: one of ``tpe``, ``random``, ``grid``, ``cmaes``, ``gp``.
        options: keyword arguments for the sampler class (``seed`` among them).
        grid: for ``grid`` only, the values of every searched parameter (built from the
            search space when the file is loaded).
    """

    name: str = "tpe"
    options: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] | None = None


@dataclass(frozen=True)
class PrunerConfig:
    """Which Optuna pruner stops bad trials early (``none``, ``median``, ``hyperband``,
    ``successive_halving``) and its keyword arguments."""

    name: str = "median"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatConfig:
    """Worker liveness: a running trial whose worker sent no heartbeat for ``grace`` seconds
    is marked failed and re-queued with the same parameters, at most ``max_retry`` times."""

    interval: int = 10
    grace: int = 30
    max_retry: int = 3


@dataclass(frozen=True)
class BaselineConfig:
    """Runs with PyTorch's own derivatives at the kinks.

    ``mode: fixed`` (the default): one run per (combination, seed), enqueued when the study is
    created. ``mode: paired``: no fixed runs; every search trial gets its own seed (the
    training seed + its trial number, the original trial's number for a retry) and each
    trial whose derivatives differ from PyTorch's gets a *twin*: the same settings and seed
    (hence the same initial weights and batch order) with PyTorch's derivatives, enqueued by
    the worker that runs the trial (see :mod:`hpo.study.twins`). Twins come on top of the
    budget.

    Attributes:
        seeds: the training seeds of the baseline runs (fixed mode; empty when paired).
        params: values for searched parameters other than the derivatives (fixed mode).
        mode: ``fixed`` or ``paired``.
    """

    seeds: tuple[int, ...] = (0,)
    params: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "fixed"

    @property
    def paired(self) -> bool:
        return self.mode == "paired"


@dataclass(frozen=True)
class ProbeConfig:
    """The bifurcation probe run by ``objective: probe`` studies
    (:func:`hpo.engine.probe.bifurcation.run_probe`): ``inits`` initialisations, ReLU'(0) =
    ``alphas[0]`` against ``alphas[1]``,
    gradients of the ``first`` parameterised layer (``first_weight``: its weight alone) or of
    ``all`` parameters, on ``hpo train``'s training ``split`` or on ``all`` the training
    images."""

    inits: int = 4
    alphas: tuple[float, float] = (0.0, 1.0)
    compare: str = "first"
    train_set: str = "split"


@dataclass(frozen=True)
class StudyConfig:
    """One validated study file. Build it with :func:`load_study_config` or
    :meth:`from_dict`; constructing it directly skips validation."""

    name: str
    direction: str
    metric: str
    storage: str | None  # None: the project default (resolved when the storage opens)
    n_trials: int
    timeout: float | None
    sampler: SamplerConfig
    pruner: PrunerConfig
    heartbeat: HeartbeatConfig
    fixed: Mapping[str, Any]
    search_space: Mapping[str, BaseDistribution]
    baseline: BaselineConfig | None
    source: str
    objective: str = "train"  # "train" (train each trial) or "probe" (the bifurcation probe)
    probe: ProbeConfig | None = None  # set for objective "probe"
    # Named groups of settings: the searched categorical parameter ``cell`` picks one, so a
    # grid can run a list of configurations that is not a product (hpo.config.section3).
    cells: Mapping[str, Mapping[str, Any]] | None = None

    # ------------------------------------------------------------------------------
    def train_spec(self, params: Mapping[str, Any], seed: int | None = None) -> TrainSpec:
        """The training run for a trial: fixed settings, then the trial's ``params``, then
        ``seed`` (when given; otherwise the fixed seed or TrainSpec's default).

        Raises:
            ConfigError: the merged settings are not a valid :class:`TrainSpec`.
        """
        values = {**self.fixed, **params}
        if self.cells is not None and "cell" in values:
            name = values.pop("cell")
            if name not in self.cells:
                raise ConfigError(
                    f"cell {name!r} is not a cell of study {self.name!r}; allowed: "
                    f"{sorted(self.cells)}; fix: use one of them."
                )
            values.update(self.cells[name])
        if seed is not None:
            values["seed"] = seed
        return TrainSpec.from_dict(values)

    def baseline_trials(self) -> list[tuple[dict[str, Any], int]]:
        """The baseline runs as ``(params, seed)`` pairs, in a stable order.

        ``params`` holds a value for every searched parameter: PyTorch's derivative for
        ``relu_prime_zero``/``relu6_prime_six``, the ``baseline.params`` value or TrainSpec's
        default for other numeric ones, and one run per choice for categorical ones without
        a baseline value.
        """
        if self.baseline is None or self.baseline.paired:
            return []
        return [
            (params, seed)
            for params in expand_baseline(self.fixed, self.search_space, self.baseline.params)
            for seed in self.baseline.seeds
        ]

    @property
    def total_budget(self) -> int:
        """Search trials plus baseline trials: the number of finished trials a study needs
        (in paired mode the twins come on top: one per trial with tuned derivatives)."""
        return self.n_trials + len(self.baseline_trials())

    # ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (the storage URL as given: :mod:`hpo.study.create` masks
        its password before storing it)."""
        return {
            "format": CONFIG_FORMAT,
            "name": self.name,
            "direction": self.direction,
            "metric": self.metric,
            "storage": self.storage,
            "n_trials": self.n_trials,
            "timeout": self.timeout,
            "sampler": {
                "name": self.sampler.name,
                "options": dict(self.sampler.options),
                "grid": (
                    None
                    if self.sampler.grid is None
                    else {k: list(v) for k, v in self.sampler.grid.items()}
                ),
            },
            "pruner": {"name": self.pruner.name, "options": dict(self.pruner.options)},
            "heartbeat": {
                "interval": self.heartbeat.interval,
                "grace": self.heartbeat.grace,
                "max_retry": self.heartbeat.max_retry,
            },
            "train": dict(self.fixed),
            "search_space": {
                name: json.loads(distribution_to_json(dist))
                for name, dist in self.search_space.items()
            },
            "baseline": _baseline_dict(self.baseline),
            "source": self.source,
            # Written for probe studies only, so configs stored before these keys existed
            # still compare equal to the same file loaded now.
            **(
                {}
                if self.objective == "train"
                else {"objective": self.objective, "probe": _probe_dict(self.probe)}
            ),
            **(
                {}
                if self.cells is None
                else {"cells": {k: dict(v) for k, v in self.cells.items()}}
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyConfig:
        """Rebuild a config written by :meth:`to_dict`.

        Raises:
            ConfigError: ``d`` is not a config written by :meth:`to_dict` of this version.
        """
        try:
            if d.get("format") != CONFIG_FORMAT:
                raise ConfigError(
                    f"stored study config has format {d.get('format')!r}; this version of "
                    f"reluprime-hpo reads format {CONFIG_FORMAT}; fix: create a new study "
                    "(new name) or use the matching reluprime-hpo version."
                )
            sampler = d["sampler"]
            grid = sampler.get("grid")
            baseline = d["baseline"]
            return cls(
                name=d["name"],
                direction=d["direction"],
                metric=d["metric"],
                storage=d["storage"],
                n_trials=d["n_trials"],
                timeout=d["timeout"],
                sampler=SamplerConfig(
                    name=sampler["name"],
                    options=dict(sampler["options"]),
                    grid=None if grid is None else {k: tuple(v) for k, v in grid.items()},
                ),
                pruner=PrunerConfig(name=d["pruner"]["name"], options=dict(d["pruner"]["options"])),
                heartbeat=HeartbeatConfig(**d["heartbeat"]),
                fixed=dict(d["train"]),
                search_space={
                    name: json_to_distribution(json.dumps(js))
                    for name, js in d["search_space"].items()
                },
                baseline=(
                    None
                    if baseline is None
                    else BaselineConfig(
                        seeds=tuple(baseline.get("seeds", ())),
                        params=dict(baseline.get("params", {})),
                        mode=baseline.get("mode", "fixed"),
                    )
                ),
                source=d["source"],
                objective=d.get("objective", "train"),
                probe=None if d.get("probe") is None else ProbeConfig(
                    inits=d["probe"]["inits"],
                    alphas=tuple(d["probe"]["alphas"]),
                    compare=d["probe"]["compare"],
                    train_set=d["probe"].get("train_set", "split"),
                ),
                cells=None if d.get("cells") is None else {
                    k: dict(v) for k, v in d["cells"].items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"stored study config is incomplete or corrupt ({type(exc).__name__}: {exc}); "
                "fix: create the study again under a new name."
            ) from exc


# ----------------------------------------------------------------------------------
def load_study_config(
    path: str | os.PathLike[str], *, storage_override: str | None = None
) -> StudyConfig:
    """Read and validate a study YAML file.

    Args:
        path: the YAML file.
        storage_override: a storage URL that replaces the file's ``storage:`` (e.g. the
            ``--storage`` flag, resolved with
            :func:`hpo.storage.urls.resolve_storage_url`).

    Raises:
        ConfigError: the file is missing, is not valid YAML, or any setting is invalid.
    """
    source = str(path)
    raw = read_yaml(path)
    v = config_schema.validate(raw, source=source, storage_override=storage_override)
    return StudyConfig(
        name=v["name"],
        direction=v["direction"],
        metric=v["metric"],
        storage=v["storage"],
        n_trials=v["n_trials"],
        timeout=v["timeout"],
        sampler=SamplerConfig(**v["sampler"]),
        pruner=PrunerConfig(**v["pruner"]),
        heartbeat=HeartbeatConfig(**v["heartbeat"]),
        fixed=v["train"],
        search_space=v["search_space"],
        baseline=None if v["baseline"] is None else BaselineConfig(**v["baseline"]),
        source=source,
        objective=v["objective"],
        probe=None if v["probe"] is None else ProbeConfig(**v["probe"]),
    )


def _baseline_dict(baseline: BaselineConfig | None) -> dict[str, Any] | None:
    # Each mode writes the keys its YAML has (fixed: seeds, params; paired: mode only).
    if baseline is None:
        return None
    if baseline.paired:
        return {"mode": baseline.mode}
    return {"seeds": list(baseline.seeds), "params": dict(baseline.params)}


def _probe_dict(probe: ProbeConfig | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    out = {"inits": probe.inits, "alphas": list(probe.alphas), "compare": probe.compare}
    if probe.train_set != "split":  # written only when set: stored configs stay equal
        out["train_set"] = probe.train_set
    return out


# ----------------------------------------------------------------------------------
