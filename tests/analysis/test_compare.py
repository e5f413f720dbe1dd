"""Study-level comparison on temporary SQLite studies built with Optuna (no training)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from optuna.trial import TrialState

from hpo.analysis.compare import NothingToCompareError, compare_study, param_importances
from hpo.analysis.trials import pair_trials, read_trials
from hpo.errors import HpoError, StudyNotFoundError
from hpo.study.create import load_study
from tests.analysis._studies import StudyBuilder, run_compare_cli

RESAMPLES = 2000
F32 = ("fc", "mnist", "float32", "relu")
BF16 = ("fc", "mnist", "bfloat16", "relu")


def paired_study(tmp_path, name="paired"):
    """Paired mode: every tuned trial has a twin. float32 gains about +1 pp, bfloat16
    nothing (differences +-0.1, +-0.2, ... sum to 0). Plus plain baselines, a pruned,
    a diverged and a failed trial."""
    b = StudyBuilder(tmp_path, name)
    rng = np.random.default_rng(0)
    for seed in range(8):
        base = 0.97 + 0.001 * seed
        t = b.add(rpz=0.5 + 0.05 * seed, seed=seed, acc=base + 0.01 + rng.normal(0, 0.001))
        b.add(rpz=0.0, seed=seed, acc=base, baseline=True, twin_of=t)
        delta = 0.001 * (seed // 2 + 1) * (1 if seed % 2 else -1)
        t = b.add(precision="bfloat16", rpz=0.3, seed=seed, acc=base + delta)
        b.add(precision="bfloat16", rpz=0.0, seed=seed, acc=base, baseline=True, twin_of=t)
    for seed, acc in enumerate([0.960, 0.962, 0.964]):
        b.add(rpz=0.0, seed=100 + seed, acc=acc, baseline=True)
    b.add(rpz=0.9, seed=50, state=TrialState.PRUNED)
    b.add(rpz=0.8, seed=51, state=TrialState.PRUNED, diverged=True)
    b.add(precision="bfloat16", rpz=0.7, seed=52, state=TrialState.FAIL, kink_hits=None)
    return b


def by_group(result):
    return {g.group: g for g in result.groups}


def test_paired_mode_finds_the_twins_and_judges_each_group(tmp_path):
    b = paired_study(tmp_path)
    study, cfg = load_study("paired", b.url)
    result = compare_study(study, cfg, n_resamples=RESAMPLES)
    assert result.metric == "test_accuracy"
    groups = by_group(result)
    f32, bf16 = groups[F32], groups[BF16]
    assert f32.n_pairs == 8 and f32.paired.n == 8
    assert f32.paired.mean_diff == pytest.approx(1.0, abs=0.1)
    assert f32.paired.ci_low > 0
    assert f32.paired.verdict.startswith("tuning ReLU'(0) improved accuracy by +")
    assert bf16.n_pairs == 8
    assert bf16.paired.mean_diff == pytest.approx(0.0, abs=1e-9)
    assert bf16.paired.verdict.startswith("no evidence of a difference")
    # every pair is the tuned trial and its own twin
    twins = {r.number: r.twin_of for r in result.records if r.twin_of is not None}
    assert all(twins[p.default] == p.tuned for p in result.pairs)


def test_baseline_best_and_trial_counts_per_group(tmp_path):
    b = paired_study(tmp_path)
    study, cfg = load_study("paired", b.url)
    f32 = by_group(compare_study(study, cfg, n_resamples=RESAMPLES))[F32]
    # plain baselines (no twins) give the baseline accuracy
    assert f32.n_baseline == 3
    assert f32.baseline_mean == pytest.approx(96.2)
    assert f32.baseline_std == pytest.approx(0.2)
    assert f32.best_relu_prime_zero == pytest.approx(0.85)  # seed 7 has the top accuracy
    assert (f32.n_complete, f32.n_pruned, f32.n_diverged, f32.n_failed) == (19, 1, 1, 0)
    bf16 = by_group(compare_study(study, cfg, n_resamples=RESAMPLES))[BF16]
    assert bf16.n_failed == 1
    # paired mode without plain baselines: the twins are the baseline runs
    assert bf16.n_baseline == 8


def test_kink_hits_per_training_sample_epoch(tmp_path):
    b = StudyBuilder(tmp_path, "kinks")
    b.add(rpz=0.5, kink_hits=4000)
    records, _ = read_trials(b.study, b.cfg)
    assert records[0].kink_rate_per_sample
    assert records[0].kink_rate == pytest.approx(2.0)  # 4000 hits / (2000 samples * 1 epoch)


def test_plain_mode_pairs_by_seed_and_settings_and_counts_default_runs(tmp_path):
    b = StudyBuilder(tmp_path, "plain")
    for seed in range(3):
        b.add(rpz=0.0, seed=seed, acc=0.95, baseline=True)
    for i in range(6):
        b.add(rpz=0.1 + 0.1 * i, seed=0, acc=0.96)  # search trials keep seed 0
    b.add(rpz=0.5, seed=9, acc=0.99)  # no baseline with seed 9: unpaired
    result = compare_study(b.study, b.cfg, n_resamples=RESAMPLES)
    f32 = by_group(result)[F32]
    assert f32.n_pairs == 6
    assert {p.default for p in result.pairs} == {0}
    assert f32.paired.n == 1  # all six share one default run
    assert f32.paired.verdict.startswith("insufficient evidence: only 1 default runs (6 pairs)")


def test_pairing_ignores_default_runs_of_another_precision(tmp_path):
    b = StudyBuilder(tmp_path, "prec")
    b.add(precision="bfloat16", rpz=0.0, seed=0, baseline=True)
    b.add(precision="float32", rpz=0.4, seed=0)
    records, _ = read_trials(b.study, b.cfg)
    assert pair_trials(records) == []


def test_falls_back_to_validation_accuracy_without_test_accuracy(tmp_path):
    b = StudyBuilder(tmp_path, "val")
    b.add(rpz=0.3, acc=0.9, test=False)
    records, metric = read_trials(b.study, b.cfg)
    assert metric == "val_accuracy"
    assert records[0].accuracy == pytest.approx(90.0)


def test_study_without_completed_trials_is_a_clear_error(tmp_path):
    b = StudyBuilder(tmp_path, "empty")
    b.add(rpz=0.3, state=TrialState.PRUNED)
    with pytest.raises(NothingToCompareError, match="no completed trials yet .*1 pruned"):
        compare_study(b.study, b.cfg, n_resamples=RESAMPLES)
    assert NothingToCompareError.exit_code == 1


def test_against_a_study_with_the_derivative_fixed(tmp_path):
    tuned = StudyBuilder(tmp_path, "tuned")
    fixed = StudyBuilder(tmp_path, "fixed", search_derivative=False)
    rng = np.random.default_rng(1)
    for _ in range(20):
        tuned.add(rpz=float(rng.uniform()), seed=0, acc=float(0.98 + rng.normal(0, 0.001)))
        fixed.add(seed=0, acc=float(0.96 + rng.normal(0, 0.02)))
    fixed.add(seed=0, acc=0.5, baseline=True)  # baselines are not search trials
    result = compare_study(tuned.study, tuned.cfg, against=(fixed.study, fixed.cfg),
                           n_resamples=RESAMPLES)
    rows = {r.group: r for r in result.against}
    assert set(rows) == {"fc/mnist/float32/relu", "all"}
    assert rows["all"].b.size == 20
    r = rows["all"].result
    assert r.median_ci[0] > 0
    assert "tuned has a higher median accuracy than fixed" in r.verdict
    assert "tuned is more stable" in r.verdict
    table = result.against_table()
    assert list(table["group"]) == ["fc/mnist/float32/relu", "all"]
    assert table.loc[1, "a_std_pp"] < table.loc[1, "b_std_pp"]


def _pairs_of(b):
    study, cfg = load_study(b.study.study_name, b.url)
    return study, pair_trials(read_trials(study, cfg)[0])


def test_param_importances_edge_cases(tmp_path):
    one = StudyBuilder(tmp_path, "one")
    one.add(rpz=0.3)
    imp, note = param_importances(*_pairs_of(one))
    assert imp == {} and "no tuned trial has a default-derivative partner" in note

    single = StudyBuilder(tmp_path, "single")
    t = single.add(rpz=0.3, acc=0.96, sha="a" * 64)
    single.add(rpz=0.0, acc=0.95, baseline=True, twin_of=t, sha="b" * 64)
    imp, note = param_importances(*_pairs_of(single))
    assert imp == {} and note.startswith("not computed: only 1 of 1 pairs differ")
    assert note.endswith("need at least 5 differing pairs")

    few = StudyBuilder(tmp_path, "few")  # 4 of 7 pairs differ: too few to attribute
    for seed in range(7):
        t = few.add(rpz=0.1 * (seed + 1), seed=seed, acc=0.95 + 0.001 * seed, sha=f"{seed}" * 64)
        same = seed >= 4
        few.add(rpz=0.0, seed=seed, acc=0.95 + (0.001 * seed if same else 0.0), baseline=True,
                twin_of=t, sha=f"{seed}" * 64 if same else "f" * 64)
    imp, note = param_importances(*_pairs_of(few))
    assert imp == {} and note.startswith("not computed: only 4 of 7 pairs differ")

    flat = StudyBuilder(tmp_path, "flat")
    for seed in range(5):  # different bits, but the same +1 pp every time
        t = flat.add(rpz=0.3 + 0.1 * seed, seed=seed, acc=0.96, sha=f"{seed}" * 64)
        flat.add(rpz=0.0, seed=seed, acc=0.95, baseline=True, twin_of=t, sha="f" * 64)
    imp, note = param_importances(*_pairs_of(flat))
    assert imp == {} and note == "not computed: every paired difference is +1.00 pp"


def noise_study(tmp_path, name="noise", identical=True):
    """Paired mode where ReLU'(0) changed nothing (identical=True: every tuned trial has its
    twin's params_sha256 and accuracy), but the seed noise between pairs happens to rise with
    the sampled ReLU'(0): importances over raw accuracies credit it to ReLU'(0)."""
    b = StudyBuilder(tmp_path, name)
    rng = np.random.default_rng(3)
    for seed in range(12):
        rpz = 0.05 + 0.075 * seed
        acc = 0.95 + 0.002 * seed + float(rng.normal(0, 0.0002))
        sha = f"{seed:02x}" * 32
        t = b.add(rpz=rpz, precision=PRECISIONS[seed % 2], seed=seed, acc=acc, sha=sha,
                  kink_hits=0 if identical else 10 * seed)
        b.add(rpz=0.0, precision=PRECISIONS[seed % 2], seed=seed, acc=acc, baseline=True,
              twin_of=t, sha=sha if identical else "e" * 64,
              kink_hits=0 if identical else 10 * seed)
    return b


PRECISIONS = ["float32", "bfloat16"]


def test_raw_accuracy_would_credit_the_seed_noise_to_relu_prime_zero(tmp_path):
    """The issue's trap, kept as a control: Optuna's importance over the raw accuracy of the
    search trials gives ReLU'(0) a large share in a study where it changed nothing."""
    import optuna

    b = noise_study(tmp_path)
    search = [t for t in b.study.get_trials(deepcopy=False) if not t.user_attrs["hpo_baseline"]]
    raw = optuna.create_study(direction="maximize")
    raw.add_trials(search)
    assert optuna.importance.get_param_importances(raw)["relu_prime_zero"] > 0.5


