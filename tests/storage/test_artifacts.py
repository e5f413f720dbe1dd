"""The artifact folder beside the storage, and the upload through Optuna's public API."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.errors import UsageError
from hpo.storage.artifacts import (
    DEFAULT_DIR,
    ENV_VAR,
    artifact_dir,
    open_artifact_store,
    replace_study_file,
    upload_study_file,
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///storage/quickstart.db", Path("storage/artifacts")),
    ("sqlite:////srv/studies/x.db", Path("/srv/studies/artifacts")),
    ("postgresql+psycopg2://u:secret@db.example/hpo", DEFAULT_DIR),
    ("sqlite:///:memory:", DEFAULT_DIR),
])
def test_the_folder_is_beside_a_sqlite_file_else_the_default(url, expected):
    assert artifact_dir(url) == expected
    assert DEFAULT_DIR == Path("storage/artifacts")  # where the default SQLite file's go


def test_the_flag_wins_over_the_environment_which_wins_over_the_storage(monkeypatch, tmp_path):
    url = "sqlite:///storage/quickstart.db"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert artifact_dir(url) == tmp_path / "env"
    assert artifact_dir(url, tmp_path / "flag") == tmp_path / "flag"


def test_upload_makes_the_folder_and_the_file_is_a_study_artifact(tmp_path):
    url = f"sqlite:///{tmp_path / 'db' / 's.db'}"
    (tmp_path / "db").mkdir()
    study = optuna.create_study(study_name="s", storage=url)
    report = tmp_path / "report.html"
    report.write_text("<html>answer</html>")
    store = open_artifact_store(url, create=True)
    artifact_id = upload_study_file(store, study, report, mimetype="text/html")
    assert (tmp_path / "db" / "artifacts" / artifact_id).read_text() == "<html>answer</html>"
    metas = optuna.artifacts.get_all_artifact_meta(study)
    assert [(m.artifact_id, m.filename, m.mimetype) for m in metas] == [
        (artifact_id, "report.html", "text/html")
    ]


def test_a_file_in_the_folders_place_is_a_usage_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UsageError) as err:
        open_artifact_store("sqlite:///x.db", blocker, create=True)
    message = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in message
    assert str(blocker) in message and "--artifacts DIR" in message


def test_the_check_makes_nothing_and_names_a_file_in_the_way(tmp_path):
    from hpo.storage.artifacts import check_artifact_dir

    url = f"sqlite:///{tmp_path / 'a' / 'b' / 's.db'}"
    assert check_artifact_dir(url) == tmp_path / "a" / "b" / "artifacts"
    assert not (tmp_path / "a").exists()
    (tmp_path / "a").write_text("x")
    with pytest.raises(UsageError, match=r"cannot be made: '.*/a' is a file; fix: pass "):
        check_artifact_dir(url)


def test_replace_overwrites_the_artifacts_of_that_name_in_place(tmp_path):
    """Two reports piled up by an older version: both take the new content, none is added;
    another file name is left alone; a new name is uploaded."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    store = open_artifact_store(url, create=True)
    report, other = tmp_path / "report.html", tmp_path / "other.csv"
    report.write_text("old")
    other.write_text("a,b")
    old = {upload_study_file(store, study, report, mimetype="text/html") for _ in range(2)}
    kept = upload_study_file(store, study, other)
    report.write_text("new")
    artifact_id, replaced = replace_study_file(store, study, report, url, mimetype="text/html")
    assert replaced and artifact_id in old
    metas = optuna.artifacts.get_all_artifact_meta(study)
    assert len(metas) == 3
    assert {m.artifact_id for m in metas} == old | {kept}
    folder = tmp_path / "artifacts"
    assert [(folder / i).read_text() for i in sorted(old)] == ["new", "new"]
    assert (folder / kept).read_text() == "a,b"
    fresh = tmp_path / "fresh.html"
    fresh.write_text("x")
    new_id, replaced = replace_study_file(store, study, fresh, url, mimetype="text/html")
    assert not replaced and new_id not in old | {kept}
