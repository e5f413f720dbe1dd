"""Optuna samplers and pruners by name: their config sections, the option checks a study
file gets, and the factories workers call.

Options are checked against the constructor's own signature, so a new Optuna option works
without a change here and a misspelt one is refused before anything runs.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from hpo.config.search_space import describe, grid_values
from hpo.config.yamlfile import Checker, Shown
from hpo.errors import ConfigError, did_you_mean, one_line

__all__ = [
    "PRUNER_CLASSES",
    "SAMPLER_CLASSES",
    "PrunerConfig",
    "SamplerConfig",
    "TwinAwareGridSampler",
    "check_pruner",
    "check_sampler",
    "make_pruner",
    "make_sampler",
]

SAMPLER_CLASSES = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
}
PRUNER_CLASSES = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
}
# Constructor arguments that take Python objects (callables, samplers, trials), not YAML
# values, or that the config fills in itself (the grid).
_NOT_OPTIONS = {
    "gamma",
    "weights",
    "constraints_func",
    "independent_sampler",
    "source_trials",
    "x0",
    "search_space",
}


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


class TwinAwareGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler that lets enqueued trials (paired twins, re-queued trials) end.

    GridSampler.after_trial reads the ending trial's ``grid_id`` when one grid point is left,
    but an enqueued trial never gets one (its before_trial skips trials with fixed params):
    a twin ending then raised KeyError and stopped the worker. Such a trial is not a grid
    point, so it has nothing to tell the grid's bookkeeping.
    Why: docs/design.md#twins-beside-a-grid-sampler
    """

    def after_trial(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState, values: Sequence[float] | None,
    ) -> None:
        """The grid's own end-of-trial step, for grid points only."""
        if "grid_id" in trial.system_attrs:
            super().after_trial(study, trial, state, values)


def make_sampler(cfg: SamplerConfig, *, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """Build the Optuna sampler.

    Args:
        cfg: the sampler config.
        seed_offset: added to the configured seed. Give each parallel worker its own offset:
            workers with the same seed draw the same random start-up points. Not for the
            grid: GridSampler shuffles the grid with its seed and gives trial number n the
            n-th point, so every worker must shuffle alike (a seed of 0 when none is set),
            or two workers run the same point and others never run.

    Raises:
        ConfigError: unknown sampler name or options the sampler rejects.
    """
    if cfg.name not in SAMPLER_CLASSES:
        raise ConfigError(
            f"sampler.name: unknown sampler (got {cfg.name!r}{_hint(cfg.name, SAMPLER_CLASSES)}); "
            f"allowed: {sorted(SAMPLER_CLASSES)}; fix: pick one of them."
        )
    options = dict(cfg.options)
    if cfg.name == "grid":
        options["seed"] = 0 if options.get("seed") is None else options["seed"]
    elif seed_offset and options.get("seed") is not None:
        options["seed"] = options["seed"] + seed_offset
    cls = getattr(optuna.samplers, SAMPLER_CLASSES[cfg.name])
    if cfg.name == "grid":
        cls = TwinAwareGridSampler
        if not cfg.grid:
            raise ConfigError(
                "sampler.grid: the grid sampler needs the grid built from the search space "
                "(got none); fix: load the config with load_study_config."
            )
        options["search_space"] = {k: list(v) for k, v in cfg.grid.items()}
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"sampler: {cfg.name} rejected its options (got {dict(cfg.options)!r}): {exc}; "
            "fix: correct the options."
        ) from exc


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    """Build the Optuna pruner.

    Raises:
        ConfigError: unknown pruner name or options the pruner rejects.
    """
    if cfg.name not in PRUNER_CLASSES:
        raise ConfigError(
            f"pruner.name: unknown pruner (got {cfg.name!r}{_hint(cfg.name, PRUNER_CLASSES)}); "
            f"allowed: {sorted(PRUNER_CLASSES)}; fix: pick one of them."
        )
    cls = getattr(optuna.pruners, PRUNER_CLASSES[cfg.name])
    try:
        return cls(**dict(cfg.options))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"pruner: {cfg.name} rejected its options (got {dict(cfg.options)!r}): {exc}; "
            "fix: correct the options."
        ) from exc


