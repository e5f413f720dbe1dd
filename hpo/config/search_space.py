"""Pure helpers over a search space (name -> Optuna distribution): grids, the values worth
checking against TrainSpec, and the expansion of baseline runs.

:func:`parse_search_space` checks each entry on its own; whether TrainSpec accepts the values
is checked by :mod:`hpo.config.schema`, which calls the other helpers on checked input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.config.yamlfile import Checker
from hpo.engine.spec import TrainSpec

__all__ = [
    "DERIVATIVES",
    "contains",
    "describe",
    "expand_baseline",
    "grid_values",
    "parse_search_space",
    "pytorch_derivative",
    "representatives",
    "spec_default",
]

# The ReLU-family derivatives at the kinks: baselines use PyTorch's value for these.
DERIVATIVES = ("relu_prime_zero", "relu6_prime_six")

_SPEC_DEFAULTS = TrainSpec.defaults()


def spec_default(name: str) -> Any:
    """TrainSpec's default for a field."""
    return _SPEC_DEFAULTS[name]


def pytorch_derivative(name: str, settings: Mapping[str, Any]) -> float:
    """What PyTorch uses at the kink: ReLU'(0) = 0, ReLU6'(0) = ReLU6'(6) = 0, and
    LeakyReLU'(0) = negative_slope (its backward takes the negative branch at 0)."""
    if name == "relu_prime_zero" and settings.get("activation", "relu") == "leaky_relu":
        return float(settings.get("negative_slope", spec_default("negative_slope")))
    return 0.0


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a value ``dist`` can produce (type, range and step)."""
    if isinstance(dist, CategoricalDistribution):
        return any(_same(value, c) for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(dist, IntDistribution) and not float(value).is_integer():
        return False
    if not (math.isfinite(value) and dist.low <= value <= dist.high):
        return False
    step = getattr(dist, "step", None)
    if step is None:
        return True
    k = (value - dist.low) / step
    return math.isclose(k, round(k), abs_tol=1e-9)


def grid_values(dist: BaseDistribution) -> tuple[Any, ...] | None:
    """Every value of a finite distribution, or ``None`` for a continuous one."""
    if isinstance(dist, CategoricalDistribution):
        return tuple(dist.choices)
    if isinstance(dist, IntDistribution):
        return tuple(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = round((dist.high - dist.low) / dist.step)
        # round() keeps 0.1 * 3 from printing as 0.30000000000000004 in the grid
        return tuple(round(dist.low + i * dist.step, 12) for i in range(n + 1))
    return None


def representatives(dist: BaseDistribution) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs that bound what a distribution produces: every choice of a
    categorical (``choices[i]``), the two ends of a numeric range (``low``, ``high``)."""
    if isinstance(dist, CategoricalDistribution):
        return [(f"choices[{i}]", c) for i, c in enumerate(dist.choices)]
    return [("low", dist.low), ("high", dist.high)]


