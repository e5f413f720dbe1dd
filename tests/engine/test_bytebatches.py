"""Training batches from uint8 rows through the table of input values: the same bytes as
gathering rows of the prepared images, in every precision and on both datasets, or the old
path where that cannot be guaranteed."""

from __future__ import annotations

import os

import pytest
import torch

from hpo.engine import bytebatches, data
from hpo.engine.bytebatches import ByteBatches, byte_batches

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
needs_native = pytest.mark.skipif(
    not bytebatches.native_available(), reason="the compiled gather is not built here"
)
needs_data = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)


def _prepare(dataset: str, dtype: torch.dtype, normalize: bool = True):
    return lambda u8: data.prepare_images(u8, dataset=dataset, normalize=normalize, dtype=dtype)


def test_native_gather_is_built_in_ci():
    if os.environ.get("CI"):
        assert bytebatches.native_available()


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row_len", [1, 15, 16, 17, 31, 32, 33, 784, 3 * 784])
def test_every_byte_value_at_every_lane_maps_to_its_table_entry(dtype, row_len):
    """All 256 bytes, each at every position of the 16- and 32-lane vectors and of the
    scalar tail, in rows gathered in a shuffled order, over the thread split threshold."""
    gen = torch.Generator().manual_seed(row_len)
    table = (torch.randn(256, generator=gen, dtype=torch.float64) * 100).to(dtype)
    table[7] = float("nan")
    table[8] = -0.0
    rows = max(256, 65536 // row_len)
    codes = torch.randint(0, 256, (rows, row_len), generator=gen, dtype=torch.uint8)
    codes[:256, 0] = torch.arange(256, dtype=torch.uint8)  # every value in the first lane
    codes[:256, -1] = torch.arange(256, dtype=torch.uint8)  # ... and in the last one
    idx = torch.randperm(rows, generator=gen)
    out = torch.empty(rows, row_len, dtype=dtype)
    got = ByteBatches(codes, table).gather(idx, out)
    expected = table[codes[idx].long()]
    assert torch.equal(got.view(torch.uint8), expected.view(torch.uint8))


@needs_native
def test_out_of_range_rows_and_mismatched_buffers_are_refused():
    batches = ByteBatches(torch.zeros(4, 3, dtype=torch.uint8), torch.zeros(256))
    out = torch.empty(2, 3)
    with pytest.raises(IndexError, match="row 4 out of range"):
        batches.gather(torch.tensor([0, 4]), out)
    with pytest.raises(ValueError):
        batches.gather(torch.tensor([0, 1], dtype=torch.int32), out)
    with pytest.raises(ValueError):
        batches.gather(torch.tensor([0, 1]), torch.empty(2, 3, dtype=torch.float64))


@needs_native
@needs_data
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalize", [True, False])
def test_the_table_reproduces_the_prepared_images_bit_for_bit(dataset, dtype, normalize):
    raw = data.load_raw(dataset, os.environ["HPO_DATA_DIR"])
    codes = raw.train_images[:20000].contiguous()
    prepared = _prepare(dataset, dtype, normalize)(codes)
    batches = byte_batches(codes, prepared, _prepare(dataset, dtype, normalize))
    assert batches is not None  # the check over every row passed
    idx = torch.randperm(len(codes), generator=torch.Generator().manual_seed(1))[:128]
    out = torch.empty(128, *prepared.shape[1:], dtype=dtype)
    got = batches.gather(idx, out)
    expected = data.gather_rows(prepared, idx)
    assert torch.equal(got.view(torch.uint8), expected.view(torch.uint8))


@needs_native
def test_a_table_that_does_not_reproduce_the_images_is_not_used(caplog):
    codes = torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8)
    prepared = _prepare("mnist", torch.float32)(codes)
    prepared[57, 0, 2, 3] = torch.nextafter(prepared[57, 0, 2, 3], torch.tensor(1.0))
    assert byte_batches(codes, prepared, _prepare("mnist", torch.float32)) is None
    assert "bit for bit" in caplog.text


def test_without_the_extension_the_old_path_is_used(monkeypatch):
    monkeypatch.setattr(bytebatches, "_native", None)
    codes = torch.zeros(10, 4, 4, dtype=torch.uint8)
    prepared = _prepare("mnist", torch.float32)(codes)
    assert byte_batches(codes, prepared, _prepare("mnist", torch.float32)) is None


@needs_data
def test_training_is_bitwise_the_same_with_and_without_the_byte_path(monkeypatch):
    from hpo.engine import splits
    from hpo.engine.spec import TrainSpec
    from hpo.engine.train import train

    spec = TrainSpec(model="fc", depth=1, width=32, epochs=1, train_subset=2000,
                     precision="bfloat16", relu_prime_zero=1.0, seed=3)
    calls = []
    batcher = ByteBatches.batcher

    def counting(self, *args):
        batch = batcher(self, *args)
        return lambda idx: calls.append(1) or batch(idx)

    monkeypatch.setattr(ByteBatches, "batcher", counting)
    splits.prepared_splits.cache_clear()
    fast = train(spec, data_dir=os.environ["HPO_DATA_DIR"])
    assert len(calls) >= 2000 // 128 or not bytebatches.native_available()  # every step
    monkeypatch.setattr(bytebatches, "_native", None)
    splits.prepared_splits.cache_clear()
    plain = train(spec, data_dir=os.environ["HPO_DATA_DIR"])
    splits.prepared_splits.cache_clear()
    assert fast.params_sha256 == plain.params_sha256
    assert fast.val_accuracy == plain.val_accuracy and fast.kink_hits == plain.kink_hits


@needs_native
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_batcher_gives_what_index_select_gives_for_full_and_last_batches(dtype):
    """The loop's per-step call: images and labels in one call, into reused buffers, for
    full batches, the shorter last batch, and a non-contiguous index."""
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, 256, (1000, 1, 28, 28), generator=gen, dtype=torch.uint8)
    prepared = _prepare("mnist", dtype)(codes)
    labels = torch.randint(0, 10, (1000,), generator=gen)
    batches = byte_batches(codes, prepared, _prepare("mnist", dtype))
    assert batches is not None
    x_out, y_out = torch.empty(128, 1, 28, 28, dtype=dtype), torch.empty(128, dtype=torch.int64)
    batch = batches.batcher(x_out, labels, y_out)
    order = torch.randperm(1000, generator=gen)
    for idx in [*order.split(128), order[::8][:100]]:
        xb, yb = batch(idx)
        assert xb.data_ptr() == x_out.data_ptr() and len(xb) == len(yb) == len(idx)
        assert torch.equal(xb.view(torch.uint8), prepared[idx].view(torch.uint8))
        assert torch.equal(yb, labels[idx])
    with pytest.raises(ValueError, match="129 indices"):
        batch(torch.arange(129))
