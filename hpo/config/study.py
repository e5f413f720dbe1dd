"""Study YAML files (or dicts) -> frozen, validated config objects.

Everything a user can get wrong in a study file is checked before anything touches a
database, and reported as one line: ``<file>: <key.path>: <problem> (got <value>); allowed:
...; fix: ...`` (a :class:`~hpo.errors.ConfigError`; the checks: :mod:`hpo.config.schema`).
This module holds the typed sections and :class:`StudyConfig`, stored and read back by the
one serialiser of :mod:`hpo.config.records`, and re-exports the sampler/pruner sections.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution

from hpo.config import schema as config_schema
from hpo.config.records import from_record, stored, to_json, to_record
from hpo.config.samplers import PrunerConfig, SamplerConfig, make_pruner, make_sampler
from hpo.config.search_space import expand_baseline, parse_search_space
from hpo.config.yamlfile import read_yaml
from hpo.engine.models.registry import MODEL_SETTINGS, get_model_entry
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

__all__ = [
    "DICT_SOURCE",
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
DICT_SOURCE = "<dict>"  # the source of a config given as a dict


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

    # Each mode stores the keys its YAML has (fixed: seeds, params; paired: mode only).
    seeds: tuple[int, ...] = stored((0,), omit=lambda b: b.paired, absent=())
    params: Mapping[str, Any] = stored(default_factory=dict, omit=lambda b: b.paired)
    mode: str = stored("fixed", omit=lambda b: not b.paired)

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
    # stored only when set: records written before it existed stay equal
    train_set: str = stored("split", omit=lambda p: p.train_set == "split")
    # the EPFL volume protocol (hpo.engine.probe.bifurcation.run_probe), stored only when set
    accumulate: bool = stored(False, omit=lambda p: not p.accumulate)
    sample_size: int | None = stored(None, omit=lambda p: p.sample_size is None)
    shuffle: bool = stored(True, omit=lambda p: p.shuffle)
    loss_dtype: str = stored("float32", omit=lambda p: p.loss_dtype == "float32")


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
    fixed: Mapping[str, Any] = stored(key="train")
    search_space: Mapping[str, BaseDistribution]
    baseline: BaselineConfig | None
    source: str
    # "train" (train each trial) or "probe" (the bifurcation probe). Both stored for probe
    # studies only, so records written before they existed stay equal.
    objective: str = stored("train", omit=lambda c: c.objective == "train")
    probe: ProbeConfig | None = stored(None, omit=lambda c: c.objective == "train")
    # Named groups of settings: the searched categorical parameter ``cell`` picks one, so a
    # grid can run a list of configurations that is not a product (hpo.config.reproduce.section3).
    cells: Mapping[str, Mapping[str, Any]] | None = stored(None, omit=lambda c: c.cells is None)

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
        """A JSON-serialisable record (:mod:`hpo.config.records`; the storage URL as given:
        :mod:`hpo.study.create` masks its password before storing it)."""
        return {"format": CONFIG_FORMAT, **to_record(self)}

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
            return from_record(cls, _drop_unread_defaults(d), ignore=("format",))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"stored study config is incomplete or corrupt ({type(exc).__name__}: {exc}); "
                "fix: create the study again under a new name."
            ) from exc


def _drop_unread_defaults(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """A record stored before unread settings were refused may fix a setting its model does
    not read at that setting's default (the only value accepted then, e.g. ``resnet18`` with
    ``width: 64``): it never applied, so it is dropped on reading, with a warning, and the
    study still loads."""
    fixed = record.get("train")
    model = fixed.get("model", "fc") if isinstance(fixed, Mapping) else None
    if not isinstance(model, str):
        return record
    try:
        reads = get_model_entry(model).reads
    except ConfigError:
        return record
    unread = [
        k for k, default in MODEL_SETTINGS.items()
        if k in fixed and k not in reads and fixed[k] == default
    ]
    if not unread:
        return record
    logger.warning(
        "study %r: stored train settings %s are not read by model %r; they never applied "
        "and are ignored", record.get("name"), ", ".join(unread), model,
    )
    return {**record, "train": {k: v for k, v in fixed.items() if k not in unread}}


# ----------------------------------------------------------------------------------
def load_study_config(
    config: str | os.PathLike[str] | Mapping[str, Any], *, storage_override: str | None = None
) -> StudyConfig:
    """Read and validate a study: a YAML file, or a dict of the same content.

    Args:
        config: the YAML file's path, or its content as a dict (messages then name
            ``<dict>`` where they would name the file).
        storage_override: a storage URL that replaces the file's ``storage:`` (e.g. the
            ``--storage`` flag, resolved with
            :func:`hpo.storage.urls.resolve_storage_url`).

    Raises:
        ConfigError: the file is missing or not valid YAML, ``config`` is neither a path nor
            a dict, or any setting is invalid.
    """
    if isinstance(config, Mapping):
        source, raw = DICT_SOURCE, _plain(config, "")
    elif isinstance(config, (str, os.PathLike)):
        source, raw = str(config), read_yaml(config)
    else:
        shown = " ".join(repr(config).split())[:60]
        raise ConfigError(
            f"load_study_config: not a study config (got {type(config).__name__} {shown}); "
            "allowed: the path of a study YAML file or a dict of its content; fix: pass e.g. "
            "'study_configs/quickstart.yaml' or {'name': ..., 'train': {...}, ...}."
        )
    values = config_schema.validate(raw, source=source, storage_override=storage_override)
    # Validated values take the stored records' way in: one reader for both.
    return from_record(StudyConfig, {**to_json(values), "source": source})


def _plain(value: Any, where: str) -> Any:
    """A dict's ``value`` as its YAML file would hold it (tuples as lists, a float subclass
    such as NumPy's as a float), or a one-line error naming the key of a value that is not
    plain data."""
    if isinstance(value, Mapping):
        return {k: _plain(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    for kind in (bool, int, float, str):  # subclasses too (np.float64 is a float)
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    raise ConfigError(
        f"{DICT_SOURCE}: {where or '(top level)'}: not plain data (got {value!r} of type "
        f"{type(value).__module__}.{type(value).__qualname__}); allowed: str, int, float, "
        "bool, None, lists and dicts of them; fix: convert it (e.g. float(x) for a NumPy number)."
    )
