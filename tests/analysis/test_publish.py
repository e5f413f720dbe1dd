"""The answer on the study page: charts, the note, the report artifact (replaced, never piled
up), the metric name; ``publish_answer`` for any command, ``publish`` for ``hpo compare``."""

from __future__ import annotations

import warnings

import optuna
import plotly.graph_objects as go
import pytest
from optuna_dashboard import get_note

from hpo.analysis.compare import compare_study
from hpo.analysis.publish import IMPORTANCE_PANEL_LINE, note_markdown, publish, publish_answer
from hpo.analysis.report import GRAPH_IDS, write_report
from hpo.errors import UsageError
from hpo.storage.artifacts import ENV_VAR
from hpo.storage.rdb import make_storage
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


def storage_of(study):
    storage = make_storage(study.user_attrs["hpo_config"]["storage"])
    return storage, storage.get_study_id_from_name(study.study_name)


def graph_ids(study):
    """The ids of the charts optuna-dashboard draws on the study page (its study system
    attrs ``dashboard:plot_data:<id>:<chunk>``)."""
    storage, study_id = storage_of(study)
    keys = storage.get_study_system_attrs(study_id)
    return sorted({k.split(":", 2)[2].rsplit(":", 1)[0] for k in keys
                   if k.startswith("dashboard:plot_data:")})


def test_publish_draws_the_charts_stores_the_report_saves_the_note_and_names_the_metric(
    tmp_path,
):
    b = identical_study(tmp_path)
    study, cfg = load_study("same", b.url)
    assert metric_names(study) is None  # built without hpo create: an older study
    c = compare_study(study, cfg, n_resamples=200)
    html = write_report(c, tmp_path / "out")[-1]
    done = publish(c, study, cfg, html, b.url)
    assert done.artifact_dir == tmp_path / "artifacts"  # beside studies.db
    assert done.graph_object_ids == GRAPH_IDS and not done.replaced
    assert graph_ids(study) == sorted(GRAPH_IDS)
    (meta,) = optuna.artifacts.get_all_artifact_meta(study)
    assert (meta.artifact_id, meta.filename, meta.mimetype) == (
        done.artifact_id, "compare_same.html", "text/html")
    assert (done.artifact_dir / meta.artifact_id).read_bytes() == html.read_bytes()
    note = get_note(study)
    assert note == done.note
    assert note.splitlines()[0] == "**ReLU'(0) changed nothing here: 3/3 pairs bitwise identical**"
    assert "- **fc/mnist/float32/relu**: insufficient evidence" in note
    assert f"study artifact `compare_same.html` (id {meta.artifact_id})" in note
    assert IMPORTANCE_PANEL_LINE in note
    assert metric_names(study) == ["val_accuracy"]

    # a second run replaces the note, the charts and the report: nothing piles up
    html.write_text("<html>second</html>")
    again = publish(c, study, cfg, html, b.url)
    assert again.replaced and again.artifact_id == meta.artifact_id
    assert optuna.artifacts.get_all_artifact_meta(study) == [meta]
    assert (done.artifact_dir / meta.artifact_id).read_text() == "<html>second</html>"
    assert sorted(p.name for p in done.artifact_dir.iterdir()) == [meta.artifact_id]
    assert graph_ids(study) == sorted(GRAPH_IDS)
    assert get_note(study).count("## hpo compare: same") == 1


def test_publish_answer_is_generic_and_checks_ids_before_writing(tmp_path):
    """What the reproductions call: any figures and note; no report, no artifact folder."""
    b = identical_study(tmp_path)
    fig = go.Figure(go.Bar(x=["ours", "published"], y=[1.0, 2.0]))
    with pytest.raises(ValueError, match="not letters"):
        publish_answer(b.study, note="v", figures={"bad id": fig}, report=None, url=b.url)
    assert get_note(b.study) == "" and graph_ids(b.study) == []
    done = publish_answer(b.study, note="verdict: ours beside published\nmore",
                          figures={"hpo-reproduce-x": fig}, report=None, url=b.url)
    assert done.artifact_id is None and done.graph_object_ids == ("hpo-reproduce-x",)
    assert get_note(b.study).splitlines()[0] == "verdict: ours beside published"
    assert graph_ids(b.study) == ["hpo-reproduce-x"]
    assert not (tmp_path / "artifacts").exists()
    assert optuna.artifacts.get_all_artifact_meta(b.study) == []


def test_an_artifact_deleted_in_the_dashboard_does_not_break_the_next_publish(tmp_path):
    """optuna-dashboard deletes an artifact by writing JSON null over its metadata, which
    optuna.artifacts.get_all_artifact_meta cannot read; the report is then uploaded anew."""
    b = identical_study(tmp_path)
    study, cfg = load_study("same", b.url)
    c = compare_study(study, cfg, n_resamples=200)
    html = write_report(c, tmp_path / "out")[-1]
    first = publish(c, study, cfg, html, b.url)
    storage, study_id = storage_of(study)  # what the dashboard's DELETE does:
    storage.set_study_system_attr(study_id, f"artifacts:{first.artifact_id}", "null")
    (first.artifact_dir / first.artifact_id).unlink()
    again = publish(c, study, cfg, html, b.url)
    assert not again.replaced and again.artifact_id != first.artifact_id
    assert (again.artifact_dir / again.artifact_id).read_bytes() == html.read_bytes()


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
    assert (f"saved the verdicts as the study's note, 2 charts on the study page and "
            f"compare_same.html as study artifact {meta.artifact_id} (new) in {folder}/") in out
    assert "ReLU'(0) changed nothing here: 3/3 pairs bitwise identical" in out
    assert (folder / meta.artifact_id).is_file()

    (tmp_path / "x").mkdir()
    other = identical_study(tmp_path / "x", name="untouched")
    assert run_compare_cli(["compare", "untouched", "--storage", other.url, "--output",
                     str(tmp_path / "o2"), "--resamples", "200", "--no-publish"]) == 0
    assert "saved the verdicts" not in capsys.readouterr().out
    assert get_note(other.study) == "" and not (tmp_path / "x" / "artifacts").exists()
    assert optuna.artifacts.get_all_artifact_meta(other.study) == []
