"""Large training tensors on huge pages: the same bytes, an aligned mapping that lives as
long as the tensor, and no change where huge pages are unavailable."""

from __future__ import annotations

import gc

import pytest
import torch

from hpo.engine import hugepages
from hpo.engine.hugepages import HUGE_PAGE, on_huge_pages


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_copy_has_the_same_bytes_shape_and_dtype(dtype):
    x = torch.randn(1100, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(dtype)
    y = on_huge_pages(x)
    assert y.shape == x.shape and y.dtype == dtype and y.is_contiguous()
    assert torch.equal(y.view(torch.uint8), x.view(torch.uint8))  # bitwise, NaN-safe


def test_mapping_is_aligned_and_outlives_every_other_reference(monkeypatch):
    monkeypatch.setattr(hugepages, "_thp_mode", lambda: "madvise")
    x = torch.arange(3 * HUGE_PAGE // 4, dtype=torch.float32)
    y = on_huge_pages(x)
    assert y.data_ptr() != x.data_ptr() and y.data_ptr() % HUGE_PAGE == 0
    expected = x.clone()
    del x
    gc.collect()
    assert torch.equal(y, expected)  # the mapping is held by the tensor alone
    y += 1  # writable
    assert torch.equal(y, expected + 1)


@pytest.mark.parametrize("mode", ["never", None])
def test_unchanged_without_huge_pages(monkeypatch, mode):
    monkeypatch.setattr(hugepages, "_thp_mode", lambda: mode)
    x = torch.zeros(HUGE_PAGE, dtype=torch.uint8)
    assert on_huge_pages(x) is x


def test_small_tensors_are_left_alone():
    x = torch.zeros(HUGE_PAGE // 8, dtype=torch.float32)  # 1 MB
    assert on_huge_pages(x) is x
