"""The report of ``hpo reproduce epfl-hpo``: the with/without searches beside theirs.

Per model (MobileNetV3-small, FC [2000]): the "with" study against the "without" one as
``hpo compare WITH --against WITHOUT`` does (:func:`hpo.analysis.compare.compare_study`, on
validation accuracy), the proof that ReLU6'(0) and ReLU6'(6) reached every activation (the
model audit's count, per trial and for the best trial's model rebuilt here), and the best
trials beside theirs (``hpo/analysis/paper/epfl_hpo.csv``: every trial of theirs, with file).
"""

from __future__ import annotations

import html
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from hpo.analysis.compare import NothingToCompareError, compare_study
from hpo.analysis.publish import publish_reproduction
from hpo.analysis.report import html_page, html_table
from hpo.analysis.report import write_report as write_compare
from hpo.config.reproduce.epfl_hpo import MODELS, EpflHpoPlan, epfl_hpo_config, plan
from hpo.config.study import StudyConfig
from hpo.engine.models.activations import kinked_modules
from hpo.engine.models.build import build_model
from hpo.engine.numerics.platform import platform_record, platform_summary
from hpo.objective.attrs import trial_attrs
from hpo.storage.urls import resolve_storage_url
from hpo.worker.local import StudyRun, run_study

__all__ = [
    "DEFECTS",
    "AuditProof",
    "Best",
    "EpflHpoReport",
    "EpflHpoRun",
    "Pairing",
    "build_report",
    "figures",
    "format_text",
    "note_markdown",
    "paper_trials",
    "reproduce_epfl_hpo",
    "write_report",
]

logger = logging.getLogger(__name__)

PAPER_SOURCE = ("Martorella et al., ReScience C 2023; github.com/CS-433/ml-project-2-"
                "ristrettolearning-2, notebooks/out/results_with{,out}_subgradient{,_fc}.csv "
                "(hpo/analysis/paper/epfl_hpo.csv: every trial, with its file)")
LABEL = {"mobilenet": "MobileNetV3-small (3-channel MNIST)", "fc": "FC [2000]"}
DEFECTS: Mapping[str, str] = {
    "activation-kwarg": "their tuning code calls mobilenet_v3_small(activation=...) but the "
                        "model reads activation_fn= (ristretto/models/_mobilenet_v3.py): "
                        "**kwargs swallowed it, so every MobileNet trial, 'with' included, "
                        "trained ReLU with ReLU'(0) = 0: their with/without compared nothing",
    "set": "their ReLU6 backward sets the gradient to alpha at 0 and beta at 6 "
           "(ristretto/activations/relu6.py) instead of multiplying: kink_grad=set here",
    "one-seed": "one run per trial and a random init per trial (seed=None): a difference "
                "between trials mixes the hyperparameters with the seed",
    "asha-loss": "protocol difference, not theirs: their ASHA ranks trials by validation "
                 "loss; our SuccessiveHalvingPruner ranks by validation accuracy (the "
                 "engine reports accuracy per epoch), same rungs (grace 3, reduction 2)",
}
PROTOCOL = ("ReLU6 everywhere, bfloat16 (as theirs), Adam, batch in {32,64,128}, lr "
            "log-uniform [1e-4, 1e-2], ToTensor inputs, 12000 of the 60000 training images as "
            "the validation split (their 20%); Optuna RandomSampler(seed 0) and "
            "SuccessiveHalvingPruner(min_resource 3, reduction_factor 2); every trial trains "
            "seed 0 (theirs: a random init per trial)")


@dataclass(frozen=True)
class Best:
    """The best trial of one (model, variant): ours (by validation accuracy) beside theirs."""

    model: str
    variant: str
    study: str
    complete: int
    pruned: int
    total: int
    trial: int | None
    val_accuracy: float | None  # %
    test_accuracy: float | None  # %
    params: dict[str, Any]
    theirs_lowest_loss: float | None  # their pick: the lowest-loss trial's accuracy (%)
    theirs_best_accuracy: float | None
    theirs_trial: str | None
    theirs_params: dict[str, Any]
    theirs_source: str | None
    defects: str