def expand_baseline(
    fixed: Mapping[str, Any],
    search_space: Mapping[str, BaseDistribution],
    params: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The parameter sets of the baseline runs (one per combination; seeds come on top).

    Args:
        fixed: the ``train:`` settings.
        search_space: the searched parameters.
        params: ``baseline.params``: values for searched non-derivative parameters.

    Returns:
        One dict per combination with a value for every searched parameter: derivatives at
        PyTorch's value, numeric parameters at ``params`` or TrainSpec's default,
        categorical parameters at ``params`` or, without one, each choice in turn.
    """
    names = [n for n in search_space if n not in DERIVATIVES]
    options: list[list[Any]] = []
    for name in names:
        dist = search_space[name]
        if name in params:
            options.append([params[name]])
        elif isinstance(dist, CategoricalDistribution):
            options.append(list(dist.choices))
        else:
            options.append([spec_default(name)])
    combos = []
    for values in itertools.product(*options):
        combo = dict(zip(names, values))
        settings = {**fixed, **combo}
        for name in DERIVATIVES:
            if name in search_space:
                combo[name] = pytorch_derivative(name, settings)
        combos.append({n: combo[n] for n in search_space})  # search-space order
    return combos


DIST_KEYS = {
    "float": ("type", "low", "high", "step", "log"),
    "int": ("type", "low", "high", "step", "log"),
    "categorical": ("type", "choices"),
}


def parse_search_space(
    raw: Any, *, source: str = "<config>", path: str = "search_space"
) -> dict[str, BaseDistribution]:
    """Turn a YAML ``search_space:`` mapping into Optuna distributions.

    Each entry is ``{type: float, low, high[, step][, log]}``, ``{type: int, low, high[,
    step][, log]}`` or ``{type: categorical, choices: [...]}``. Only the entries themselves
    are checked here, not whether TrainSpec accepts the values.

    Raises:
        ConfigError: naming ``search_space.<param>[.<key>]`` and the bad value.
    """
    c = _SpaceChecker(source)
    c.mapping(raw, path)
    return {name: c.distribution(entry, f"{path}.{name}") for name, entry in raw.items()}


class _SpaceChecker(Checker):
    def distribution(self, entry: Any, path: str) -> BaseDistribution:
        self.mapping(entry, path, required=("type",))
        kind = entry["type"]
        if kind not in DIST_KEYS:
            raise self.error(
                f"{path}.type", "unknown type", kind, "float, int, categorical", "pick one"
            )
        self.mapping(entry, path, DIST_KEYS[kind])
        if kind == "categorical":
            return self._categorical(entry, path)
        for key in ("low", "high"):
            if key not in entry:
                raise self.error(f"{path}.{key}", "required key is missing", fix=f"add {key}:")
        low, high = entry["low"], entry["high"]
        log = entry.get("log", False)
        step = entry.get("step")
        if not isinstance(log, bool):
            raise self.error(f"{path}.log", "not a boolean", log, "true, false", "correct it")
        if kind == "int":
            for key, v in (("low", low), ("high", high)):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise self.error(
                        f"{path}.{key}",
                        "not an integer",
                        v,
                        "an integer",
                        "use type: float for real numbers",
                    )
            step = 1 if step is None else self.integer(step, f"{path}.step", 1)
        else:
            low, high = self.number(low, f"{path}.low"), self.number(high, f"{path}.high")
            if step is not None and self.number(step, f"{path}.step") <= 0:
                raise self.error(
                    f"{path}.step", "must be positive", step, "a number > 0", "correct it"
                )
        if low > high:
            raise self.error(
                f"{path}.low", "greater than high", low, f"low < high={high}", "swap them"
            )
        if low == high:
            raise self.error(
                path,
                "a range with one value is not a search",
                low,
                fix="fix the value under train: instead",
            )
        if log and low <= 0:
            raise self.error(
                f"{path}.low",
                "log scale needs low > 0",
                low,
                "a number > 0",
                "raise low or drop log",
            )
        if log and step not in (None, 1) or (log and kind == "float" and step is not None):
            raise self.error(
                f"{path}.step", "step cannot be combined with log", step, fix="drop step or log"
            )
        if step is not None:
            k = (high - low) / step
            if not math.isclose(k, round(k), rel_tol=1e-9, abs_tol=1e-9):
                raise self.error(
                    f"{path}.step",
                    f"does not divide high - low = {high - low}",
                    step,
                    "a step that divides the range",
                    "change step, low or high",
                )
        if kind == "int":
            return IntDistribution(low, high, log=log, step=step)
        return FloatDistribution(
            float(low), float(high), log=log, step=None if step is None else float(step)
        )

    def _categorical(self, entry: Mapping[str, Any], path: str) -> CategoricalDistribution:
        if "choices" not in entry:
            raise self.error(f"{path}.choices", "required key is missing", fix="add choices:")
        choices = entry["choices"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise self.error(
                f"{path}.choices",
                "needs a list of at least two values",
                choices,
                fix="list the values, or fix a single value under train:",
            )
        for i, v in enumerate(choices):
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise self.error(
                    f"{path}.choices[{i}]",
                    "not a plain value",
                    v,
                    "null, true/false, numbers, strings",
                    "correct it",
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise self.error(
                    f"{path}.choices[{i}]", "not finite", v, "a finite number", "correct it"
                )
        for i, v in enumerate(choices):
            if any(contains(CategoricalDistribution([w]), v) for w in choices[:i]):
                raise self.error(
                    f"{path}.choices[{i}]", "duplicate choice", v, fix="list each value once"
                )
        return CategoricalDistribution(choices)


def describe(dist: BaseDistribution) -> str:
    """``one of [...]`` or ``[low, high] step s``, for messages."""
    if isinstance(dist, CategoricalDistribution):
        return f"one of {list(dist.choices)}"
    step = f" step {dist.step}" if getattr(dist, "step", None) not in (None, 1) else ""
    return f"[{dist.low}, {dist.high}]{step}"


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python: a bool choice must not match the number 1, nor 0 match False.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
