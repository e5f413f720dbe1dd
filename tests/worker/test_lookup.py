"""Opening what exists: no empty database made by a lookup; other databases named."""

from __future__ import annotations

import optuna
import pytest

from hpo.errors import StudyNotFoundError
from hpo.storage.rdb import make_storage
from hpo.storage.urls import default_storage_url
from hpo.worker.lookup import load_existing_study, open_existing_storage, storage_overview


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "study_configs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    return tmp_path


def test_a_missing_project_database_is_not_created(project) -> None:
    with pytest.raises(StudyNotFoundError) as info:
        open_existing_storage(default_storage_url())
    text = str(info.value)
    assert text.startswith("this project has no studies yet")
    assert f"the project folder is '{project}'" in text and "fix: create the study" in text
    assert not (project / "storage").exists()
    assert storage_overview(default_storage_url()) == [
        f"storage sqlite:///{project}/storage/hpo.db: no studies yet (the file does not "
        "exist; hpo create CONFIG or hpo run CONFIG writes it)"]
    assert not (project / "storage").exists()


def test_the_overview_lists_every_study_then_the_other_databases(project) -> None:
    storage = make_storage(default_storage_url())
    for name in ("b", "a"):
        optuna.create_study(study_name=name, storage=storage)
    old = make_storage("sqlite:///storage/legacy/q.db")
    optuna.create_study(study_name="q", storage=old)
    lines = storage_overview(default_storage_url())
    assert lines[0] == f"storage sqlite:///{project}/storage/hpo.db: 2 studies"
    assert [x.split(" (")[0] for x in lines if x.startswith("study ")] == ["study b", "study a"]
    assert lines[-1] == "  hpo status --storage sqlite:///storage/legacy/q.db"
    # seen from the old file, the project database is the other one
    assert storage_overview("sqlite:///storage/legacy/q.db")[-1] == (
        "  hpo status --storage sqlite:///storage/hpo.db")


def test_a_study_not_found_names_its_own_old_file(project) -> None:
    optuna.create_study(study_name="new", storage=make_storage(default_storage_url()))
    optuna.create_study(study_name="quick", storage=make_storage("sqlite:///storage/quick.db"))
    with pytest.raises(StudyNotFoundError) as info:
        load_existing_study("quick", default_storage_url())
    assert str(info.value).endswith(
        "it may be in sqlite:///storage/quick.db: add --storage sqlite:///storage/quick.db.")
    assert "existing studies: ['new']" in str(info.value)
    with pytest.raises(StudyNotFoundError) as other:
        load_existing_study("nothere", default_storage_url())
    assert "other databases under storage/: sqlite:///storage/quick.db" in str(other.value)
