"""``hpo reproduce section4``: the paper's numbers, the report's arithmetic, and a tiny
end-to-end ``--quick`` run on generated SVHN files in the official format."""

from __future__ import annotations

import json

import optuna
import pytest

from hpo.analysis.reproduce import section4 as s4
from hpo.config.reproduce import section4 as cfg4
from tests.engine._fakedata import use_local_checksums, write_svhn


def _row(protocol: str, bn: bool, alpha: float) -> dict:
    return next(r for r in s4.paper_rows()
                if (r["protocol"], r["batch_norm"], r["alpha"]) == (protocol, bn, alpha))


def test_the_paper_data_holds_the_issues_numbers() -> None:
    assert _row("resnet18_cifar10_sgd", False, 0.0) | {"source": ""} == {
        "protocol": "resnet18_cifar10_sgd", "batch_norm": False, "alpha": 0.0, "n": 10,
        "mean": 90.14, "std": 0.15, "runs_below_20": 0, "source": ""}
    assert _row("resnet18_cifar10_sgd", False, 1.0)["mean"] == 10.0
    assert _row("resnet18_cifar10_sgd", True, 0.0)["mean"] == 91.87
    assert _row("resnet18_cifar10_sgd", True, 1.0)["mean"] == 89.81
    assert (_row("vgg11_svhn_adam", False, 0.0)["mean"], _row("vgg11_svhn_adam", False, 1.0)
            ["mean"]) == (96.11, 95.82)
    assert (_row("vgg11_svhn_adam", True, 0.0)["mean"], _row("vgg11_svhn_adam", True, 1.0)
            ["mean"]) == (97.22, 97.15)
    sources = {r["source"] for r in s4.paper_rows()}
    assert sources == {"paper_results/section_4/cifar10/resnet18/resnet18_cifar10_sgd.csv",
                       "paper_results/section_4/cifar10/vgg11/vgg11_cifar10_adam.csv",
                       "paper_results/section_4/svhn/vgg11_svhn_adam.csv"}


def _study(stem: str, bn: bool, p: cfg4.Section4Plan, acc: dict) -> optuna.Study:
    """Complete trials with test accuracy ``acc[(alpha, seed)]`` (None: diverged)."""
    study = optuna.create_study(study_name=p.study_name(stem, bn), direction="maximize")
    dist = {"cell": optuna.distributions.CategoricalDistribution(
        [cfg4.cell_name(a, s) for a, _ in p.alphas(stem, bn) for s in range(p.runs(stem))])}
    for (alpha, seed), value in acc.items():
        state = optuna.trial.TrialState.PRUNED if value is None else \
            optuna.trial.TrialState.COMPLETE
        attrs = {"test_accuracy": value, "result": {"diverged": value is None}}
        study.add_trial(optuna.trial.create_trial(
            state=state, value=None if value is None else value,
            params={"cell": cfg4.cell_name(alpha, seed)}, distributions=dist,
            user_attrs=attrs))
    return study


def test_cells_pair_by_seed_and_a_diverged_run_counts_at_chance() -> None:
    p = cfg4.plan(model="resnet18", batch_norm="off", seeds=3)
    acc = {(0.0, 0): 0.90, (0.0, 1): 0.92, (0.0, 2): 0.91,
           (0.2, 0): 0.80, (0.2, 1): 0.86, (0.2, 2): None,  # diverged
           (0.4, 0): 0.12, (0.4, 1): 0.10}  # (0.4, 2) not run yet
    r = s4.build_report([_study("resnet18_cifar10_sgd", False, p, acc)], p)
    cells = {c.alpha: c for c in r.cells}
    assert cells[0.0].mean == pytest.approx(91.0) and cells[0.0].diff_mean == 0.0
    assert cells[0.2].runs == 3 and cells[0.2].diverged == 1
    assert cells[0.2].mean == pytest.approx((80 + 86 + 10) / 3)
    assert cells[0.2].diff_mean == pytest.approx(((80 - 90) + (86 - 92) + (10 - 91)) / 3)
    assert cells[0.4].pairs == 2 and cells[0.4].mean == pytest.approx(11.0)
    lo, hi = cells[0.0].ci_low, cells[0.0].ci_high
    assert lo < 91.0 < hi and hi - 91.0 == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)
    assert cells[0.6].runs == 0 and cells[0.6].mean is None
    assert r.collapse["resnet18_cifar10_sgd_nobn"] == {"ours": 0.4, "paper": 0.3}
    assert (r.trials_complete, r.trials_total) == (8, 18) and not r.complete
    assert cells[0.0].paper_mean == 90.14 and cells[1.0].paper_n == 10
    assert r.comparable and "collapse point" not in s4.note_markdown(r).splitlines()[0]
    assert set(s4.figures(r)) == {"section4-resnet18_cifar10_sgd-nobn"}


@pytest.mark.slow
def test_quick_runs_end_to_end_on_generated_svhn(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    data = tmp_path / "data"
    write_svhn(data, "train_32x32.mat", 40)
    write_svhn(data, "test_32x32.mat", 20, seed=1)
    use_local_checksums(monkeypatch, "svhn", data)
    monkeypatch.setattr(cfg4, "QUICK", {**cfg4.QUICK, "train": 10, "val": 10, "test": 10})
    monkeypatch.setattr(s4, "QUICK", cfg4.QUICK)
    done = s4.reproduce_section4(
        model="vgg11", dataset="svhn", batch_norm="off", quick=True, seeds=1,
        storage=f"sqlite:///{tmp_path / 'db.sqlite'}", output=tmp_path / "out",
        data_dir=data, log_dir=tmp_path / "logs")
    assert done.exit_code == 0, done.problems()
    r = done.report
    assert r.studies == ["section4-quick-not-comparable-n10-vgg11_svhn_adam_nobn-s1"]
    assert [(c.alpha, c.runs, c.pairs) for c in r.cells] == [(0.0, 1, 1), (50.0, 1, 1)]
    assert all(0 <= c.mean <= 100 for c in r.cells) and r.complete and not r.comparable
    payload = json.loads(json.dumps(r.to_dict()))
    assert "NOT comparable" in payload["note"]
    assert {96.11, 97.22, 90.14, 10.0} <= {row["mean"] for row in payload["paper"]}
    assert [p.name for p in done.files] == ["section4_quick.csv", "section4_quick.html"]
    assert s4.note_markdown(r).startswith("Section 4 --quick ran end to end; its numbers are NOT")


def test_missing_dataset_is_one_line_before_any_study(tmp_path, monkeypatch) -> None:
    from hpo.engine.data import archives
    from hpo.engine.data.fetch import RemoteFile
    from hpo.errors import DataError

    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "cache"))
    offline = tuple(RemoteFile(f.filename, f.md5, ()) for f in archives.FILES["svhn"])
    monkeypatch.setitem(archives.FILES, "svhn", offline)  # no URL: nothing to download
    with pytest.raises(DataError) as err:
        s4.reproduce_section4(dataset="svhn", batch_norm="on", quick=True,
                              storage=f"sqlite:///{tmp_path / 'db.sqlite'}",
                              output=tmp_path / "out", data_dir=tmp_path)
    assert "\n" not in str(err.value) and "train_32x32.mat" in str(err.value)
    assert not (tmp_path / "db.sqlite").exists() or optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'db.sqlite'}") == []
