"""The project folder (found upward, like git's repository) and its databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.storage.project import (
    default_database,
    is_project_folder,
    other_databases,
    project_folder,
)


@pytest.mark.parametrize("marker", ["storage", "study_configs"])
def test_the_nearest_folder_with_a_marker_is_the_project(tmp_path: Path, marker: str) -> None:
    (tmp_path / marker).mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert project_folder(deep) == tmp_path
    assert project_folder(tmp_path) == tmp_path
    assert default_database(deep) == tmp_path / "storage" / "hpo.db"
    (tmp_path / "a" / "study_configs").mkdir()  # a nearer project wins
    assert project_folder(deep) == tmp_path / "a"


def test_without_a_marker_the_current_folder_is_the_project(tmp_path, monkeypatch) -> None:
    deep = tmp_path / "x" / "y"
    deep.mkdir(parents=True)
    (tmp_path / "x" / "storage").write_text("a file is no marker")
    monkeypatch.chdir(deep)
    assert not any(is_project_folder(p) for p in (deep, *deep.parents))  # nothing above either
    assert project_folder() == deep
    assert default_database() == deep / "storage" / "hpo.db"


def test_other_databases_are_every_sqlite_file_under_storage_but_the_default(tmp_path) -> None:
    store = tmp_path / "storage"
    (store / "old").mkdir(parents=True)
    for name in ("hpo.db", "hpo.db-wal", "quickstart.db", "old/x.sqlite", "notes.txt"):
        (store / name).write_text("")
    (store / "dir.db").mkdir()  # not a file
    assert other_databases(tmp_path) == [store / "old" / "x.sqlite", store / "quickstart.db"]
    assert other_databases(tmp_path, besides=store / "quickstart.db") == [
        store / "hpo.db", store / "old" / "x.sqlite"]
    assert other_databases(tmp_path / "storage" / "old") == other_databases(tmp_path)


def test_no_storage_folder_no_other_databases(tmp_path) -> None:
    (tmp_path / "study_configs").mkdir()
    assert other_databases(tmp_path) == []
