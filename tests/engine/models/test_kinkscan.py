"""The kink search: exactly the positions of ``x == k`` for every precision, ``None`` when
there are none, +0 and -0 on the kink, subnormals, NaN and near misses off it."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from hpo.engine.models.activations import ReLU
from hpo.engine.models.kinkscan import Scanner, sparse_if_rare

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
KINK_SETS = [(0.0,), (0.0, 6.0)]


def _off_kink(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, generator=gen, dtype=torch.float64) * 20 - 10).to(dtype)
    x[(x == 0) | (x == 6)] = 1.5
    return x


def _counts(records: list | None) -> tuple[int, ...] | None:
    return None if records is None else tuple(count for count, _ in records)


def _mask(record: tuple, like: torch.Tensor) -> torch.Tensor:
    count, positions = record
    mask = torch.zeros_like(like, dtype=torch.bool)
    if count:
        mask[positions] = True
    return mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kinks", KINK_SETS)
@pytest.mark.parametrize("n", [1, 7, 4097, 3 * 32768 + 17])
def test_finds_a_single_value_on_a_kink_anywhere(dtype, kinks, n):
    scan = Scanner(kinks)
    x = _off_kink(n, dtype)
    assert scan(x) is None
    for pos in sorted({0, n // 2, n - 1}):
        for value in (*kinks, -0.0):
            y = x.clone()
            y[pos] = value
            records = scan(y)
            expected = tuple(int(value == k) for k in kinks)  # -0.0 == 0.0
            assert _counts(records) == expected, (pos, value)
            on_kink = next(r for r in records if r[0])
            assert _mask(on_kink, y).nonzero().flatten().tolist() == [pos]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kinks", KINK_SETS)
def test_near_misses_and_specials_are_not_kinks(dtype, kinks):
    info = torch.finfo(dtype)
    six = torch.tensor(6.0, dtype=dtype)
    values = [
        info.smallest_normal, -info.smallest_normal, info.tiny / 2, -info.tiny / 2,  # subnormals
        float("nan"), float("inf"), float("-inf"), -6.0,
        float(torch.nextafter(six, torch.tensor(7.0, dtype=dtype))),
        float(torch.nextafter(six, torch.tensor(5.0, dtype=dtype))),
    ]
    x = torch.tensor(values, dtype=torch.float64).to(dtype)
    assert (x[2:4] != 0).all()  # the subnormals survived the cast
    assert Scanner(kinks)(x) is None
    # ReLU's only kink is 0: a 6 is no hit for it.
    assert Scanner((0.0,))(torch.tensor([6.0], dtype=dtype)) is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_counts_and_positions_agree_with_pytorch_on_random_tensors(dtype):
    gen = torch.Generator().manual_seed(3)
    for trial in range(30):
        n = int(torch.randint(1, 70000, (1,), generator=gen))
        # A coarse grid makes exact zeros and sixes likely in some tensors, absent in others.
        step = [0.5, 0.37, 1e-3][trial % 3]
        x = (torch.randn(n, generator=gen, dtype=torch.float64) * 4 / step).round() * step
        x = x.to(dtype).view(-1, 1) if trial % 2 else x.to(dtype)
        for kinks in KINK_SETS:
            records = Scanner(kinks)(x)
            expected = [x == k for k in kinks]
            if not any(bool(m.any()) for m in expected):
                assert records is None, (trial, kinks)
                continue
            assert _counts(records) == tuple(int(m.sum()) for m in expected)
            for record, mask in zip(records, expected):
                assert torch.equal(_mask(record, x), mask), (trial, kinks)


def test_a_non_contiguous_input_is_searched_too():
    x = torch.ones(6, 5).t()
    x[3, 4] = -0.0
    assert _counts(Scanner((0.0,))(x)) == (1,)


def test_empty_tensor_has_no_kink():
    assert Scanner((0.0, 6.0))(torch.empty(0)) is None


def test_dense_masks_for_other_devices_are_exactly_x_equals_k():
    x = torch.tensor([0.0, -0.0, 6.0, 1e-45, float("nan"), 5.0])
    masks = Scanner((0.0, 6.0)).masks(x)
    assert [m.tolist() for m in masks] == [
        [True, True, False, False, False, False],
        [False, False, True, False, False, False],
    ]


def test_positions_are_sparse_when_rare_and_the_mask_when_not():
    rare = torch.zeros(100, dtype=torch.bool)
    rare[7] = True
    count, positions = sparse_if_rare(rare)
    assert count == 1 and isinstance(positions, tuple) and positions[0].tolist() == [7]
    dense = torch.ones(100, dtype=torch.bool)
    assert sparse_if_rare(dense)[0] == 100 and sparse_if_rare(dense)[1] is dense
    assert sparse_if_rare(torch.zeros(5, dtype=torch.bool)) == (0, None)


def test_the_scanner_and_a_module_holding_it_pickle_and_copy():
    scan = Scanner((0.0, 6.0))
    x = _off_kink(5000, torch.float32)
    x[1234] = 6.0
    for clone in (pickle.loads(pickle.dumps(scan)), copy.deepcopy(scan)):
        assert clone.kinks == (0.0, 6.0) and _counts(clone(x)) == (0, 1)
    relu = pickle.loads(pickle.dumps(ReLU(1.0)))
    assert _counts(relu._scan(torch.zeros(3))) == (3,)
