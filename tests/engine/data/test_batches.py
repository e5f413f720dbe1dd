"""Shuffled batches gathered a chunk at a time: the same rows, order and bytes as a
per-step ``index_select``, for every chunk size, batch size and precision."""

from __future__ import annotations

import pytest
import torch

from hpo.engine.data.batches import ShuffledBatches

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _per_step(x, y, order, batch_size):
    flat = x.reshape(len(x), -1)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield flat.index_select(0, idx).view(len(idx), *x.shape[1:]), y.index_select(0, idx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, batch_size", [(1, 4), (37, 5), (40, 8), (50, 64), (129, 128)])
@pytest.mark.parametrize("chunk_batches", [1, 2, 3, 1000])
def test_batches_equal_a_per_step_gather_bitwise(dtype, n, batch_size, chunk_batches):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, 1, 3, 4, generator=gen).to(dtype)
    y = torch.randint(0, 10, (n,), generator=gen)
    row_bytes = 12 * x.element_size()
    batches = ShuffledBatches(x, y, batch_size, chunk_bytes=chunk_batches * batch_size * row_bytes)
    assert batches.chunk_rows == min(chunk_batches * batch_size, n)
    for _ in range(2):  # two epochs: the buffer is reused from epoch to epoch
        order = torch.randperm(n, generator=gen)
        got = [(xb.clone(), yb.clone()) for xb, yb in batches.epoch(order)]
        expected = list(_per_step(x, y, order, batch_size))
        assert len(got) == len(expected) == -(-n // batch_size)
        for (gx, gy), (ex, ey) in zip(got, expected):
            assert gx.shape == ex.shape and gx.dtype == dtype
            assert torch.equal(gx.view(torch.uint8), ex.view(torch.uint8))
            assert torch.equal(gy, ey)


def test_batches_are_views_of_one_bounded_buffer():
    x, y = torch.randn(1000, 1, 28, 28), torch.arange(1000)
    batches = ShuffledBatches(x, y, 10, chunk_bytes=50 * 28 * 28 * 4)
    assert batches.chunk_rows == 50  # 5 batches per gather, not the whole epoch
    pointers = {xb.untyped_storage().data_ptr() for xb, _ in batches.epoch(torch.randperm(1000))}
    assert len(pointers) == 1


def test_a_chunk_smaller_than_a_batch_still_holds_one_batch():
    x, y = torch.randn(20, 3), torch.arange(20)
    batches = ShuffledBatches(x, y, 8, chunk_bytes=1)
    assert batches.chunk_rows == 8
    assert [len(b) for b, _ in batches.epoch(torch.arange(20))] == [8, 8, 4]


def test_mismatched_labels_are_an_error():
    with pytest.raises(ValueError, match="labels"):
        ShuffledBatches(torch.zeros(4, 2), torch.zeros(3), 2)
