"""What a study runs per trial: the objective (``train`` or ``probe``), its metric, and the
baseline mode (``fixed`` or ``paired``), checked key by key for :mod:`hpo.config.schema`.

``objective: train`` (default) has ``metric: val_accuracy`` and an optional ``baseline:``
(``{mode: fixed, seeds, params}`` or ``{mode: paired}``); ``objective: probe`` has
``metric: bifurcated_fraction`` (default) or ``hazard_per_batch``, an optional ``probe:``
block, and neither a baseline nor ``relu_prime_zero``: the probe sets ReLU'(0) to each of its
alphas. Which keys apply where: docs/design.md#objectives-and-baseline-modes
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution

from hpo.config.search_space import (
    DERIVATIVES,
    contains,
    describe,
    pytorch_derivative,
    representatives,
    spec_default,
)
from hpo.config.yamlfile import Checker

__all__ = [
    "BASELINE_MODES",
    "METRICS",
    "OBJECTIVES",
    "PROBE_COMPARE",
    "check_derivatives_not_fixed",
    "check_objective",
    "check_paired",
    "check_probe_study",
]

OBJECTIVES = ("train", "probe", "diverge")
# The metrics each objective can return; the first is the default.
METRICS = {
    "train": ("val_accuracy",),
    "probe": ("bifurcated_fraction", "hazard_per_batch"),
    # the last epoch's distance from a ReLU'(0) = 0 reference (hpo.objective.diverge)
    "diverge": ("l1_distance", "weight_sum_difference"),
}
BASELINE_MODES = ("fixed", "paired")
PROBE_KEYS = ("inits", "alphas", "compare", "train_set", "accumulate", "sample_size", "shuffle",
              "loss_dtype")
PROBE_COMPARE = ("first", "first_weight", "all")
# split: hpo train's training split (val_size held out); all: every training image
PROBE_TRAIN_SETS = ("split", "all")
# float32: the loss from float32 logits (the training loop); param: in the model's dtype
PROBE_LOSS_DTYPES = ("float32", "param")
# accumulate / sample_size / shuffle / loss_dtype: the EPFL volume notebook's protocol
# (hpo.engine.probe.bifurcation.run_probe); the defaults are the probe's own.
PROBE_DEFAULTS = {"inits": 4, "alphas": (0.0, 1.0), "compare": "first", "train_set": "split",
                  "accumulate": False, "sample_size": None, "shuffle": True,
                  "loss_dtype": "float32"}


def check_objective(c: Checker, raw: Mapping[str, Any]) -> dict[str, Any]:
    """``objective``, ``metric`` and ``probe`` of a study file.

    Returns:
        ``{"objective": str, "metric": str, "probe": dict | None}``.
    """
    objective = c.choice(raw.get("objective", "train"), "objective", OBJECTIVES)
    allowed = METRICS[objective]
    metric = raw.get("metric", allowed[0])
    if not isinstance(metric, str) or metric not in allowed:
        others = [m for o, ms in METRICS.items() if o != objective for m in ms]
        hint = f"set objective: probe for {', '.join(others)}" if objective == "train" else (
            "set objective: train for val_accuracy"
        )
        raise c.error(
            "metric",
            f"not a metric of objective {objective}",
            metric,
            ", ".join(allowed),
            f"pick one, or {hint}",
        )
    block = raw.get("probe")
    if objective != "probe":
        if block is not None:
            raise c.error(
                "probe",
                "only for objective: probe",
                block,
                fix="set objective: probe, or remove probe:",
            )
        return {"objective": objective, "metric": metric, "probe": None}
    return {"objective": objective, "metric": metric, "probe": _probe(c, block or {})}


def _probe(c: Checker, block: Any) -> dict[str, Any]:
    c.mapping(block, "probe", PROBE_KEYS)
    out = {**PROBE_DEFAULTS, **block}
    out["inits"] = c.integer(out["inits"], "probe.inits", 1)
    alphas = out["alphas"]
    if not isinstance(alphas, (list, tuple)) or len(alphas) != 2:
        raise c.error(
            "probe.alphas",
            "needs two values of ReLU'(0)",
            alphas,
            "a list [a, b] of two different finite numbers",
            "write e.g. alphas: [0.0, 1.0]",
        )
    pair = tuple(float(c.number(a, f"probe.alphas[{i}]")) for i, a in enumerate(alphas))
    if pair[0] == pair[1]:
        raise c.error(
            "probe.alphas",
            "the two values are equal: nothing to compare",
            alphas,
            "two different numbers",
            "write e.g. alphas: [0.0, 1.0]",
        )
    out["alphas"] = pair
    out["compare"] = c.choice(out["compare"], "probe.compare", PROBE_COMPARE)
    out["train_set"] = c.choice(out["train_set"], "probe.train_set", PROBE_TRAIN_SETS)
    for key in ("accumulate", "shuffle"):
        if not isinstance(out[key], bool):
            raise c.error(f"probe.{key}", "not a boolean", out[key], "true or false",
                          "write true or false")
    if out["sample_size"] is not None:
        out["sample_size"] = c.integer(out["sample_size"], "probe.sample_size", 1)
    out["loss_dtype"] = c.choice(out["loss_dtype"], "probe.loss_dtype", PROBE_LOSS_DTYPES)
    return out


def check_probe_study(
    c: Checker,
    fixed: Mapping[str, Any],
    space: Mapping[str, BaseDistribution],
    baseline: Any,
) -> None:
    """A probe study sets ReLU'(0) itself and has nothing to run a baseline of."""
    if baseline is not None:
        raise c.error(
            "baseline",
            "probe studies have no baseline runs",
            baseline,
            fix="remove baseline: (the probe itself compares the two probe.alphas)",
        )
    if "relu_prime_zero" in space:
        raise c.error(
            "search_space.relu_prime_zero",
            "the probe sets ReLU'(0) to each of probe.alphas; it cannot be searched",
            "relu_prime_zero",
            fix="remove it from search_space: and set the two values under probe.alphas",
        )
    if fixed.get("relu_prime_zero") is not None:
        raise c.error(
            "train.relu_prime_zero",
            "the probe sets ReLU'(0) to each of probe.alphas; it cannot be fixed",
            fixed["relu_prime_zero"],
            fix="remove it from train: and set the two values under probe.alphas",
        )


