"""The layout of a study YAML file, checked key by key.

:func:`validate` turns the parsed YAML into plain validated values (distributions
included) or raises one :class:`~hpo.errors.ConfigError` line:
``<file>: <key.path>: <problem> (got <value>); allowed: ...; fix: ...``.
:mod:`hpo.config.study` wraps the values into frozen dataclasses.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
)

from hpo.config.models import check_models
from hpo.config.modes import (
    BASELINE_MODES,
    check_derivatives_not_fixed,
    check_objective,
    check_paired,
    check_probe_study,
)
from hpo.config.samplers import check_pruner, check_sampler
from hpo.config.search_space import (
    DERIVATIVES,
    contains,
    describe,
    expand_baseline,
    parse_search_space,
    representatives,
    spec_default,
)
from hpo.config.yamlfile import Checker, Shown
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError, did_you_mean, one_line

__all__ = ["validate"]

# a TrainSpec message that ends with its own fix ("...; remove width.", "...; set image_size")
_SPEC_FIX = re.compile(r"; (remove|set|use) [^;]*\.?$")

logger = logging.getLogger(__name__)

TOP_KEYS = (
    "name", "direction", "objective", "metric", "probe", "storage", "n_trials", "timeout",
    "sampler", "pruner", "heartbeat", "train", "search_space", "baseline",
)  # fmt: skip
DEFAULT_N_TRIALS = 10
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_CHECKED_COMBINATIONS = 4096


# ----------------------------------------------------------------------------------
def validate(raw: Any, *, source: str, storage_override: str | None = None) -> dict[str, Any]:
    """Check a parsed study file and return its values, defaults filled in.

    Returns:
        A dict with the keys of :class:`hpo.config.study.StudyConfig` (``train`` for ``fixed``),
        sampler/pruner/heartbeat/baseline as dicts of their dataclass fields.
    """
    c = _Checker(source)
    c.mapping(raw, "", TOP_KEYS, required=("name", "train"))
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise c.error(
            "name", "invalid study name", name, "letters, digits, _ . -", "rename the study"
        )
    out: dict[str, Any] = {"name": name}
    out["direction"] = c.choice(
        raw.get("direction", "maximize"), "direction", ("maximize", "minimize")
    )
    out.update(check_objective(c, raw))  # objective, metric, probe
    # None: the project's default (hpo.storage.urls.resolve_storage_url); the URL itself is
    # checked when the storage is opened (hpo.storage.rdb.make_storage), before any write.
    out["storage"] = storage_override or c.storage(raw.get("storage"))
    out["n_trials"] = c.integer(raw.get("n_trials", DEFAULT_N_TRIALS), "n_trials", 0)
    out["timeout"] = c.timeout(raw.get("timeout"))
    out["heartbeat"] = c.heartbeat(raw.get("heartbeat") or {})
    out["train"] = c.train(raw["train"])
    out["search_space"] = c.search(
        raw.get("search_space") or {},
        out["train"],
        out["n_trials"],
        # the probe runs backward passes only on kinked mini-batches: float16 stays cheap
        warn_float16=out["objective"] == "train",
    )
    if out["objective"] == "probe":
        check_probe_study(c, out["train"], out["search_space"], raw.get("baseline"))
    out["baseline"] = c.baseline(raw.get("baseline"), out["train"], out["search_space"])
    if out["n_trials"] == 0 and (out["baseline"] is None or out["baseline"]["mode"] == "paired"):
        raise c.error(
            "n_trials",
            "nothing to run",
            0,
            "an integer >= 1, or a baseline: block of mode fixed",
            "set n_trials",
        )
    out["sampler"] = check_sampler(c, raw.get("sampler") or "tpe", out["search_space"])
    out["pruner"] = check_pruner(c, raw.get("pruner") or "median")
    check_models(c, out["train"], out["search_space"])  # last: it may build a model
    return out


# ----------------------------------------------------------------------------------
class _Checker(Checker):
    """Checks one section of a study file at a time."""

    # -- top-level scalars ------------------------------------------------------------
    def storage(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                "storage",
                "not a URL",
                value,
                "null (default: the project's storage/hpo.db) or a SQLAlchemy URL",
                "write it as a string",
            )
        return value

    def timeout(self, value: Any) -> float | None:
        if value is None:
            return None
        if self.number(value, "timeout") <= 0:
            raise self.error(
                "timeout", "must be positive", value, "null or seconds > 0", "correct it"
            )
        return value

    def heartbeat(self, value: Any) -> dict[str, int]:
        self.mapping(value, "heartbeat", ("interval", "grace", "max_retry"))
        hb = {
            "interval": self.integer(value.get("interval", 10), "heartbeat.interval", 1),
            "grace": self.integer(value.get("grace", 30), "heartbeat.grace", 1),
            "max_retry": self.integer(value.get("max_retry", 3), "heartbeat.max_retry", 0),
        }
        if hb["grace"] <= hb["interval"]:
            # a live worker whose heartbeat is merely due would be declared dead
            raise self.error(
                "heartbeat.grace",
                "must exceed heartbeat.interval",
                hb["grace"],
                f"an integer > {hb['interval']}",
                "set grace to 2-3 times the interval",
            )
        return hb

    # -- train / search space -----------------------------------------------------------
    def train(self, value: Any) -> dict[str, Any]:
        self.mapping(value, "train", TrainSpec.field_names())
        fixed = dict(value)
        try:
            TrainSpec(**fixed)
        except (ConfigError, TypeError, ValueError) as exc:
            message = one_line(exc)
            key, _ = _culprit(fixed, {}, message)
            fix = "correct the setting (see hpo/engine/spec.py)"
            own = _SPEC_FIX.search(message)  # TrainSpec's message says what to do: its fix
            if own:
                message, fix = message[: own.start()], message[own.start() + 2 :].rstrip(".")
            raise self.error(
                f"train.{key}" if key else "train",
                message,
                fixed.get(key, fixed) if key else fixed,
                fix=fix,
            ) from exc
        return fixed

    def search(
        self, value: Any, fixed: Mapping[str, Any], n_trials: int, *, warn_float16: bool = True
    ) -> dict[str, BaseDistribution]:
        self.mapping(value, "search_space")
        if not value and n_trials > 0:
            # a baseline-only study (n_trials: 0) needs no search space
            raise self.error(
                "search_space",
                "nothing is searched",
                {},
                fix="add at least one parameter (e.g. relu_prime_zero), or set n_trials: 0 "
                "for a study of baseline runs only",
            )
        fields = TrainSpec.field_names()
        for name in value:
            path = f"search_space.{name}"
            if name not in fields:
                raise self.error(
                    path,
                    "not a training setting",
                    name,
                    ", ".join(f for f in fields if f != "seed"),
                    "correct the name",
                    did_you_mean(name, fields),
                )
            if name == "seed":
                raise self.error(
                    path,
                    "the seed is not a hyperparameter",
                    name,
                    fix="fix it under train: or list seeds under baseline.seeds",
                )
            if name in fixed:
                raise self.error(
                    path,
                    "both fixed under train: and searched",
                    name,
                    fix=f"remove {name} from train: or from search_space:",
                )
        space = parse_search_space(value, source=self.source)
        self._check_combinations(fixed, space)
        precision = space.get("precision")
        if (
            warn_float16
            and isinstance(precision, CategoricalDistribution)
            and "float16" in precision.choices
            and fixed.get("device", "cpu") == "cpu"
        ):
            logger.warning(
                "%s: float16 on a CPU is ~50x slower than float32; use it on a GPU "
                "(train: {device: cuda})",
                self.source,
            )
        return space

    def _check_combinations(
        self, fixed: Mapping[str, Any], space: Mapping[str, BaseDistribution]
    ) -> None:
        """Every choice and range end must make a valid TrainSpec together with ``train:``
        and with each other (e.g. width does not apply to a MobileNet, relu6_prime_six
        only to relu6)."""
        reps = [[(name, key, v) for key, v in representatives(d)] for name, d in space.items()]
        if math.prod(len(r) for r in reps) <= _MAX_CHECKED_COMBINATIONS:
            combos = itertools.product(*reps)
        else:  # too many to try: vary one parameter at a time around the first values
            first = [r[0] for r in reps]
            combos = (first[:i] + [x] + first[i + 1 :] for i, r in enumerate(reps) for x in r)
        for combo in combos:
            values = {name: v for name, _, v in combo}
            try:
                TrainSpec(**fixed, **values)
            except (ConfigError, TypeError, ValueError) as exc:
                name, _ = _culprit(values, fixed, one_line(exc))
                key = next((k for n, k, _ in combo if n == name), None)
                others = {n: v for n, v in values.items() if n != name}
                if name is None:
                    got: Any = values
                elif not others or _always_invalid(fixed, reps, name, values[name]):
                    got = values[name]  # bad whatever else is chosen: no context needed
                else:
                    got = Shown(f"{values[name]!r} with {others!r}")
                raise self.error(
                    f"search_space.{name}.{key}" if name else "search_space",
                    one_line(exc),
                    got,
                    fix="narrow the search, or change train: so every value applies",
                ) from exc

    # -- baseline -----------------------------------------------------------------------
    def baseline(
        self, value: Any, fixed: Mapping[str, Any], space: Mapping[str, BaseDistribution]
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        self.mapping(value, "baseline", ("mode", "seeds", "params"))
        if self.choice(value.get("mode", "fixed"), "baseline.mode", BASELINE_MODES) == "paired":
            return check_paired(self, value, fixed, space)
        seeds = self._seeds(value.get("seeds", 1))
        params = value.get("params") or {}
        self._baseline_params(params, space)
        check_derivatives_not_fixed(self, fixed)
        for name, dist in space.items():
            if name in DERIVATIVES or name in params:
                continue
            if not isinstance(dist, CategoricalDistribution):
                default = spec_default(name)
                if not contains(dist, default):
                    raise self.error(
                        f"baseline.params.{name}",
                        "missing: TrainSpec's default is not in the searched range",
                        default,
                        describe(dist),
                        f"add baseline.params.{name}",
                    )
        self._baseline_runs(fixed, space, params, seeds[0])
        return {"seeds": seeds, "params": dict(params), "mode": "fixed"}

    def _seeds(self, seeds: Any) -> tuple[int, ...]:
        """``baseline.seeds``: a count n (seeds 0..n-1) or a list of distinct seeds."""
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            return tuple(range(self.integer(seeds, "baseline.seeds", 1)))
        if isinstance(seeds, list) and seeds:
            for i, s in enumerate(seeds):
                self.integer(s, f"baseline.seeds[{i}]", 0)
            if len(set(seeds)) != len(seeds):
                raise self.error(
                    "baseline.seeds", "duplicate seeds", seeds, fix="list each seed once"
                )
            return tuple(seeds)
        raise self.error(
            "baseline.seeds",
            "invalid seeds",
            seeds,
            "a count n >= 1 (seeds 0..n-1) or a list of seeds",
            "correct it",
        )

    def _baseline_params(self, params: Any, space: Mapping[str, BaseDistribution]) -> None:
        """``baseline.params``: values the search can produce, for searched parameters other
        than the derivatives."""
        self.mapping(params, "baseline.params")
        for name, v in params.items():
            path = f"baseline.params.{name}"
            if name in DERIVATIVES:
                raise self.error(
                    path,
                    "baselines use PyTorch's derivative",
                    v,
                    fix=f"remove {name} from baseline.params",
                )
            if name not in space:
                raise self.error(
                    path,
                    "not a searched parameter",
                    name,
                    ", ".join(space),
                    "fixed settings go under train:, for every trial",
                    did_you_mean(name, space),
                )
            if not contains(space[name], v):
                raise self.error(
                    path,
                    "outside the searched values",
                    v,
                    describe(space[name]),
                    "pick a value the search can produce",
                )

    def _baseline_runs(
        self,
        fixed: Mapping[str, Any],
        space: Mapping[str, BaseDistribution],
        params: Mapping[str, Any],
        seed: int,
    ) -> None:
        """Every baseline run is a value the search can produce and a valid TrainSpec."""
        for combo in expand_baseline(fixed, space, params):
            for name in DERIVATIVES:
                if name in combo and not contains(space[name], combo[name]):
                    raise self.error(
                        f"search_space.{name}",
                        "the baseline value (PyTorch's derivative) is outside the search",
                        combo[name],
                        describe(space[name]),
                        "include it in the range (or drop step), or drop baseline:",
                    )
            try:
                TrainSpec(**{**fixed, **combo, "seed": seed})
            except (ConfigError, TypeError, ValueError) as exc:
                raise self.error(
                    "baseline",
                    f"invalid baseline run: {one_line(exc)}",
                    combo,
                    fix="set baseline.params so the run is valid",
                ) from exc


# ----------------------------------------------------------------------------------
def _culprit(
    values: Mapping[str, Any], base: Mapping[str, Any], message: str = ""
) -> tuple[str | None, bool]:
    """The key of ``values`` to blame when ``TrainSpec(**base, **values)`` fails, and
    whether it fails on its own (with ``base`` only): else it is the key whose removal makes
    the rest valid, preferring one the error ``message`` names as ``key=``."""
    for key in values:
        if not _valid({**base, key: values[key]}):
            return key, True
    full = {**base, **values}
    for key in sorted(values, key=lambda k: f"{k}=" not in message):
        if _valid({k: v for k, v in full.items() if k != key}):
            return key, False
    return None, False


def _always_invalid(
    fixed: Mapping[str, Any], reps: list[list[tuple[str, str, Any]]], name: str, value: Any
) -> bool:
    """Whether ``name=value`` fails with every checked combination of the other values."""
    others = [r for r in reps if r[0][0] != name]
    for combo in itertools.islice(itertools.product(*others), _MAX_CHECKED_COMBINATIONS):
        if _valid({**fixed, **{n: v for n, _, v in combo}, name: value}):
            return False
    return True


def _valid(values: Mapping[str, Any]) -> bool:
    try:
        TrainSpec(**values)
    except (ConfigError, TypeError, ValueError):
        return False
    return True