@dataclass(frozen=True)
class AuditProof:
    """Did ReLU6'(0) and ReLU6'(6) reach every activation of a "with" study's model?"""

    model: str
    configured_modules: int | None  # the audit's count for the rebuilt best trial
    calls_per_forward: int | None
    kept_other: dict[str, int]  # kinked, not ReLU-family (Hardswish...), PyTorch's derivative
    carrying: int | None  # modules whose derivatives equal the trial's alpha and beta
    trials: int  # completed "with" trials (pruned ones record no count)
    trials_all_reached: int  # ... whose recorded count equals the audit's
    theirs: str
    summary: str


@dataclass(frozen=True)
class Pairing:
    """``hpo compare WITH --against WITHOUT`` on validation accuracy, search trials."""

    model: str
    command: str
    n_with: int
    n_without: int
    median_diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: str


@dataclass(frozen=True)
class EpflHpoReport:
    """What ``hpo reproduce epfl-hpo`` prints, writes and returns as JSON."""

    plan: EpflHpoPlan
    bests: list[Best]
    audits: list[AuditProof]
    pairings: list[Pairing]
    platform: dict[str, Any] | None
    platform_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "; ".join(f"{p.model}: with vs without: {p.verdict}" for p in self.pairings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "studies": [b.study for b in self.bests], "quick": self.plan.quick,
            "kink_grad": self.plan.kink_grad, "verdict": self.verdict, "protocol": PROTOCOL,
            "paper_source": PAPER_SOURCE, "defects": dict(DEFECTS), "notes": self.notes,
            "platform": self.platform, "platform_source": self.platform_source,
            "best": [asdict(b) for b in self.bests], "audit": [asdict(a) for a in self.audits],
            "compare": [asdict(p) for p in self.pairings],
        }

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(b) for b in self.bests])


# ----------------------------------------------------------------------------------
def paper_trials() -> pd.DataFrame:
    """Every trial of theirs (the shipped ``epfl_hpo.csv``), one row each."""
    text = resources.files("hpo.analysis").joinpath("paper", "epfl_hpo.csv").read_text("utf-8")
    return pd.read_csv(io.StringIO("".join(
        line for line in io.StringIO(text) if not line.startswith("#"))))


def _theirs(model: str, variant: str) -> dict[str, Any]:
    df = paper_trials()
    df = df[(df.model == model) & (df.variant == variant)]
    if df.empty:
        return {"theirs_lowest_loss": None, "theirs_best_accuracy": None,
                "theirs_trial": None, "theirs_params": {}, "theirs_source": None}
    pick = df.loc[df["loss"].idxmin()]
    return {
        "theirs_lowest_loss": round(float(pick.accuracy), 4),
        "theirs_best_accuracy": round(float(df.accuracy.max()), 4),
        "theirs_trial": str(pick.trial_id),
        "theirs_params": {"batch_size": int(pick.batch_size), "lr": float(pick.lr),
                          "alpha": float(pick.alpha), "beta": float(pick.beta)},
        "theirs_source": f"{pick.source}@{str(pick.commit)[:7]}",
    }


def _best(study: optuna.Study, model: str, variant: str, total: int) -> Best:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    top = max(done, key=lambda t: (t.value, -t.number)) if done else None
    attrs = trial_attrs(top.user_attrs) if top else {}
    test = attrs.get("test_accuracy")
    defects = ["set"] * (variant == "with") + ["one-seed", "asha-loss"]
    if model == "mobilenet":
        defects.insert(0, "activation-kwarg")
    return Best(
        model=model, variant=variant, study=study.study_name, complete=len(done),
        pruned=sum(t.state == TrialState.PRUNED for t in trials), total=total,
        trial=None if top is None else top.number,
        val_accuracy=None if top is None else 100.0 * float(top.value),
        test_accuracy=None if test is None else 100.0 * float(test),
        params={} if top is None else dict(top.params), defects=",".join(defects),
        **_theirs(model, variant),
    )


