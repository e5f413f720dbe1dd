"""Training batches gathered from the uint8 images through a table of their input values.

The model input of a pixel depends on its byte alone: :func:`hpo.engine.data.
prepare_images` scales it to [0, 1], standardises it and casts it, element by element. So
the 256 values that function gives for the bytes 0..255 are a table from which every
pixel's input can be looked up. A training step then reads 1 byte per pixel of its random
rows instead of 2, 4 or 8: for an MNIST batch of 128 in float32, 100 KB instead of 400 KB,
and the small nets keep their weights and optimizer state in the core's cache. The
compiled gather (``hpo/engine/_bytegather.c``) looks the bytes up 16 or 32 at a time with
AVX-512 permutes and prefetches the next random rows.

Bitwise: :func:`byte_batches` builds the table with ``prepare_images`` itself, then expands
every training row through it and compares the bytes with the prepared tensor; on any
difference (or without the extension, or off the CPU) it returns ``None`` and the loop
gathers rows of the prepared tensor with ``index_select``, as before. Either way the
batches hold the same values, so ``params_sha256`` does not depend on the path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

try:  # built by `pip install` from setup.py; optional (no C compiler -> index_select)
    from hpo.engine import _bytegather as _native
except ImportError:  # pragma: no cover - depends on the install
    _native = None

__all__ = ["ByteBatches", "byte_batches", "native_available"]

log = logging.getLogger(__name__)

_CHECK_ROWS = 4096  # rows expanded at a time by the bitwise check


def native_available() -> bool:
    """Whether the compiled gather was built and imported."""
    return _native is not None


class ByteBatches:
    """uint8 images (N, ...) and the table of their 256 input values (dtype of the batch)."""

    def __init__(self, codes: Tensor, table: Tensor) -> None:
        if codes.dtype != torch.uint8 or not codes.is_contiguous() or not codes.is_cpu:
            raise ValueError("codes must be a contiguous uint8 CPU tensor")
        if table.shape != (256,) or not table.is_contiguous() or not table.is_cpu:
            raise ValueError("table must be a contiguous CPU tensor of 256 values")
        self.codes = codes
        self.table = table
        self.row_len = codes[0].numel() if len(codes) else 0
        self._codes_ptr, self._table_ptr = codes.data_ptr(), table.data_ptr()

    def gather(self, idx: Tensor, out: Tensor) -> Tensor:
        """Rows ``idx`` (int64, CPU) into the first ``len(idx)`` rows of ``out`` (contiguous,
        the table's dtype, the images' row shape); returns that view of ``out``."""
        rows = out[: len(idx)]
        self._check(idx, rows)
        _native.gather(
            self._codes_ptr, len(self.codes), self.row_len, idx.data_ptr(), len(idx),
            self._table_ptr, self.table.element_size(), rows.data_ptr(), 0, 0,
        )
        return rows

    def batcher(
        self, x_out: Tensor, labels: Tensor, y_out: Tensor
    ) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """``batch(idx) -> (x, y)``: rows ``idx`` into ``x_out`` and their ``labels`` (int64,
        one per image) into ``y_out``, in one compiled call. The buffers are checked once
        here; each step only passes the indices (int64, contiguous, at most as many as the
        buffers hold: the loop's slices of a permutation)."""
        if labels.dtype != torch.int64 or not labels.is_contiguous() or len(labels) != len(
            self.codes
        ) or y_out.dtype != torch.int64 or not y_out.is_contiguous() or len(y_out) < len(x_out):
            raise ValueError("batcher needs contiguous int64 labels, one per image")
        self._check(torch.zeros(len(x_out), dtype=torch.int64), x_out)
        views: dict[int, tuple[Tensor, Tensor]] = {}
        gather = _native.gather
        codes, rows, row_len = self._codes_ptr, len(self.codes), self.row_len
        table, size = self._table_ptr, self.table.element_size()
        x_ptr, labels_ptr, y_ptr = x_out.data_ptr(), labels.data_ptr(), y_out.data_ptr()

        def batch(idx: Tensor) -> tuple[Tensor, Tensor]:
            n = len(idx)
            view = views.get(n)
            if view is None:
                if n > len(x_out) or idx.dtype != torch.int64:
                    raise ValueError(f"{n} indices for a buffer of {len(x_out)} rows")
                view = views[n] = (x_out[:n], y_out[:n])
            if not idx.is_contiguous():
                idx = idx.contiguous()
            gather(codes, rows, row_len, idx.data_ptr(), n, table, size, x_ptr, labels_ptr, y_ptr)
            return view

        return batch

    def _check(self, idx: Tensor, rows: Tensor) -> None:
        if _native is None:
            raise RuntimeError("the compiled gather is not built")
        if (
            idx.dtype != torch.int64 or not idx.is_contiguous() or not rows.is_contiguous()
            or rows.dtype != self.table.dtype or not rows.is_cpu
            or (len(rows) and rows[0].numel() != self.row_len)
        ):
            raise ValueError("gather needs contiguous int64 indices and a matching buffer")


def byte_batches(
    codes: Tensor, prepared: Tensor, prepare: Callable[[Tensor], Tensor]
) -> ByteBatches | None:
    """The byte path for the training images ``codes`` whose prepared tensor is
    ``prepared`` (= ``prepare(codes)``), or None where it cannot give the same bytes.

    ``prepare`` is the elementwise preparation (uint8 (N, H, W) -> (N, 1, H, W) of the
    input dtype); it is applied to the 256 byte values to build the table.
    """
    if _native is None or not prepared.is_cpu or not codes.is_cpu:
        return None
    if prepared.element_size() not in (2, 4, 8) or len(codes) != len(prepared):
        return None
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 256)
    table = prepare(levels).reshape(256).contiguous()
    batches = ByteBatches(codes.contiguous(), table)
    if len(prepared) and batches.row_len != prepared[0].numel():
        return None
    if not _same_bytes(batches, prepared):
        log.warning("the input table does not reproduce the prepared images bit for bit; "
                    "batches are gathered from the prepared images instead")
        return None
    return batches


def _same_bytes(batches: ByteBatches, prepared: Tensor) -> bool:
    """Expand every row through the table and compare its bytes with ``prepared``."""
    flat = prepared.reshape(len(prepared), -1)
    buffer = flat.new_empty((min(_CHECK_ROWS, len(flat)), flat.shape[1]))
    for start in range(0, len(flat), _CHECK_ROWS):
        idx = torch.arange(start, min(start + _CHECK_ROWS, len(flat)))
        got = batches.gather(idx, buffer)
        if not torch.equal(got.view(torch.uint8), flat[start : start + len(idx)].view(torch.uint8)):
            return False
    return True
