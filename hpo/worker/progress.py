"""Where a study stands, read from storage: counts, best trial, baseline, progress lines.

Used by ``hpo status`` and by ``hpo run``'s live progress (which polls the storage, so it
sees trials from workers on other machines too). An accuracy objective is shown in percent
and its differences in percentage points, as ``hpo compare`` shows them (the storage keeps
the fraction Optuna was given).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, TextIO

import optuna
from optuna.trial import TrialState

from hpo.study.budget import BUDGET_ATTR, SLOT_STATES
from hpo.study.create import ATTR_CONFIG
from hpo.study.requeue import fail_reason, is_discarded
from hpo.study.twins import TWIN_ATTR, TWIN_OF_ATTR, is_twin

__all__ = [
    "ProgressMonitor",
    "StudySnapshot",
    "format_duration",
    "format_status",
    "snapshot",
]

# Objectives stored as a fraction of correct answers: shown in % (differences in pp).
_ACCURACY_METRICS = ("val_accuracy", "test_accuracy")


@dataclass(frozen=True)
class StudySnapshot:
    """One look at a study's trials."""

    name: str
    direction: str
    budget: int | None  # hpo_budget plus the twins enqueued so far (paired mode)
    counts: dict[str, int]  # trial state name -> count, discarded trials left out of FAIL
    discarded: int
    fail_reasons: dict[str, int] = field(default_factory=dict)  # interrupted/error/worker lost
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_is_baseline: bool = False
    best_search_number: int | None = None
    best_search_value: float | None = None
    baseline_values: tuple[float, ...] = ()
    twins: int = 0  # paired mode: twins waiting, running or finished (one per tuned trial)
    twins_finished: int = 0
    pair_differences: tuple[float, ...] = ()  # tuned minus twin value, complete pairs
    metric: str | None = None  # the objective's name (hpo create names it), if known

    @property
    def percent(self) -> bool:
        """The objective is an accuracy: values shown in %, differences in pp."""
        return self.metric in _ACCURACY_METRICS

    def value_text(self, value: float) -> str:
        """``97.62 %`` for an accuracy (stored as 0.9762), else ``0.1234``."""
        return f"{100 * value:.2f} %" if self.percent else f"{value:.4f}"

    def diff_text(self, diff: float) -> str:
        """``+0.52 pp`` for an accuracy, else ``+0.0052``."""
        return f"{100 * diff:+.2f} pp" if self.percent else f"{diff:+.4f}"

    @property
    def finished(self) -> int:
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)

    @property
    def failures(self) -> int:
        return self.counts.get("FAIL", 0)

    @property
    def baseline_mean(self) -> float | None:
        return statistics.fmean(self.baseline_values) if self.baseline_values else None

    @property
    def baseline_std(self) -> float | None:
        """Sample standard deviation (n - 1); 0 for a single baseline run."""
        if not self.baseline_values:
            return None
        if len(self.baseline_values) == 1:
            return 0.0
        return statistics.stdev(self.baseline_values)


