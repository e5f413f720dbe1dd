"""Storage: where studies live, opened for many workers and through outages.

``hpo.storage.rdb.make_storage(url)`` opens Optuna's ``RDBStorage``; :mod:`.urls` picks,
parses and masks storage URLs; :mod:`.project` (the default ``storage/hpo.db``),
:mod:`.sqlite_file` (WAL, syncing), :mod:`.retry` (riding out outages), :mod:`.heartbeat`,
:mod:`.artifacts` (the study's files).
"""

__all__ = ["artifacts", "heartbeat", "project", "rdb", "retry", "sqlite_file", "urls"]