def _audit(study: optuna.Study, cfg: StudyConfig, model: str) -> AuditProof:
    """Rebuild the best (else first) finished "with" trial's model, audit it, and check
    every configured module carries that trial's ReLU6'(0) and ReLU6'(6); then compare the
    count every trial recorded with the audit's."""
    finished = [t for t in study.get_trials(deepcopy=False)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    theirs = ("0 of them: every ReLU-family module of their 'with' MobileNet was ReLU with "
              "ReLU'(0) = 0 (defect activation-kwarg)" if model == "mobilenet" else
              "all of them (their FullyConnected reads activation=)")
    if not finished:
        return AuditProof(model, None, None, {}, None, 0, 0, theirs, "no finished trial yet")
    done = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    pick = max(done, key=lambda t: t.value) if done else finished[0]
    spec = cfg.train_spec(pick.params).replace(device="cpu")
    built = build_model(spec)
    alpha, beta = spec.relu_prime_zero, spec.relu6_prime_six
    mods = kinked_modules(built.model)
    carrying = sum(m.derivatives == (alpha, beta) and m.kink_grad == spec.kink_grad
                   for _, m in mods)
    counts = [trial_attrs(t.user_attrs).get("configured_activations") for t in finished]
    counts = [c for c in counts if c is not None]
    a = built.audit
    return AuditProof(
        model=model, configured_modules=a.configured_modules,
        calls_per_forward=a.configured_calls_per_forward, kept_other=dict(a.other_kinked),
        carrying=carrying, trials=len(counts),
        trials_all_reached=sum(int(c) == built.configured_activations for c in counts),
        theirs=theirs,
        summary=(f"trial {pick.number} (ReLU6'(0)={alpha:.4g}, ReLU6'(6)={beta:.4g}): "
                 f"{carrying}/{len(mods)} ReLU6 modules carry both; audit: {a.summary()}; "
                 "every trial's model passed the same audit with its own values when it was "
                 "built (the engine refuses a model that fails it)"),
    )


def _pairing(model: str, a: tuple[optuna.Study, StudyConfig],
             b: tuple[optuna.Study, StudyConfig], out: Path | None) -> tuple[Pairing, list[Path]]:
    """``hpo compare A --against B --metric val_accuracy``: the row over all trials."""
    command = (f"hpo compare {a[0].study_name} --against {b[0].study_name} "
               "--metric val_accuracy")
    try:
        c = compare_study(a[0], a[1], against=b, metric="val_accuracy")
    except NothingToCompareError as exc:
        return Pairing(model, command, 0, 0, None, None, None, None, str(exc)), []
    row = next(r for r in c.against if r.group == "all")
    r = row.result
    files = write_compare(c, out) if out is not None else []
    return Pairing(model, command, r.n_a, r.n_b, r.median_diff, r.median_ci[0],
                   r.median_ci[1], r.p_value, r.verdict), files


def build_report(
    studies: Mapping[tuple[str, str], tuple[optuna.Study, StudyConfig]], p: EpflHpoPlan, *,
    platform: Mapping[str, Any] | None = None, out: str | Path | None = None,
) -> tuple[EpflHpoReport, list[Path]]:
    """The best trials beside theirs, the audit proof and the with/without comparison.

    Args:
        studies: ``(model, variant) -> (study, config)`` for every study of ``p``.
        p: the plan.
        platform: the record to report when no trial carries one (this process's).
        out: where ``hpo compare``'s own CSV and HTML go (none written when None).
    """
    bests, audits, pairings, files = [], [], [], []
    recorded: dict[str, Any] = {}
    for model in p.models:
        for variant in ("with", "without"):
            study, cfg = studies[(model, variant)]
            bests.append(_best(study, model, variant, cfg.n_trials))
            for t in study.get_trials(deepcopy=False):
                recorded = recorded or dict(trial_attrs(t.user_attrs).get("platform") or {})
        audits.append(_audit(*studies[(model, "with")], model))
        pairing, written = _pairing(model, studies[(model, "with")],
                                    studies[(model, "without")], None if out is None else Path(out))
        pairings.append(pairing)
        files += written
    notes = [f"kink_grad={p.kink_grad} for the tuned derivatives"]
    for model in p.models:
        s = p.search(model)
        notes.append(f"{model}: {s.trials} trials x {s.epochs} epochs per study, first rung "
                     f"after {s.min_resource} epochs, {s.train_subset or 60000 - s.val_size} "
                     f"training and {s.val_size} validation images")
    if p.quick:
        notes.insert(0, "QUICK run: fewer trials and epochs on a slice of the training set, "
                     "the first rung earlier, MobileNet's batch-norm statistics recalibrated "
                     "before each evaluation; not their protocol, a sanity check")
    report = EpflHpoReport(plan=p, bests=bests, audits=audits, pairings=pairings,
                           platform=dict(recorded or platform or {}) or None,
                           platform_source="trials" if recorded else "report", notes=notes)
    return report, files


# ----------------------------------------------------------------------------------
def _f(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def format_text(r: EpflHpoReport) -> list[str]:
    """A readable report: verdict, best trials beside theirs, audit, compare rows."""
    lines = [f"EPFL subgradient-as-hyperparameter reproduction{' (QUICK)' if r.plan.quick else ''}",
             f"verdict {r.verdict}",
             "best trial per study (validation accuracy %, ours by accuracy; theirs: their "
             "pick, the lowest-loss trial, and their best accuracy):"]
    for b in r.bests:
        lines.append(
            f"  {b.model:<9} {b.variant:<7} {b.study}: {b.complete}/{b.total} complete, "
            f"{b.pruned} pruned; best #{b.trial} val {_f(b.val_accuracy)} test "
            f"{_f(b.test_accuracy)} {_params(b.params)} | theirs "
            f"{_f(b.theirs_lowest_loss, '.3f')} (best acc {_f(b.theirs_best_accuracy, '.3f')}, "
            f"{b.theirs_trial}, {b.theirs_source}) [{b.defects}]")
    lines.append("did alpha and beta reach every activation (model audit):")
    for a in r.audits:
        lines.append(f"  {a.model}: {a.summary}; {a.trials_all_reached}/{a.trials} trials "
                     f"recorded the audit's count; theirs: {a.theirs}")
    lines.append("with vs without (hpo compare --against, search trials, validation accuracy):")
    for p in r.pairings:
        lines.append(f"  {p.model}: {p.command}: median diff {_f(p.median_diff, '+.2f')} pp "
                     f"[{_f(p.ci_low, '+.2f')}, {_f(p.ci_high, '+.2f')}], n {p.n_with} vs "
                     f"{p.n_without}: {p.verdict}")
    lines += [f"defect {k}: {t}" for k, t in DEFECTS.items()]
    lines += [f"note: {n}" for n in r.notes]
    lines += [f"protocol: {PROTOCOL}", f"theirs: {PAPER_SOURCE}",
              f"platform ({r.platform_source}): {platform_summary(r.platform)}"]
    return lines


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())




def note_markdown(r: EpflHpoReport) -> str:
    """A Markdown note for the dashboard; its first line is the verdict."""
    lines = [r.verdict, "",
             "| model | variant | ours best val % | test % | theirs (lowest loss) | "
             "theirs best % | defects |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {b.model} | {b.variant} | {_f(b.val_accuracy)} | {_f(b.test_accuracy)} | "
              f"{_f(b.theirs_lowest_loss)} | {_f(b.theirs_best_accuracy)} | {b.defects} |"
              for b in r.bests]
    lines += ["", *[f"- audit {a.model}: {a.summary}; theirs: {a.theirs}" for a in r.audits],
              *[f"- `{p.command}`: {p.verdict}" for p in r.pairings],
              *[f"- **{k}**: {t}" for k, t in DEFECTS.items()], *[f"- {n}" for n in r.notes],
              f"- platform: {platform_summary(r.platform)}"]
    return "\n".join(lines)


def figures(r: EpflHpoReport) -> dict[str, go.Figure]:
    """``epfl-hpo-best``: best validation accuracy per study, ours beside theirs."""
    fig = go.Figure()
    x = [f"{b.model} {b.variant}" for b in r.bests]
    fig.add_trace(go.Bar(x=x, y=[b.val_accuracy for b in r.bests], name="ours (best trial)"))
    fig.add_trace(go.Bar(x=x, y=[b.theirs_lowest_loss for b in r.bests],
                         name="theirs (lowest-loss trial)"))
    fig.update_layout(barmode="group", title="Best validation accuracy, with vs without "
                      "ReLU6'(0), ReLU6'(6) searched", yaxis_title="validation accuracy (%)")
    return {"epfl-hpo-best": fig}


def write_report(r: EpflHpoReport, out_dir: str | Path = "results") -> list[Path]:
    """``epfl_hpo.csv`` (one row per study) and ``epfl_hpo.html`` (with a ``-quick`` tag)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = "epfl_hpo_quick" if r.plan.quick else "epfl_hpo"
    csv_path = out / f"{tag}.csv"
    r.table().to_csv(csv_path, index=False, float_format="%.6g")
    esc = html.escape
    parts = [f"<h2>Verdict</h2><p>{esc(r.verdict)}</p>",
             f"<p>Protocol: {esc(PROTOCOL)}. Theirs: {esc(PAPER_SOURCE)}.</p>",
             "<h2>Their defects (column <code>defects</code>)</h2><ul>"
             + "".join(f"<li><b>{esc(k)}</b>: {esc(t)}</li>" for k, t in DEFECTS.items())
             + "</ul><ul>" + "".join(f"<li>{esc(n)}</li>" for n in r.notes) + "</ul>",
             f"<p>Platform ({esc(r.platform_source)}): {esc(platform_summary(r.platform))}</p>",
             figures(r)["epfl-hpo-best"].to_html(full_html=False, include_plotlyjs=True),
             "<h2>Best trials</h2>", html_table(r.table()),
             "<h2>Audit</h2>", html_table(pd.DataFrame([asdict(a) for a in r.audits])),
             "<h2>with vs without</h2>", html_table(pd.DataFrame([asdict(p) for p in r.pairings]))]
    html_path = out / f"{tag}.html"
    html_path.write_text(html_page("EPFL subgradient-as-hyperparameter reproduction", parts),
                         encoding="utf-8")
    return [csv_path, html_path]


# ----------------------------------------------------------------------------------
@dataclass
class EpflHpoRun:
    """What :func:`reproduce_epfl_hpo` ran and wrote (one run per study)."""

    report: EpflHpoReport
    runs: list[StudyRun]
    files: list[Path]

    @property
    def elapsed_s(self) -> float:
        return sum(run.elapsed_s for run in self.runs)

    @property
    def exit_code(self) -> int:
        return max((run.exit_code for run in self.runs), default=0)

    def problems(self) -> list[str]:
        return [line for run in self.runs for line in run.problems()]


def reproduce_epfl_hpo(
    *, quick: bool = False, models: Sequence[str] | None = None, kink_grad: str = "set",
    workers: int = 1, storage: str | None = None, output: str | Path = "results",
    data_dir: str | Path | None = None, log_dir: str | Path | None = None,
    debug: bool = False, announce: Callable[[str], None] | None = None,
) -> EpflHpoRun:
    """``hpo reproduce epfl-hpo``: the with and without studies of each model (created or
    resumed, one after the other, each by ``workers`` local processes), then the report.

    Args:
        quick: fewer trials and epochs on a slice of the training set (names say so).
        models: a subset of ``mobilenet``, ``fc`` (default both).
        kink_grad: ``set`` (their code, default) or ``multiply`` for the tuned derivatives.
        log_dir: the parent of one log folder per study.
    """
    p = plan(models=tuple(models or MODELS), kink_grad=kink_grad, quick=quick)
    url = resolve_storage_url(None, storage)
    runs, studies = [], {}
    for model, variant in p.studies():
        cfg = epfl_hpo_config(p, model, variant, url)
        logs = None if log_dir is None else Path(log_dir) / cfg.name
        run = run_study(cfg, workers=workers, storage=url, log_dir=logs, data_dir=data_dir,
                        debug=debug, announce=announce,
                        summary=f"{cfg.n_trials} trials{' QUICK' if p.quick else ''}")
        runs.append(run)
        studies[(model, variant)] = (run.study, run.config)
    report, compare_files = build_report(studies, p, platform=platform_record(), out=output)
    files = write_report(report, output)
    publish_reproduction([run.study for run in runs], note=note_markdown(report),
                         figures=figures(report), files=files, url=url)
    return EpflHpoRun(report, runs, [*files, *compare_files])