def check_derivatives_not_fixed(c: Checker, fixed: Mapping[str, Any]) -> None:
    """Baselines and twins run PyTorch's derivatives: ``train:`` may not fix another one
    for every trial (the default run could not be expressed)."""
    for name in DERIVATIVES:
        if fixed.get(name) is not None and fixed[name] != pytorch_derivative(name, fixed):
            raise c.error(
                f"train.{name}",
                "baselines need PyTorch's derivative, but "
                "train: fixes another one for every trial",
                fixed[name],
                fix=f"search {name}, set it to null, or drop baseline:",
            )


def check_paired(
    c: Checker,
    value: Mapping[str, Any],
    fixed: Mapping[str, Any],
    space: Mapping[str, BaseDistribution],
) -> dict[str, Any]:
    """``baseline: {mode: paired}``: the values of :class:`hpo.config.study.BaselineConfig`."""
    for key in value:
        if key != "mode":
            raise c.error(
                f"baseline.{key}",
                "only for mode: fixed",
                value[key],
                "mode (a twin takes its settings and seed from its trial)",
                f"remove {key}, or set mode: fixed",
            )
    searched = [name for name in DERIVATIVES if name in space]
    if not searched:
        raise c.error(
            "baseline.mode",
            "paired twins need a searched derivative (no trial would differ from PyTorch's)",
            "paired",
            f"a search_space: entry for {' or '.join(DERIVATIVES)}",
            "search relu_prime_zero (including PyTorch's 0), or use mode: fixed",
        )
    check_derivatives_not_fixed(c, fixed)
    # A twin is enqueued with PyTorch's value of each searched derivative, which depends on
    # the activation (LeakyReLU: negative_slope): it must be a value the search can produce.
    for settings in _derivative_settings(fixed, space):
        for name in searched:
            default = pytorch_derivative(name, settings)
            if not contains(space[name], default):
                raise c.error(
                    f"search_space.{name}",
                    "the twin's value (PyTorch's derivative"
                    + (f" with {_show(settings)}" if _show(settings) else "")
                    + ") is outside the search",
                    default,
                    describe(space[name]),
                    "include it in the range (or drop step), or use mode: fixed",
                )
    return {"seeds": (), "params": {}, "mode": "paired"}


def _derivative_settings(
    fixed: Mapping[str, Any], space: Mapping[str, BaseDistribution]
) -> list[dict[str, Any]]:
    """Representative (activation, negative_slope) settings: PyTorch's derivative at the
    kink depends on nothing else."""
    options = []
    for name in ("activation", "negative_slope"):
        if name in space:
            options.append([(name, v) for _, v in representatives(space[name])])
        else:
            options.append([(name, fixed.get(name, spec_default(name)))])
    return [{**fixed, **dict(combo)} for combo in itertools.product(*options)]


def _show(settings: Mapping[str, Any]) -> str:
    if settings.get("activation") != "leaky_relu":
        return ""
    return f"activation leaky_relu, negative_slope {settings['negative_slope']}"
