"""One storage fixture for every service test, parametrised over the backends (as Optuna's
``optuna/testing/storages.py``): a fresh SQLite file, and PostgreSQL when
``HPO_TEST_POSTGRES_URL`` is set. Once it is set an unreachable server fails the test: it is
never skipped. PostgreSQL outlives the test, so the studies a test creates are deleted."""

from __future__ import annotations

import os
from collections.abc import Iterator

import optuna
import pytest
import torch

from hpo.storage.rdb import make_storage

POSTGRES_ENV = "HPO_TEST_POSTGRES_URL"  # e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        # A folder that does not exist yet: make_storage must create it.
        yield f"sqlite:///{tmp_path}/studies/test.db"
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_ENV} to run against PostgreSQL")
    before = set(optuna.get_all_study_names(storage=make_storage(url)))
    yield url
    storage = make_storage(url)
    for name in set(optuna.get_all_study_names(storage=storage)) - before:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:  # deleted by the test itself
            pass



@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Some tests pin torch to one thread; results of some CPU kernels depend on the thread
    count, so no test may leak its setting into the next."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