# ----------------------------------------------------------------------------------
def check_sampler(c: Checker, value: Any, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Validate a ``sampler:`` block against the sampler class and the search space; for
    ``grid`` build the grid."""
    name, options = _named_block(c, value, "sampler", SAMPLER_CLASSES)
    grid = None
    if name == "grid":
        if not space:
            raise c.error(
                "sampler.name",
                "the grid sampler needs a search space",
                name,
                fix="use random for a study of baseline runs only",
            )
        grid = {}
        for pname, dist in space.items():
            values = grid_values(dist)
            if values is None:
                raise c.error(
                    f"search_space.{pname}",
                    "the grid sampler needs a finite set of values",
                    Shown(describe(dist)),
                    "categorical, int, or float with step",
                    "add step, or use another sampler",
                )
            grid[pname] = values
    if name == "cmaes":
        cats = [n for n, d in space.items() if isinstance(d, CategoricalDistribution)]
        if cats:
            # CMA-ES would sample these at random behind a warning: say so up front
            raise c.error(
                "sampler.name",
                f"cmaes cannot search categorical {cats}",
                name,
                "tpe, random, gp, grid",
                "use tpe/gp, or fix them under train:",
            )
    needs = {"cmaes": ("cmaes",), "gp": ("torch", "scipy")}.get(name, ())
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise c.error(
            "sampler.name",
            f"needs the package(s) {missing}",
            name,
            fix=f"pip install {' '.join(missing)}, or use tpe",
        )
    cls = getattr(optuna.samplers, SAMPLER_CLASSES[name])
    extra = {"search_space": {k: list(v) for k, v in grid.items()}} if grid else {}
    _options(c, options, "sampler", cls, extra)
    return {"name": name, "options": options, "grid": grid}


def check_pruner(c: Checker, value: Any) -> dict[str, Any]:
    """Validate a ``pruner:`` block against the pruner class."""
    name, options = _named_block(c, value, "pruner", PRUNER_CLASSES)
    _options(c, options, "pruner", getattr(optuna.pruners, PRUNER_CLASSES[name]), {})
    return {"name": name, "options": options}


def _named_block(
    c: Checker, value: Any, path: str, classes: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):  # shorthand: `sampler: random`
        value = {"name": value}
    c.mapping(value, path, required=("name",))
    name = c.choice(value["name"], f"{path}.name", tuple(classes))
    return name, {k: v for k, v in value.items() if k != "name"}


def _options(
    c: Checker, options: dict[str, Any], path: str, cls: type, extra: dict[str, Any]
) -> None:
    params = {
        n: p
        for n, p in inspect.signature(cls).parameters.items()
        if n not in _NOT_OPTIONS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    for key, v in options.items():
        if key not in params:
            raise c.error(
                f"{path}.{key}",
                f"not an option of {cls.__name__}",
                key,
                ", ".join(["name", *params]) or "name only",
                "remove it or correct its spelling",
                did_you_mean(key, params),
            )
        allowed = _annotation_types(params[key].annotation)
        if allowed is not None and not _is_instance(v, allowed):
            raise c.error(
                f"{path}.{key}", "wrong type", v, str(params[key].annotation), "correct it"
            )
    try:
        cls(**options, **extra)
    except (TypeError, ValueError) as exc:
        raise c.error(
            path,
            f"{cls.__name__} rejects the options: {one_line(exc)}",
            options,
            fix="correct them",
        ) from exc


def _hint(name: str, allowed: Mapping[str, str]) -> str:
    hint = did_you_mean(name, allowed)
    return f"; {hint}" if hint else ""


def _annotation_types(annotation: Any) -> tuple[type, ...] | None:
    names = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "str": (str,),
        "None": (type(None),),
    }
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "?")
    parts = [p.strip() for p in text.split("|")]
    if not all(p in names for p in parts):
        return None
    return tuple(t for p in parts for t in names[p])


def _is_instance(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)
