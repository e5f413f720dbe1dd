"""One exception root for every error a user can cause.

The CLI maps these to exit codes at its edge: :class:`UsageError` (a bad config file, bad
flag or bad value) and :class:`ChecksumError` (a dataset file that is not the official one)
exit with 2, every other :class:`HpoError` (storage unreachable, study not found, dataset
missing and not downloadable) exits with 1.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DivergenceError",
    "HpoError",
    "ModelAuditError",
    "StorageError",
    "StudyNotFoundError",
    "UsageError",
]


class HpoError(Exception):
    """Root of all errors raised on purpose by reluprime-hpo.

    The message is one readable line: the bad value, what is allowed, and the fix.
    """

    exit_code = 1


class UsageError(HpoError):
    """Raised for bad user input: flags, values or settings. Exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """Raised when a configuration (YAML study file or training settings) is invalid."""


class ModelAuditError(HpoError):
    """Raised when a built model still contains a ReLU-family nonlinearity that does not
    carry the configured derivatives (a module that could not be replaced, or a functional
    call such as ``F.relu`` inside a ``forward``)."""


class DataError(HpoError):
    """Raised when dataset files are missing, corrupt (bad checksum) or cannot be downloaded."""


class ChecksumError(DataError):
    """Raised when a dataset file (an archive, an IDX file) does not have the official MD5
    sum: bad input the user must replace, so it exits with 2 like a bad flag."""

    exit_code = 2


class StorageError(HpoError):
    """Raised when the study storage cannot be reached or written."""


class StudyNotFoundError(HpoError):
    """Raised when a named study does not exist in the storage."""


class DivergenceError(HpoError):
    """Raised by callers that want a diverged run to be an error (the engine itself never
    raises it: a diverged run ends cleanly with ``diverged=True`` in its result)."""
