"""One exception root for every error a user can cause, and the helpers that word them.

The CLI maps these to exit codes at its edge: bad input (:class:`UsageError`: a bad config
file, flag or value; :class:`ModelAuditError`: a model that cannot carry the configured
derivatives; :class:`ChecksumError`: a dataset file that is not the official one) exits with
2, every other :class:`HpoError` (storage unreachable, study not found, dataset missing and
not downloadable) exits with 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DataError",
    "HpoError",
    "ModelAuditError",
    "StorageError",
    "StudyNotFoundError",
    "UsageError",
    "close_match",
    "did_you_mean",
    "one_line",
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
    call such as ``F.relu`` inside a ``forward``). A bad model is bad input: exit code 2."""

    exit_code = 2


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


# ----------------------------------------------------------------------------------
def one_line(exc: BaseException, *, limit: int | None = None) -> str:
    """An exception's message on one line (whitespace collapsed, without its final period;
    the exception's type name when it has no message), cut to ``limit`` characters."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if limit is None else text[:limit]


def close_match(value: object, allowed: Iterable[object]) -> str | None:
    """The allowed name closest to a misspelt ``value`` (:func:`difflib.get_close_matches`),
    or None when ``value`` is not a string or nothing is close."""
    if not isinstance(value, str):
        return None
    names = list(dict.fromkeys(a for a in allowed if isinstance(a, str)))  # once each
    # Case slips count as close; a slip rarely hits the first letter ('bayes' is no 'cmaes').
    lowered = {n.lower(): n for n in reversed(names) if n[:1].lower() == value[:1].lower()}
    # cutoff 0.5, not difflib's 0.6: 'fp16' is 0.55 from 'float16'
    found = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[found[0]] if found else None


def did_you_mean(value: object, allowed: Iterable[object]) -> str:
    """``"did you mean 'float16'?"`` for the close match of ``value``, or ``""``."""
    match = close_match(value, allowed)
    return "" if match is None else f"did you mean {match!r}?"