def snapshot(study: optuna.Study) -> StudySnapshot:
    """Read the study's trials once and summarise them."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in TrialState}
    discarded = 0
    fail_reasons: dict[str, int] = {}
    for t in trials:
        if is_discarded(t):
            discarded += 1
            continue
        counts[t.state.name] += 1
        reason = fail_reason(t)
        if reason is not None:
            # "interrupted (SIGTERM)", "error: ...", "worker lost: ..." (the heartbeat check).
            kind = reason.split(":")[0].split(" (")[0]
            kind = "errored" if kind == "error" else kind
            fail_reasons[kind] = fail_reasons.get(kind, 0) + 1
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pick = max if maximize else min
    best = pick(complete, key=lambda t: t.value, default=None)
    search = [t for t in complete if not t.user_attrs.get("hpo_baseline")]
    best_search = pick(search, key=lambda t: t.value, default=None)
    baseline = tuple(
        float(t.value) for t in complete if t.user_attrs.get("hpo_baseline") and not is_twin(t)
    )
    twins = [t for t in trials if is_twin(t) and t.state in SLOT_STATES]
    twin_values = {t.user_attrs[TWIN_OF_ATTR]: float(t.value) for t in complete if is_twin(t)}
    pairs = tuple(
        float(t.value) - twin_values[t.user_attrs[TWIN_ATTR]]
        for t in complete
        if not is_twin(t) and t.user_attrs.get(TWIN_ATTR) in twin_values
    )
    user_attrs = study.user_attrs
    budget = user_attrs.get(BUDGET_ATTR)
    budget = budget + len(twins) if isinstance(budget, int) else None
    return StudySnapshot(
        name=study.study_name,
        direction="maximize" if maximize else "minimize",
        budget=budget,
        counts=counts,
        discarded=discarded,
        fail_reasons=fail_reasons,
        best_number=None if best is None else best.number,
        best_value=None if best is None else float(best.value),
        best_params={} if best is None else dict(best.params),
        best_is_baseline=bool(best is not None and best.user_attrs.get("hpo_baseline")),
        best_search_number=None if best_search is None else best_search.number,
        best_search_value=None if best_search is None else float(best_search.value),
        baseline_values=baseline,
        twins=len(twins),
        twins_finished=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in twins),
        pair_differences=pairs,
        metric=_metric(study, user_attrs),
    )


def _metric(study: optuna.Study, user_attrs: dict[str, Any]) -> str | None:
    """The objective's name: Optuna's metric name, else the stored config's ``metric``."""
    with warnings.catch_warnings():  # metric_names is experimental in Optuna 4 and 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        names = study.metric_names
    if names and len(names) == 1:
        return names[0]
    config = user_attrs.get(ATTR_CONFIG)
    metric = config.get("metric") if isinstance(config, dict) else None
    return metric if isinstance(metric, str) else None


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_status(snap: StudySnapshot) -> list[str]:
    """The lines ``hpo status STUDY`` and the end of ``hpo run`` print."""
    budget = "?" if snap.budget is None else str(snap.budget)
    states = ", ".join(f"{name.lower()} {n}" for name, n in snap.counts.items() if n)
    if snap.fail_reasons:
        reasons = ", ".join(f"{n} {kind}" for kind, n in sorted(snap.fail_reasons.items()))
        states = states.replace(f"fail {snap.failures}", f"fail {snap.failures} ({reasons})")
    lines = [
        f"study {snap.name} ({snap.direction}): {snap.finished}/{budget} trials finished"
        + (f"; {states}" if states else "; no trials yet")
        + (f"; {snap.discarded} over-budget ask{'s' if snap.discarded > 1 else ''} discarded"
           if snap.discarded else ""),
    ]
    label = snap.metric if snap.percent else "value"
    if snap.best_number is not None:
        tag = " [baseline]" if snap.best_is_baseline else ""
        params = ", ".join(f"{k}={_short(v)}" for k, v in snap.best_params.items())
        lines.append(
            f"  best: trial {snap.best_number}{tag} {label} {snap.value_text(snap.best_value)}"
            + (f" ({params})" if params else "")
        )
    if snap.best_is_baseline and snap.best_search_number is not None:
        lines.append(f"  best search trial: {snap.best_search_number} {label} "
                     f"{snap.value_text(snap.best_search_value)}")
    if snap.baseline_values:
        spread = (f"{100 * snap.baseline_std:.2f} pp" if snap.percent
                  else f"{snap.baseline_std:.4f}")
        lines.append(
            f"  baseline (PyTorch derivatives): mean {snap.value_text(snap.baseline_mean)} "
            f"std {spread} over {len(snap.baseline_values)} runs"
        )
        if snap.best_search_value is not None:
            diff = snap.best_search_value - snap.baseline_mean
            lines.append(f"  best search trial - baseline mean: {snap.diff_text(diff)}")
    if snap.twins:
        lines.append(
            f"  twins (PyTorch derivatives, paired with tuned trials): {snap.twins} "
            f"({snap.twins_finished} finished; not in the search budget)"
        )
    if snap.pair_differences:
        lines.append(
            f"  tuned - twin: mean {snap.diff_text(statistics.fmean(snap.pair_differences))} over "
            f"{len(snap.pair_differences)} complete pairs (hpo compare for the statistics)"
        )
    return lines


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ProgressMonitor:
    """Poll the storage and write one progress line per change to ``stream``.

    On a terminal the line is rewritten in place; otherwise a new line is written when the
    number of finished trials changes.
    """

    def __init__(self, study: optuna.Study, stream: TextIO | None = None) -> None:
        self.study = study
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self._first_finished: int | None = None
        self._last_line = ""
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, snap: StudySnapshot) -> str:
        elapsed = time.monotonic() - self.started
        if self._first_finished is None:
            self._first_finished = snap.finished
        done_here = snap.finished - self._first_finished
        remaining = None if snap.budget is None else max(snap.budget - snap.finished, 0)
        eta = None
        if remaining == 0:
            eta = 0.0
        elif remaining is not None and done_here > 0:
            eta = elapsed / done_here * remaining
        best = ("-" if snap.best_value is None
                else f"{snap.value_text(snap.best_value)} (#{snap.best_number})")
        if snap.percent:
            best = f"{snap.metric} {best}"
        budget = "?" if snap.budget is None else snap.budget
        return (
            f"[{snap.name}] {snap.finished}/{budget} trials | running "
            f"{snap.counts.get('RUNNING', 0)} | best {best} | failures {snap.failures} | "
            f"elapsed {format_duration(elapsed)} | ETA {format_duration(eta)}"
        )

    def update(self) -> StudySnapshot:
        """Read the storage once and write the line if it changed."""
        snap = snapshot(self.study)
        text = self.line(snap)
        changed = text.split(" | elapsed")[0] != self._last_line.split(" | elapsed")[0]
        if self._tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif changed:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._last_line = text
        return snap

    def close(self) -> None:
        if self._tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
