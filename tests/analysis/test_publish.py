"""``hpo compare``'s answer on the study: the note, the report artifact, the metric name."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna_dashboard import get_note

from hpo.analysis.compare import compare_study
from hpo.analysis.publish import note_markdown, publish
from hpo.analysis.report import write_report
from hpo.errors import UsageError
from hpo.storage.artifacts import ENV_VAR
from hpo.study.create import load_study
from tests.analysis._studies import StudyBuilder, run_compare_cli


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def identical_study(tmp_path, name="same"):
    b = StudyBuilder(tmp_path, name)
    for seed in range(3):
        t = b.add(rpz=0.3 + 0.2 * seed, seed=seed, acc=0.95 + 0.01 * seed, sha=f"{seed}" * 64)
        b.add(rpz=0.0, seed=seed, acc=0.95 + 0.01 * seed, baseline=True, twin_of=t,
              sha=f"{seed}" * 64)
    return b


def metric_names(study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return study.metric_names


def test_publish_uploads_the_report_then_saves_the_note_and_names_the_metric(tmp_path):
    b = identical_study(tmp_path)
    study, cfg = load_study("same", b.url)
    assert metric_names(study) is None  # built without hpo create: an older study
    c = compare_study(study, cfg, n_resamples=200)
    html = write_report(c, tmp_path / "out")[-1]
    done = publish(c, study, cfg, html, b.url)
    assert done.artifact_dir == tmp_path / "artifacts"  # beside studies.db
    (meta,) = optuna.artifacts.get_all_artifact_meta(study)
    assert (meta.artifact_id, meta.filename, meta.mimetype) == (
        done.artifact_id, "compare_same.html", "text/html")
    assert (done.artifact_dir / meta.artifact_id).read_bytes() == html.read_bytes()
    note = get_note(study)
    assert note == done.note
    assert "**ReLU'(0) changed nothing here: 3/3 pairs bitwise identical**" in note
    assert "- **fc/mnist/float32/relu**: insufficient evidence" in note
    assert f"study artifact `compare_same.html` (id {meta.artifact_id})" in note
    assert metric_names(study) == ["val_accuracy"]
    # a second run replaces the note and adds one artifact
    publish(c, study, cfg, html, b.url)
    assert len(optuna.artifacts.get_all_artifact_meta(study)) == 2
    assert get_note(study).count("## hpo compare: same") == 1


def test_note_lists_importances_and_platform_warnings(tmp_path):
    b = identical_study(tmp_path)
    study, cfg = load_study("same", b.url)
    c = compare_study(study, cfg, n_resamples=200)
    c.importances = {"relu_prime_zero": 0.7, "precision": 0.3}
    c.importance_note = None
    c.platform_warnings = ["3 of 3 pairs ran on different platforms (...)"]
    note = note_markdown(c)
    assert ("Parameter importances for the paired difference (tuned - default): "
            "relu_prime_zero 0.70, precision 0.30") in note
    assert "**Warning**: 3 of 3 pairs ran on different platforms" in note


def test_an_unusable_artifact_folder_is_exit_2_and_nothing_is_written(tmp_path):
    b = identical_study(tmp_path)
    study, cfg = load_study("same", b.url)
    c = compare_study(study, cfg, n_resamples=200)
    html = write_report(c, tmp_path / "out")[-1]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError) as err:
        publish(c, study, cfg, html, b.url, blocker)
    assert err.value.exit_code == 2 and str(blocker) in str(err.value)
    assert get_note(study) == ""
    assert optuna.artifacts.get_all_artifact_meta(study) == []
    assert metric_names(study) is None


def test_cli_publishes_into_the_folder_given_and_no_publish_writes_nothing(tmp_path, capsys):
    b = identical_study(tmp_path)
    folder = tmp_path / "my-artifacts"
    assert run_compare_cli(["compare", "same", "--storage", b.url, "--output", str(tmp_path / "o"),
                     "--resamples", "200", "--artifacts", str(folder)]) == 0
    out = capsys.readouterr().out
    (meta,) = optuna.artifacts.get_all_artifact_meta(b.study)
    assert (f"saved the verdicts as the study's note and compare_same.html as study artifact "
            f"{meta.artifact_id} in {folder}/") in out
    assert "ReLU'(0) changed nothing here: 3/3 pairs bitwise identical" in out
    assert (folder / meta.artifact_id).is_file()

    (tmp_path / "x").mkdir()
    other = identical_study(tmp_path / "x", name="untouched")
    assert run_compare_cli(["compare", "untouched", "--storage", other.url, "--output",
                     str(tmp_path / "o2"), "--resamples", "200", "--no-publish"]) == 0
    assert "saved the verdicts" not in capsys.readouterr().out
    assert get_note(other.study) == "" and not (tmp_path / "x" / "artifacts").exists()
    assert optuna.artifacts.get_all_artifact_meta(other.study) == []