def test_every_pair_identical_is_said_plainly_and_no_importance_is_given(tmp_path):
    from hpo.analysis.report import format_text

    b = noise_study(tmp_path)
    study, cfg = load_study("noise", b.url)
    result = compare_study(study, cfg, n_resamples=RESAMPLES)
    assert result.headline == "ReLU'(0) changed nothing here: 12/12 pairs bitwise identical"
    assert result.importances == {}
    assert "all 12 pairs are bitwise identical" in result.importance_note
    for g in result.groups:
        assert (g.n_pairs, g.n_identical_pairs, g.kink_hits_per_trial) == (6, 6, 0.0)
    table = result.table()
    assert list(table["n_identical_pairs"]) == [6, 6]
    assert list(table["kink_hits_per_trial"]) == [0.0, 0.0]
    text = "\n".join(format_text(result))
    assert "  ReLU'(0) changed nothing here: 12/12 pairs bitwise identical" in text
    assert "6 pairs, 6 bitwise identical (same params_sha256); 0 kink hits per trial" in text
    assert not re.search(r"relu_prime_zero \d", text)  # no importance printed for it


def test_importances_are_computed_on_the_paired_differences(tmp_path):
    """ReLU'(0)'s effect grows with its value (+4 pp x ReLU'(0)), whatever the precision;
    raw accuracy is driven by precision (bfloat16 runs, tuned and twin alike, are 3 pp
    lower). On the differences ReLU'(0) explains the effect, precision does not."""
    b = StudyBuilder(tmp_path, "effect")
    rng = np.random.default_rng(4)
    for seed in range(24):
        rpz = float(rng.uniform())
        precision = PRECISIONS[seed % 2]
        base = 0.95 - (0.03 if precision == "bfloat16" else 0.0) + float(rng.normal(0, 0.001))
        identical = seed % 6 == 0  # some pairs changed nothing
        gain = 0.0 if identical else 0.04 * rpz
        t = b.add(rpz=rpz, precision=precision, seed=seed, acc=base + gain,
                  sha=("0" if identical else "1") + f"{seed:063x}")
        b.add(rpz=0.0, precision=precision, seed=seed, acc=base, baseline=True, twin_of=t,
              sha="0" + f"{seed:063x}")
    study, cfg = load_study("effect", b.url)
    result = compare_study(study, cfg, n_resamples=RESAMPLES)
    assert result.headline is None
    assert set(result.importances) == {"relu_prime_zero", "precision"}
    assert result.importances["relu_prime_zero"] > result.importances["precision"]
    n_identical = sum(g.n_identical_pairs for g in result.groups)
    assert 0 < n_identical < 24 and sum(g.n_pairs for g in result.groups) == 24
    assert result.importance_note == f"from 24 pairs, {24 - n_identical} of 24 pairs differ"
    assert result.no_kink is None  # the default kink_hits=4000


