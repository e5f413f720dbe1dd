"""Training batches in a shuffled order, gathered many batches at a time.

Gathering each step's 128 random rows with its own ``index_select`` cost about 20% of an
fc 2x64 step (two threads): a parallel kernel started per step for 400 KB, and random rows
read from the whole 157 MB float32 training tensor between two steps of a net whose
weights and Adam state otherwise stay in the core's cache. Here one ``index_select``
gathers a chunk of whole batches (about :data:`CHUNK_BYTES`; MNIST float32: 10 batches)
into a buffer reused for the whole run, and each batch is a contiguous slice of it: a
view, no copy.

Why a chunk and not the whole epoch: the buffer is new memory in every run, which the
kernel maps page by page on first write and which ``torch.use_deterministic_algorithms``
fills with NaN when it is allocated: a 33 MB buffer took 12 ms, against 70 ms for the 100
steps of fc 2x64 that used it, and a whole MNIST epoch in float32 is 157 MB. A 4 MiB
chunk costs about 1.5 ms once per run, stays in the CPU's last-level cache between its
gather and its steps, and keeps memory bounded instead of holding a second copy of the
training set. Measured on fc 2x64 (one thread, CPU time, MNIST): 1, 2, 4 and 32 MiB chunks
were within the noise of each other (248-252 ms an epoch at best).

The batches hold the same rows, in the same order and with the same bytes, as the per-step
gather (``order[start : start + batch_size]`` for ``start`` in steps of ``batch_size``), so
the runs are bitwise the same. The same code runs on every device.
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
