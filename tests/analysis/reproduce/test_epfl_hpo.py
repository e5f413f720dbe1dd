"""The epfl-hpo report: their trials, the audit proof, with against without, best trials."""

from __future__ import annotations

import json

import optuna
import pytest

from hpo.analysis.reproduce.epfl_hpo import (
    build_report,
    figures,
    format_text,
    note_markdown,
    paper_trials,
    write_report,
)
from hpo.config.reproduce.epfl_hpo import epfl_hpo_config, plan


def test_their_trials_give_the_issues_best_numbers_and_name_their_files() -> None:
    df = paper_trials()
    assert len(df) == 10 + 10 + 12 + 12
    assert set(df.source) == {f"notebooks/out/results_{v}_subgradient{m}.csv"
                              for v in ("with", "without") for m in ("", "_fc")}

    def pick(model: str, variant: str) -> float:
        d = df[(df.model == model) & (df.variant == variant)]
        return float(d.loc[d["loss"].idxmin()].accuracy)

    # 96.92, 97.36, 97.93 and 98.32 rounded half up: 11630, 11683, 11751 and 11798 of 12000
    assert pick("mobilenet", "with") == pytest.approx(96.91667, abs=1e-5)
    assert pick("mobilenet", "without") == pytest.approx(97.35833, abs=1e-5)
    assert pick("fc", "with") == pytest.approx(97.925) and pick("fc", "without") == (
        pytest.approx(98.31667, abs=1e-5))
    fc_with = df[(df.model == "fc") & (df.variant == "with")]
    assert float(fc_with.accuracy.max()) == pytest.approx(97.975)  # 97.98 rounded half up
    assert set(df[df.variant == "without"].alpha) == {0.0}


def _study(cfg, values: list[float], tuned: bool) -> optuna.Study:
    study = optuna.create_study(study_name=cfg.name, direction="maximize")
    for i, v in enumerate(values):
        params = {"batch_size": 64, "lr": 1e-3 * (i + 1)}
        if tuned:
            params.update(relu_prime_zero=0.1 * (i + 1), relu6_prime_six=0.05 * (i + 1))
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: cfg.search_space[k] for k in params}, value=v,
            user_attrs={"test_accuracy": v - 0.001, "kink_hits": 0, "result": {
                "configured_activations": 1, "platform": {"torch": "x", "cpu_model": "y"}}}))
    return study


def test_the_report_proves_the_derivatives_reached_the_model_and_compares(tmp_path) -> None:
    p = plan(models=("fc",))
    cw = epfl_hpo_config(p, "fc", "with", "sqlite:///unused.db")
    cwo = epfl_hpo_config(p, "fc", "without", "sqlite:///unused.db")
    studies = {("fc", "with"): (_study(cw, [0.95, 0.96, 0.97, 0.94, 0.955], True), cw),
               ("fc", "without"): (_study(cwo, [0.97, 0.975, 0.98, 0.972, 0.971], False), cwo)}
    r, files = build_report(studies, p, out=tmp_path)
    with_best, without_best = r.bests
    assert (with_best.trial, with_best.val_accuracy) == (2, 97.0)
    assert with_best.params["relu_prime_zero"] == 0.30000000000000004
    assert with_best.theirs_lowest_loss == 97.925 and with_best.theirs_best_accuracy == 97.975
    assert without_best.val_accuracy == 98.0 and without_best.theirs_lowest_loss == 98.3167
    assert "activation-kwarg" not in with_best.defects and "set" in with_best.defects
    audit = r.audits[0]
    # FC [2000]: one ReLU6 module, and it carries the best trial's alpha and beta
    assert (audit.configured_modules, audit.carrying) == (1, 1)
    assert (audit.trials, audit.trials_all_reached) == (5, 5)
    pairing = r.pairings[0]
    assert pairing.command == ("hpo compare epfl-hpo-fc-with --against epfl-hpo-fc-without "
                               "--metric val_accuracy")
    assert (pairing.n_with, pairing.n_without) == (5, 5) and pairing.median_diff < 0
    assert r.verdict.startswith("fc: with vs without: ")
    assert any(f.name.startswith("compare_epfl-hpo-fc-with") for f in files)
    text = "\n".join(format_text(r))
    assert "defect activation-kwarg" in text and "theirs 97.925" in text
    assert json.loads(json.dumps(r.to_dict()))["compare"][0]["n_with"] == 5
    assert note_markdown(r).splitlines()[0] == r.verdict
    assert set(figures(r)) == {"epfl-hpo-best"}
    csv_path, html_path = write_report(r, tmp_path)
    assert csv_path.name == "epfl_hpo.csv" and "Audit" in html_path.read_text()