def test_importances_beside_insufficient_evidence_carry_a_caveat(tmp_path):
    """6 differing pairs in float32 (enough for importances), 2 in bfloat16 (too few for a
    verdict there): the importances are shown, with the caveat naming bfloat16."""
    b = StudyBuilder(tmp_path, "thin")
    for seed in range(8):
        precision = "float32" if seed < 6 else "bfloat16"
        rpz = 0.1 + 0.1 * seed
        t = b.add(rpz=rpz, precision=precision, seed=seed, acc=0.95 + 0.02 * rpz,
                  sha=f"{seed}" * 64)
        b.add(rpz=0.0, precision=precision, seed=seed, acc=0.95, baseline=True, twin_of=t,
              sha="f" * 64)
    from hpo.analysis.report import format_text

    study, cfg = load_study("thin", b.url)
    result = compare_study(study, cfg, n_resamples=RESAMPLES)
    assert result.importances
    assert by_group(result)[("fc", "mnist", "bfloat16", "relu")].paired.verdict.startswith(
        "insufficient evidence")
    assert result.importance_note.startswith("from 8 pairs, 8 of 8 pairs differ; caveat: the "
                                             "paired test found insufficient evidence in "
                                             "fc/mnist/bfloat16/relu;")
    text = "\n".join(format_text(result))
    assert "not that ReLU'(0) has an effect there" in text


