"""Training batches in a shuffled order, gathered many batches at a time.

One ``index_select`` gathers a chunk of whole batches (about :data:`CHUNK_BYTES`) into a
buffer reused for the run; each batch is a view of it. The batches hold the same rows, in
the same order and with the same bytes, as a per-step gather, so runs are bitwise the same.
See docs/design.md#training-batches-gathered-a-chunk-at-a-time.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["CHUNK_BYTES", "ShuffledBatches"]

CHUNK_BYTES = 4 << 20


class ShuffledBatches:
    """Batches of ``batch_size`` rows of ``x`` and ``y``, in the order given per epoch.

    A batch is a view of the chunk buffer: it is overwritten once the batches of the next
    chunk are reached, so the caller must be done with it by then (the training loop is:
    backward frees the graph that saved it).
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        if batch_size < 1 or len(x) != len(y):
            raise ValueError(f"batch_size {batch_size} or rows {len(x)} != labels {len(y)}")
        self.x, self.y, self.batch_size = x, y, batch_size
        row_bytes = max(x[0].numel() * x.element_size(), 1) if len(x) else 1
        per_chunk = max(chunk_bytes // (batch_size * row_bytes), 1)
        # Whole batches, or all rows (at least one, so that an empty epoch ends at once).
        self.chunk_rows = max(min(per_chunk * batch_size, len(x)), 1)
        self._x = x.new_empty((self.chunk_rows, *x.shape[1:]))
        self._y = y.new_empty((self.chunk_rows,))

    def epoch(self, order: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x, y)`` per batch: rows ``order[start : start + batch_size]`` (``order``: int64
        indices on ``x``'s device, usually a permutation)."""
        flat = self.x.reshape(len(self.x), -1)
        size = self.batch_size
        for first in range(0, len(order), self.chunk_rows):
            idx = order[first : first + self.chunk_rows]
            rows = len(idx)
            xs, ys = self._x[:rows], self._y[:rows]
            torch.index_select(flat, 0, idx, out=xs.view(rows, -1))
            torch.index_select(self.y, 0, idx, out=ys)
            for start in range(0, rows, size):
                yield xs[start : start + size], ys[start : start + size]
