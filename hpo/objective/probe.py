"""``objective: probe``: each trial runs the bifurcation probe instead of a training run.

A trial's parameters with the fixed ``train:`` settings make the probed
:class:`~hpo.engine.spec.TrainSpec` (its seed is the first init's); the study's ``probe:``
block is the same for every trial. The trial's value is the study's metric
(``bifurcated_fraction`` or ``hazard_per_batch``), its measurements user attributes of their
own (:func:`probe_attrs`); nothing is reported per step, so nothing is pruned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from hpo.config.modes import METRICS
from hpo.errors import ConfigError
from hpo.objective.attrs import json_safe, set_user_attrs
from hpo.objective.params import suggest_params

if TYPE_CHECKING:
    from hpo.config.study import StudyConfig
    from hpo.engine.probe.bifurcation import ProbeResult
    from hpo.engine.spec import TrainSpec

__all__ = ["CELL_PROBE_KEYS", "ProbeFn", "ProbeObjective", "probe_attrs"]

log = logging.getLogger(__name__)

#: Probe options a study's cell may set (hpo.config.reproduce.epfl_volume's sample sweep).
CELL_PROBE_KEYS = ("sample_size",)

#: ``run_probe(spec, *, inits, alphas, compare, data_dir, train_set) -> ProbeResult``.
ProbeFn = Callable[..., "ProbeResult"]


def probe_attrs(result: ProbeResult, spec: TrainSpec) -> dict[str, Any]:
    """The user attributes of one probe trial (JSON-safe): the probe's measurements,
    ``samples_to_bifurcation`` as one JSON string (a list per init), the precision, device,
    torch version, wall time, ``platform`` (one dict), ``hpo_seed`` and the EPFL-protocol
    options that differ from the defaults."""
    attrs = {
        "hpo_seed": spec.seed,
        "hpo_baseline": False,
        "bifurcated_fraction": float(result.bifurcated_fraction),
        "bifurcated": int(result.bifurcated),
        "hazard_per_batch": float(result.hazard_per_batch),
        "median_samples_to_bifurcation": (
            None
            if result.median_samples_to_bifurcation is None
            else float(result.median_samples_to_bifurcation)
        ),
        "batches_examined": int(result.batches_examined),
        "kinked_batches": int(result.kinked_batches),
        "batches_per_epoch": int(result.batches_per_epoch),
        "inits": int(result.inits),
        "train_samples": int(result.train_samples),
        "train_set": result.train_set,
        # One string, not a list: the export would otherwise spread it over one column per
        # init, and the number of inits is a setting, not a trial's outcome.
        "samples_to_bifurcation": json.dumps(result.samples_to_bifurcation),
        "probe_method": result.method,
        "precision": spec.precision,
        "device": result.device,
        "torch_version": result.torch_version,
        "wall_time_s": float(result.wall_time_s),
        "platform": dict(result.platform),
        **_protocol(result),  # only where set: other probe studies keep their columns
    }
    return {key: json_safe(value) for key, value in attrs.items()}


def _protocol(probe: Any) -> dict[str, Any]:
    """The EPFL-protocol options that differ from the probe's defaults (a study that sets
    none calls ``probe_fn`` exactly as before)."""
    defaults = {"accumulate": False, "sample_size": None, "shuffle": True,
                "loss_dtype": "float32"}
    return {k: getattr(probe, k) for k, v in defaults.items()
            if getattr(probe, k, v) != v}


class ProbeObjective:
    """Run the bifurcation probe for one trial of a ``objective: probe`` study.

    Args:
        cfg: The study's configuration (with ``objective == "probe"``).
        data_dir: Where the datasets live; ``None`` lets the engine use ``HPO_DATA_DIR``
            (raw data is cached per process, so a worker loads it once).
        probe_fn: The probe; default :func:`hpo.engine.probe.bifurcation.run_probe` (tests inject a
            fake).

    Raises:
        ConfigError: ``cfg`` is not a probe study.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        probe_fn: ProbeFn | None = None,
    ) -> None:
        if cfg.objective != "probe" or cfg.probe is None or cfg.metric not in METRICS["probe"]:
            raise ConfigError(
                f"{cfg.source}: objective: not a probe study (got objective {cfg.objective!r}, "
                f"metric {cfg.metric!r}); allowed: objective: probe with metric "
                f"{' or '.join(METRICS['probe'])}; fix: use the train objective for it."
            )
        self.cfg = cfg
        self.data_dir = data_dir
        self._probe_fn = probe_fn

    @property
    def probe_fn(self) -> ProbeFn:
        if self._probe_fn is None:
            # Imported on first use: torch is slow to import and `hpo status` never needs it.
            from hpo.engine.probe.bifurcation import run_probe

            self._probe_fn = run_probe
        return self._probe_fn

    def spec_for(self, trial: optuna.trial.BaseTrial) -> TrainSpec:
        """The probed settings: ``train:`` plus the trial's parameters."""
        return self._split(suggest_params(trial, self.cfg.search_space))[0]

    def _split(self, params: dict[str, Any]) -> tuple[TrainSpec, dict[str, Any]]:
        """The spec, and the probe options the trial's cell sets (``sample_size``: the
        EPFL sample-size sweep), which go to the probe instead of the spec."""
        cells = self.cfg.cells or {}
        settings = dict(cells.get(params.get("cell"), {}))
        own = {k: settings.pop(k) for k in CELL_PROBE_KEYS if k in settings}
        if not own:
            return self.cfg.train_spec(params), {}
        rest = {k: v for k, v in params.items() if k != "cell"}
        return self.cfg.train_spec({**rest, **settings}), own

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        spec, own = self._split(suggest_params(trial, self.cfg.search_space))
        probe = dataclasses.replace(self.cfg.probe, **own)
        result = self.probe_fn(
            spec,
            inits=probe.inits,
            alphas=tuple(probe.alphas),
            compare=probe.compare,
            data_dir=self.data_dir,
            train_set=probe.train_set,
            **_protocol(probe),
        )
        set_user_attrs(trial, probe_attrs(result, spec))
        value = float(getattr(result, self.cfg.metric))
        log.info("trial %d: %s=%.4f (%d of %d inits bifurcated)", trial.number, self.cfg.metric,
                 value, result.bifurcated, result.inits)
        return value