def test_no_kink_hit_anywhere_is_said_in_one_line_everywhere(tmp_path):
    """Every completed trial recorded 0 kink hits: the text, the JSON dict and the HTML
    report carry hints.no_kink_line; with one hit somewhere, none of them does."""
    from hpo.analysis.hints import KINK_LIKELY, no_kink_line
    from hpo.analysis.report import format_text, write_report

    b = noise_study(tmp_path)  # 24 completed trials, kink_hits 0 everywhere
    study, cfg = load_study("noise", b.url)
    result = compare_study(study, cfg, n_resamples=RESAMPLES)
    line = no_kink_line("these 24 completed trials")
    assert result.no_kink == line and KINK_LIKELY in line
    assert f"  {line}" in format_text(result)
    assert result.to_dict()["no_kink"] == line
    html = write_report(result, tmp_path / "out")[-1].read_text()
    assert "No kink hit: these 24 completed trials never put" in html

    (tmp_path / "x").mkdir()
    hit = noise_study(tmp_path / "x", "hit", identical=False)  # kink_hits 10 * seed
    study, cfg = load_study("hit", hit.url)
    other = compare_study(study, cfg, n_resamples=RESAMPLES)
    assert other.no_kink is None
    assert not any(t.startswith("  No kink hit") for t in format_text(other))


