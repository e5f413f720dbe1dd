"""A dataset as whole uint8 tensors, and what every reader shares: split, prepare, gather, shape.

:class:`RawDataset` is what each format's reader returns (:mod:`hpo.engine.data.idx`,
:mod:`hpo.engine.data.archives`, :mod:`hpo.engine.data.imagefolder`); the functions below
turn it into a run's seeded splits and model-shaped batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hpo.engine.data.registry import dataset_info
from hpo.errors import ConfigError

__all__ = [
    "RawDataset",
    "gather_rows",
    "prepare_images",
    "shape_batch",
    "split_indices",
]


@dataclass(frozen=True, eq=False)
class RawDataset:
    """The official training and test sets as shared tensors; do not modify them in place.

    Attributes:
        name: dataset name (a key of :func:`hpo.engine.data.registry.dataset_info`).
        train_images: uint8, (N, H, W) for the IDX datasets (MNIST: (60000, 28, 28)), else
            (N, C, H, W), channels first.
        train_labels: int64, shape (N,).
        test_images: uint8, as ``train_images``.
        test_labels: int64.
        val_images, val_labels: a validation set of its own (an image folder's ``val/``);
            ``None``: validation is split off the training set.
        classes: class names, label ``i`` is ``classes[i]`` (empty: the labels are the names).
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    val_images: Tensor | None = None
    val_labels: Tensor | None = None
    classes: tuple[str, ...] = ()


def split_indices(
    n: int,
    *,
    val_size: int,
    train_subset: int | None,
    split_seed: int,
    own_validation: bool = False,
) -> tuple[Tensor, Tensor]:
    """Split ``n`` official training images into ``(train_indices, val_indices)`` (int64).

    A seeded permutation of ``range(n)``: validation is its first ``val_size`` entries,
    training the rest, cut to its first ``train_subset`` entries when given (a smaller
    subset is a prefix of a larger one). The official test set is never part of it.
    With ``own_validation`` (an image folder's ``val/``), ``val_size`` is not used,
    training is the permutation's first ``train_subset`` entries (all when ``None``) and
    the validation indices are empty. Raises ConfigError when ``val_size`` or
    ``train_subset`` do not fit in ``n``.
    """
    if own_validation:
        if train_subset is not None and not 1 <= train_subset <= n:
            raise ConfigError(
                f"train_subset={train_subset} is more than the {n} training images; "
                f"allowed 1 to {n}."
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
        return (perm if train_subset is None else perm[:train_subset]), perm[:0]
    if not 1 <= val_size < n:
        raise ConfigError(
            f"val_size={val_size} does not fit {n} training images; allowed 1 to {n - 1}."
        )
    if train_subset is not None and not 1 <= train_subset <= n - val_size:
        raise ConfigError(
            f"train_subset={train_subset} with val_size={val_size} needs more than the {n} "
            f"training images; allowed train_subset: 1 to {n - val_size} (or lower val_size)."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    train = perm[val_size:]
    return (train if train_subset is None else train[:train_subset]), perm[:val_size]


def prepare_images(
    images_uint8: Tensor,
    *,
    dataset: str,
    normalize: bool,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> Tensor:
    """Turn uint8 images (N, H, W) or (N, C, H, W) into model input (N, C, H, W) of ``dtype``.

    Scaling and standardisation run in float32 (float64 for float64) and the result is cast
    once at the end, so every precision sees the same input rounded once.

    Args:
        images_uint8: uint8 tensor (N, H, W) or (N, C, H, W).
        dataset: dataset name, picks its per-channel constants
            (:class:`hpo.engine.data.registry.DatasetInfo`).
        normalize: standardise with the dataset's mean and std, else keep [0, 1].
        dtype: floating dtype of the result.
        device: where the result lives (the uint8 tensor is moved first: 4x less to copy).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() not in (3, 4):
        raise ValueError(
            f"expected uint8 images (N, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}"
        )
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    channels = 1 if images_uint8.dim() == 3 else images_uint8.shape[1]
    stats = dataset_info(dataset).mean_std(channels) if normalize else None
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    x = images_uint8.to(device) if device is not None else images_uint8
    x = x.to(compute).div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if stats is not None:
        # Per channel with Python floats: for one channel exactly the arithmetic of a
        # whole-tensor sub_/div_ by scalars.
        for c, (mean, std) in enumerate(zip(*stats)):
            x[:, c].sub_(mean).div_(std)
    return x.to(dtype)


def gather_rows(x: Tensor, idx: Tensor, out: Tensor | None = None) -> Tensor:
    """``x[idx]`` along the first dimension, as fast as CPUs allow.

    ``index_select`` on the flattened rows copies each row in one piece; on the 4-D image
    tensor it was 4x slower (and ``x[idx]`` 20x), which made the gather a large part of a
    small net's step. ``out``: a contiguous buffer with at least ``len(idx)`` rows of ``x``'s
    shape and dtype, reused from batch to batch: a fresh 400 KB batch is a fresh ``mmap``
    whose pages fault in on the first write, and with two threads that made the gather
    about 1.5x slower. The result is then a view of ``out``.
    """
    flat = x.reshape(x.shape[0], -1)
    if out is None:
        return flat.index_select(0, idx).view(len(idx), *x.shape[1:])
    rows = out[: len(idx)]
    torch.index_select(flat, 0, idx, out=rows.view(len(idx), -1))
    return rows


def shape_batch(x: Tensor, *, channels: int, image_size: int) -> Tensor:
    """Fit a (N, C, H, W) batch to a model's input channels and size.

    Resizes with bilinear interpolation (in float32 for float16/bfloat16, cast back), then
    expands the gray channel to 3 as a view (no copy). Returns ``x`` itself when nothing
    changes.
    """
    if channels not in (1, 3) or x.dim() != 4 or x.shape[1] not in (1, channels):
        raise ValueError(f"cannot shape {tuple(x.shape)} to {channels} channels")
    if x.shape[-2:] != (image_size, image_size):
        low = x.dtype in (torch.float16, torch.bfloat16)
        y = F.interpolate(
            x.float() if low else x,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
        )
        x = y.to(x.dtype) if low else y
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    return x
