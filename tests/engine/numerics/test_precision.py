"""Precision names, dtypes and Adam's epsilon (hpo.engine.numerics.precision)."""

from __future__ import annotations

import pytest
import torch

from hpo.engine.numerics import precision as precision_mod
from hpo.engine.numerics.precision import resolve_adam_eps, resolve_precision
from hpo.engine.spec import PRECISIONS
from hpo.errors import ConfigError


def test_the_precision_table_has_exactly_trainspecs_precisions():
    """TrainSpec's list (torch-free) and the dtype table (torch) name the same precisions."""
    assert set(precision_mod._PRECISIONS) == set(PRECISIONS)
    for name in PRECISIONS:
        assert resolve_precision(name).name == name


@pytest.mark.parametrize(("name", "param", "autocast", "tf32"), [
    ("float16", torch.float16, None, False),
    ("bfloat16", torch.bfloat16, None, False),
    ("float32", torch.float32, None, False),
    ("float64", torch.float64, None, False),
    ("tf32", torch.float32, None, True),
    ("amp_float16", torch.float32, torch.float16, False),
    ("amp_bfloat16", torch.float32, torch.bfloat16, False),
])
def test_each_precision_means_its_dtypes(name, param, autocast, tf32):
    p = resolve_precision(name)
    assert (p.param_dtype, p.autocast_dtype, p.tf32) == (param, autocast, tf32)
    assert p.uses_grad_scaler == (autocast is torch.float16)


def test_unknown_precision_names_the_value_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        resolve_precision("fp16")
    assert "'fp16'" in str(err.value)
    for name in PRECISIONS:
        assert name in str(err.value)


def test_adam_eps_default_is_1e8_where_the_dtype_holds_it_else_its_smallest_normal():
    assert resolve_adam_eps(None, torch.float32) == 1e-8
    assert resolve_adam_eps(None, torch.bfloat16) == 1e-8
    assert resolve_adam_eps(None, torch.float16) == 2.0**-14


def test_an_explicit_adam_eps_that_rounds_to_zero_is_an_error():
    with pytest.raises(ConfigError, match=r"adam_eps=1e-09 rounds to 0 in float16"):
        resolve_adam_eps(1e-9, torch.float16)
    assert resolve_adam_eps(1e-3, torch.float16) == 1e-3