def test_pairs_without_a_fingerprint_are_not_counted_identical(tmp_path):
    b = StudyBuilder(tmp_path, "old")
    for seed in range(3):  # an older study: no params_sha256 recorded
        t = b.add(rpz=0.5, seed=seed, acc=0.95)
        b.add(rpz=0.0, seed=seed, acc=0.95, baseline=True, twin_of=t)
    study, cfg = load_study("old", b.url)
    result = compare_study(study, cfg, n_resamples=RESAMPLES)
    assert result.headline is None
    assert [p.identical for p in result.pairs] == [None] * 3
    assert by_group(result)[F32].n_identical_pairs == 0


# ----------------------------------------------------------------------------------
def test_cli_writes_csv_and_html(tmp_path, capsys):
    b = paired_study(tmp_path)
    out = tmp_path / "out"
    code = run_compare_cli(["compare", "paired", "--storage", b.url, "--output", str(out),
                     "--resamples", "500", "--seed", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "fc/mnist/float32/relu" in text and "tuning ReLU'(0) improved" in text
    assert (out / "compare_paired.csv").is_file()
    assert (out / "compare_paired.html").is_file()


def test_cli_unknown_study_is_study_not_found(tmp_path):
    b = paired_study(tmp_path)
    with pytest.raises(StudyNotFoundError) as err:
        run_compare_cli(["compare", "nope", "--storage", b.url, "--output", str(tmp_path)])
    assert err.value.exit_code == 1 and "\n" not in str(err.value)
    assert "paired" in str(err.value)  # lists the existing studies


def test_cli_missing_storage_file_is_an_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(HpoError):
        run_compare_cli(["compare", "nope", "--storage", url])
    assert not (tmp_path / "missing.db").exists()


def test_cli_json_is_one_object_with_the_no_kink_line_and_the_importance_note(
    tmp_path, capsys
):
    import json

    b = noise_study(tmp_path)
    assert run_compare_cli(["compare", "noise", "--storage", b.url, "--output",
                            str(tmp_path / "o"), "--resamples", "200", "--no-publish",
                            "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["headline"] == "ReLU'(0) changed nothing here: 12/12 pairs bitwise identical"
    assert payload["no_kink"].startswith("No kink hit: these 24 completed trials")
    assert payload["importances"] == {} and "all 12 pairs" in payload["importance_note"]
    assert [g["n_identical_pairs"] for g in payload["groups"]] == [6, 6]
    assert payload["published"] is None and len(payload["files"]) == 2
