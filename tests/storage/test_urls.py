"""Storage URLs as people write them: postgresql:// and postgres:// open with psycopg2; a
misspelled scheme is named with its fix; the rewrite is never shown."""

from __future__ import annotations

import logging
import os
import uuid

import optuna
import pytest
from sqlalchemy.engine import make_url

from hpo.errors import StorageError, UsageError
from hpo.storage.rdb import make_storage
from hpo.storage.urls import (
    default_storage_url,
    engine_url,
    is_default_storage,
    parse_storage_url,
)

PG = os.environ.get("HPO_TEST_POSTGRES_URL")  # e.g. postgresql+psycopg2://postgres@HOST/DB


@pytest.mark.parametrize(
    ("given", "opened"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+psycopg2://u@h/db?sslmode=require"),
        ("POSTGRES://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgres+pg8000://u@h/db", "postgresql+pg8000://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),  # named: kept
        ("sqlite:///storage/a@b.db", "sqlite:///storage/a@b.db"),
        ("postgresq://u@h/db", "postgresq://u@h/db"),  # not ours to guess
    ],
)  # fmt: skip
def test_engine_url(given, opened):
    assert engine_url(given) == opened


def test_plain_postgresql_url_parses_to_psycopg2():
    assert parse_storage_url("postgresql://u@h/db").get_driver_name() == "psycopg2"
    assert parse_storage_url("postgres://u@h/db").get_driver_name() == "psycopg2"
    # what SQLAlchemy itself would do (2.1: psycopg 3, not installed here; 2.0: psycopg2)
    assert make_url("postgresql://u@h/db").get_dialect().driver in ("psycopg", "psycopg2")


@pytest.mark.parametrize(
    ("url", "expect"),
    [
        ("postgresq://u:s3cret@127.0.0.1:1/db", "did you mean postgresql://?"),
        ("sqlit:///x.db", "did you mean sqlite://?"),
        ("qwertyuiop://x", "fix: correct the scheme."),
        ("sqlite//x", "not a database URL"),
    ],
)
def test_misspelled_scheme_is_one_usage_error_with_the_password_masked(url, expect):
    with pytest.raises(UsageError) as info:
        make_storage(url)
    text = str(info.value)
    assert expect in text and "s3cret" not in text and "\n" not in text


def test_default_storage_url_is_absolute_and_recognised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = default_storage_url()
    assert url == f"sqlite:///{tmp_path}/storage/hpo.db" and is_default_storage(url)
    assert not is_default_storage("sqlite:///storage/hpo.db")  # relative: not resolved here
    assert not (tmp_path / "storage").exists()  # naming it creates nothing


@pytest.mark.skipif(not PG, reason="set HPO_TEST_POSTGRES_URL")
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_the_usual_url_opens_the_real_server(scheme, caplog):
    parsed = make_url(PG)
    url = f"{scheme}://{PG.split('://', 1)[1]}"
    name = f"urls-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.DEBUG, logger="hpo.storage.rdb"):
        storage = make_storage(url)
    try:
        optuna.create_study(study_name=name, storage=storage)
        assert name in optuna.get_all_study_names(make_storage(PG))  # the same database
        assert storage.engine.dialect.driver == "psycopg2"
        assert storage.engine.url.database == parsed.database
    finally:
        optuna.delete_study(study_name=name, storage=storage)
    # the rewrite appears only in the debug log, masked
    assert any("as postgresql+psycopg2://" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not PG, reason="set HPO_TEST_POSTGRES_URL")
def test_a_wrong_database_name_is_one_line_with_the_password_masked():
    wrong = make_url(PG).set(password="s3cret", database="hpo_no_such_database")
    url = "postgres://" + wrong.render_as_string(hide_password=False).split("://", 1)[1]
    with pytest.raises(StorageError) as info:
        make_storage(url)
    text = str(info.value)
    assert "s3cret" not in text and "\n" not in text
    assert text.startswith(f"cannot open storage postgres://{wrong.username}:***@")  # as given
    assert "postgresql+psycopg2" not in text  # the rewrite is not shown
    assert 'database "hpo_no_such_database" does not exist' in text


def test_an_unreachable_server_is_one_line_with_the_password_masked():
    with pytest.raises(StorageError) as info:
        make_storage("postgresql://u:s3cret@127.0.0.1:1/db")
    text = str(info.value)
    assert text.startswith("cannot open storage postgresql://u:***@127.0.0.1:1/db: ")
    assert "s3cret" not in text and "\n" not in text and "Connection refused" in text
