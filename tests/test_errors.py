"""The exception root: exit codes per kind of error, and the helpers that word them."""

from __future__ import annotations

import pytest

import hpo.errors as errors
from hpo.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    HpoError,
    ModelAuditError,
    StorageError,
    StudyNotFoundError,
    UsageError,
    close_match,
    did_you_mean,
    one_line,
)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (UsageError, 2),
        (ConfigError, 2),
        (ModelAuditError, 2),  # a bad model is bad input, like every other bad model
        (ChecksumError, 2),
        (DataError, 1),
        (StorageError, 1),
        (StudyNotFoundError, 1),
        (HpoError, 1),
    ],
)
def test_bad_input_exits_2_and_runtime_failures_1(cls, code) -> None:
    assert issubclass(cls, HpoError)
    assert cls("x").exit_code == code


def test_every_public_error_is_exported_and_none_is_dead() -> None:
    classes = {n for n, v in vars(errors).items() if isinstance(v, type)
               and issubclass(v, BaseException)}
    assert classes == {n for n in errors.__all__ if n[0].isupper()}
    assert "DivergenceError" not in classes


@pytest.mark.parametrize(
    ("exc", "limit", "text"),
    [
        (ValueError("bad  value.\n  second line."), None, "bad value. second line"),
        (ValueError(""), None, "ValueError"),
        (KeyError("k"), None, "'k'"),
        (RuntimeError("x" * 50), 10, "x" * 10),
    ],
)
def test_one_line(exc, limit, text) -> None:
    assert one_line(exc, limit=limit) == text


@pytest.mark.parametrize(
    ("value", "allowed", "match"),
    [
        ("fp16", ("float16", "bfloat16", "float32", "tf32", "float64"), "float16"),
        ("FLOAT32", ("float16", "float32"), "float32"),
        ("widht", ("depth", "width", "width_mult"), "width"),
        ("smapler", ("name", "sampler", "search_space"), "sampler"),
        ("xyzzy", ("name", "sampler"), None),
        ("bayes", ("tpe", "random", "grid", "cmaes", "gp"), None),  # not a slip of cmaes
        (3, ("3", "4"), None),  # not a name
        ("adm", ("adam", "adam", "sgd"), "adam"),  # listed twice, suggested once
    ],
)
def test_close_match(value, allowed, match) -> None:
    assert close_match(value, allowed) == match
    assert did_you_mean(value, allowed) == ("" if match is None else f"did you mean {match!r}?")
