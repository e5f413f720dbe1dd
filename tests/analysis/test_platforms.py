"""The platform-mismatch warnings of ``hpo compare``, on hand-made trials with real records."""

from __future__ import annotations

import copy

from optuna.trial import TrialState

from hpo.analysis.compare import compare_study
from hpo.analysis.platforms import platform_key, platform_notes
from hpo.analysis.report import format_text
from hpo.analysis.trials import pair_trials, read_trials
from hpo.engine.numerics.platform import platform_record, platform_summary
from hpo.study.create import load_study
from tests.analysis._studies import StudyBuilder

HERE = platform_record("cpu")


def other_cpu() -> dict:
    record = copy.deepcopy(HERE)
    record["cpu_model"] = "Intel(R) Xeon(R) Platinum 8481C"
    record["cpu_capability"] = "AVX2"
    return record


def notes(b):
    records, _ = read_trials(b.study, b.cfg)
    return platform_notes(records, pair_trials(records))


def test_one_platform_gives_no_warning(tmp_path):
    b = StudyBuilder(tmp_path, "same")
    for seed in range(3):
        t = b.add(rpz=0.5, seed=seed, platform=HERE)
        b.add(rpz=0.0, seed=seed, baseline=True, twin_of=t, platform=copy.deepcopy(HERE))
    assert notes(b) == ([], None)


def test_a_pair_and_a_group_across_two_cpus_are_named(tmp_path):
    b = StudyBuilder(tmp_path, "mixed")
    t = b.add(rpz=0.5, seed=0, platform=HERE)
    b.add(rpz=0.0, seed=0, baseline=True, twin_of=t, platform=other_cpu())  # trial 1
    t = b.add(rpz=0.5, seed=1, platform=HERE)
    b.add(rpz=0.0, seed=1, baseline=True, twin_of=t, platform=HERE)
    warnings, note = notes(b)
    assert note is None
    group, pairs = warnings
    assert group.startswith("fc/mnist/float32/relu: its completed trials ran on 2 platforms, "
                            "differing in cpu_model, cpu_capability (")
    assert f"{platform_summary(HERE)}: 3 trial(s)" in group
    assert "Intel(R) Xeon(R) Platinum 8481C (AVX2)" in group
    assert pairs.startswith("1 of 2 pairs ran on different platforms (tuned vs default trial "
                            "0 vs 1; differing in cpu_capability, cpu_model)")


def test_a_flag_that_the_summary_hides_is_shown_with_its_values(tmp_path):
    b = StudyBuilder(tmp_path, "flags")
    tf32 = copy.deepcopy(HERE)
    tf32["flags"]["cuda_matmul_allow_tf32"] = not HERE["flags"]["cuda_matmul_allow_tf32"]
    assert platform_summary(tf32) == platform_summary(HERE)
    assert platform_key(tf32) != platform_key(HERE)
    t = b.add(rpz=0.5, seed=0, platform=HERE)
    b.add(rpz=0.0, seed=0, baseline=True, twin_of=t, platform=tf32)
    group = notes(b)[0][0]
    assert "differing in flags.cuda_matmul_allow_tf32" in group
    assert "[flags.cuda_matmul_allow_tf32=True]" in group
    assert "[flags.cuda_matmul_allow_tf32=False]" in group


def test_trials_without_a_record_are_counted_not_checked(tmp_path):
    b = StudyBuilder(tmp_path, "old")
    t = b.add(rpz=0.5, seed=0)  # no platform attribute: an older study
    b.add(rpz=0.0, seed=0, baseline=True, twin_of=t, platform=other_cpu())
    b.add(rpz=0.4, seed=1, state=TrialState.PRUNED)
    warnings, note = notes(b)
    assert warnings == []
    assert note == ("1 of 2 completed trials have no platform record (run before platforms "
                    "were recorded): their platform is not checked")


def test_hpo_compare_prints_the_warning(tmp_path):
    b = StudyBuilder(tmp_path, "printed")
    for seed in range(2):
        t = b.add(rpz=0.5, seed=seed, platform=HERE)
        b.add(rpz=0.0, seed=seed, baseline=True, twin_of=t, platform=other_cpu())
    study, cfg = load_study("printed", b.url)
    result = compare_study(study, cfg, n_resamples=200)
    lines = format_text(result)
    assert sum(line.startswith("  warning: ") for line in lines) == 2
    assert any("2 of 2 pairs ran on different platforms" in line for line in lines)
