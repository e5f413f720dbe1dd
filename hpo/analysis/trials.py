"""A study's trials as flat records: group, role (tuned/default/baseline), accuracy, kink rate;
and the pairing of each tuned trial with its default-derivative partner.

Every record is rebuilt from the trial's full :class:`~hpo.engine.spec.TrainSpec`
(``cfg.train_spec(trial.params, hpo_seed)``), so two runs pair exactly when everything but
the kink derivatives is the same training run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import DERIVATIVES, StudyConfig, pytorch_derivative
from hpo.engine.spec import TrainSpec
from hpo.errors import HpoError
from hpo.objective.attrs import trial_attrs

__all__ = ["GroupKey", "Pair", "TrialRecord", "group_label", "pair_trials", "read_trials"]

logger = logging.getLogger(__name__)

GroupKey = tuple[str, str, str, str]  # (model, dataset, precision, activation)
# Official training-set sizes: the split takes val_size of these, train_subset of the rest.
_TRAIN_IMAGES = {"mnist": 60_000, "fashion_mnist": 60_000}


def group_label(group: GroupKey) -> str:
    """``model/dataset/precision/activation``."""
    return "/".join(group)


@dataclass(frozen=True)
class TrialRecord:
    """What the comparison needs from one trial.

    Attributes:
        accuracy: the compared metric in percent (COMPLETE trials only, else None).
        value: the study's objective value (what "best" is chosen by).
        tuned: a kink derivative differs from PyTorch's.
        pair_key: the TrainSpec with the derivatives reset (equal keys: same run otherwise).
        relu_prime_zero / relu6_prime_six: effective derivatives (PyTorch's when unset).
        kink_rate: kink hits per training sample per epoch, else per trial (see
            ``kink_rate_per_sample``); kink_hits: the recorded ``kink_hits``.
        params_sha256: the run's fingerprint; platform: the trial's ``platform`` record.
        The last four are None for trials that did not record them.
    """

    number: int
    state: TrialState
    group: GroupKey
    baseline: bool
    twin_of: int | None
    tuned: bool
    pair_key: str
    accuracy: float | None
    value: float | None
    diverged: bool
    relu_prime_zero: float
    relu6_prime_six: float
    kink_rate: float | None
    kink_rate_per_sample: bool
    twin: int | None = None  # a tuned trial's hpo_twin: the hpo_twin_of of its twin
    kink_hits: float | None = None
    params_sha256: str | None = None
    platform: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE and self.accuracy is not None

    @property
    def search(self) -> bool:
        """A trial the sampler chose (neither a baseline nor a twin of one)."""
        return not self.baseline and self.twin_of is None


@dataclass(frozen=True)
class Pair:
    """A tuned trial and its default-derivative partner (accuracies in %)."""

    group: GroupKey
    tuned: int
    default: int
    tuned_accuracy: float
    default_accuracy: float
    identical: bool | None = None  # same params_sha256; None: a fingerprint is missing

    @property
    def difference(self) -> float:
        """Tuned minus default accuracy (pp)."""
        return self.tuned_accuracy - self.default_accuracy


def read_trials(
    study: optuna.Study, cfg: StudyConfig, metric: str = "test_accuracy"
) -> tuple[list[TrialRecord], str]:
    """Records of every finished trial (COMPLETE, PRUNED, FAIL) whose spec can be rebuilt.

    Args:
        metric: ``test_accuracy`` (the user attr) or ``val_accuracy`` (the objective value).
            Test accuracy falls back to validation when a completed trial lacks it.

    Returns:
        The records and the metric actually used.
    """
    if metric not in ("test_accuracy", "val_accuracy"):
        raise HpoError(
            f"unknown metric {metric!r}; allowed: test_accuracy, val_accuracy; fix: pick one."
        )
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False, states=finished)
    if metric == "test_accuracy" and any(
        t.state == TrialState.COMPLETE and trial_attrs(t.user_attrs).get("test_accuracy") is None
        for t in trials
    ):
        logger.warning("some completed trials have no test_accuracy; comparing val_accuracy")
        metric = "val_accuracy"
    records = []
    for t in trials:
        try:
            spec = cfg.train_spec(t.params, _seed(t))
        except HpoError as exc:
            logger.debug("trial %d skipped: %s", t.number, exc)
            continue
        records.append(_record(t, spec, metric))
    return records, metric


def _seed(t: FrozenTrial) -> int | None:
    seed = t.user_attrs.get("hpo_seed")
    return None if seed is None else int(seed)


def _effective(spec: TrainSpec) -> dict[str, float]:
    settings = spec.to_dict()
    out = {}
    for name in DERIVATIVES:
        value = getattr(spec, name)
        out[name] = float(pytorch_derivative(name, settings) if value is None else value)
    return out


def _record(t: FrozenTrial, spec: TrainSpec, metric: str) -> TrialRecord:
    attrs = trial_attrs(t.user_attrs)
    reset = spec.replace(relu_prime_zero=None, relu6_prime_six=None)
    eff, default = _effective(spec), _effective(reset)
    acc = None
    if t.state == TrialState.COMPLETE:
        raw = attrs.get("test_accuracy") if metric == "test_accuracy" else t.value
        acc = None if raw is None else 100.0 * float(raw)
    twin = t.user_attrs.get("hpo_twin_of")
    link = t.user_attrs.get("hpo_twin")
    rate, per_sample = _kink_rate(t, attrs, spec)
    hits = attrs.get("kink_hits")
    sha = attrs.get("params_sha256")
    platform = attrs.get("platform")
    return TrialRecord(
        number=t.number,
        state=t.state,
        group=(spec.model, spec.dataset, spec.precision, spec.activation),
        baseline=bool(t.user_attrs.get("hpo_baseline", False)),
        twin_of=None if twin is None else int(twin),
        tuned=eff != default,
        pair_key=json.dumps(reset.to_dict(), sort_keys=True),
        accuracy=acc,
        value=t.value,
        diverged=bool(attrs.get("diverged", False)),
        relu_prime_zero=eff["relu_prime_zero"],
        relu6_prime_six=eff["relu6_prime_six"],
        kink_rate=rate,
        kink_rate_per_sample=per_sample,
        twin=None if link is None else int(link),
        kink_hits=None if hits is None else float(hits),
        params_sha256=sha if isinstance(sha, str) and sha else None,
        platform=platform if isinstance(platform, dict) else None,
    )


def _kink_rate(
    t: FrozenTrial, attrs: dict[str, Any], spec: TrainSpec
) -> tuple[float | None, bool]:
    hits = attrs.get("kink_hits")
    per_epoch = attrs.get("kink_hits_per_epoch") or []
    epochs = len(per_epoch) or (spec.epochs if t.state == TrialState.COMPLETE else 0)
    if hits is None or epochs == 0:  # nothing recorded, or pruned before its first epoch
        return None, False
    samples = attrs.get("train_samples")
    if samples is None and spec.dataset in _TRAIN_IMAGES:
        samples = spec.train_subset or _TRAIN_IMAGES[spec.dataset] - spec.val_size
    if samples:
        return float(hits) / (float(samples) * epochs), True
    return float(hits), False


def pair_trials(records: Iterable[TrialRecord]) -> list[Pair]:
    """Pair every completed tuned trial with one completed default-derivative trial of the
    same training run otherwise (same seed and other settings).

    Preference: a twin that names the tuned trial (``hpo_twin_of``, or the tuned trial's
    ``hpo_twin`` when it is a retry of the trial that enqueued the twin), then a baseline trial,
    then any other default-derivative trial; ties go to the lowest trial number. Tuned
    trials without a partner are left out.
    """
    records = list(records)
    defaults: dict[str, list[TrialRecord]] = {}
    for r in records:
        if r.complete and not r.tuned:
            defaults.setdefault(r.pair_key, []).append(r)
    pairs = []
    for r in records:
        if not (r.complete and r.tuned):
            continue
        candidates = defaults.get(r.pair_key, [])
        if not candidates:
            continue
        mine = {r.number} if r.twin is None else {r.number, r.twin}
        best = min(candidates, key=lambda c: (c.twin_of not in mine, not c.baseline, c.number))
        if best.twin_of is not None and best.twin_of not in mine:
            logger.debug("trial %d paired with the twin of trial %d", r.number, best.twin_of)
        identical = (None if r.params_sha256 is None or best.params_sha256 is None
                     else r.params_sha256 == best.params_sha256)
        pairs.append(Pair(r.group, r.number, best.number, r.accuracy, best.accuracy, identical))
    twins = [r for r in records if r.twin_of is not None and r.complete]
    paired_twins = {p.default for p in pairs}
    for r in twins:
        if r.number not in paired_twins:
            # Usual when the tuned trial was pruned; a settings mismatch would be a bug.
            logger.info(
                "twin trial %d of trial %d is unpaired (the tuned trial did not complete or "
                "its settings differ)", r.number, r.twin_of
            )
    return pairs
