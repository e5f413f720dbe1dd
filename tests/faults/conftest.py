"""Fixtures of the fault suite: a storage URL per backend (SQLite always; PostgreSQL when
HPO_TEST_POSTGRES_URL is set, and then an unreachable server is a failure, not a skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import PG_URL

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
needs_postgres = pytest.mark.skipif(not PG_URL, reason="HPO_TEST_POSTGRES_URL is not set")


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL; studies are made with unique names and deleted from PostgreSQL by the
    scenario helpers (tests/faults/harness.py) or the tests."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return PG_URL
