"""crop_flip against torchvision's per-sample RandomCrop(padding=4) + flip on uint8 images."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from hpo.engine.data import tensors as data_mod
from hpo.engine.data.augment import CropFlip, black_pixel, crop_flip


def _prepare(u8: torch.Tensor) -> torch.Tensor:
    return data_mod.prepare_images(u8, dataset="cifar10", normalize=True, dtype=torch.float32)


def test_known_tensor_crop_and_flip():
    x = torch.arange(1 * 1 * 3 * 3, dtype=torch.float32).reshape(1, 1, 3, 3)
    fill = torch.tensor([-1.0])
    # Top-left corner at (5, 4) of the 11x11 padded image: rows 1..2 of x, then padding.
    out = crop_flip(x, torch.tensor([[5, 4]]), torch.tensor([False]), fill)
    assert out[0, 0].tolist() == [[3, 4, 5], [6, 7, 8], [-1, -1, -1]]
    flipped = crop_flip(x, torch.tensor([[4, 4]]), torch.tensor([True]), fill)
    assert flipped[0, 0].tolist() == [[2, 1, 0], [5, 4, 3], [8, 7, 6]]
    left = crop_flip(x, torch.tensor([[4, 2]]), torch.tensor([False]), fill)
    assert left[0, 0].tolist() == [[-1, -1, 0], [-1, -1, 3], [-1, -1, 6]]


@pytest.mark.parametrize("flip", [False, True])
def test_matches_torchvision_on_normalised_cifar_images(flip):
    """Cropping the normalised split with a black-pixel fill gives torchvision's numbers:
    pad and crop the uint8 image, then ToTensor and Normalize."""
    gen = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=gen)
    offsets = torch.tensor([[0, 0], [8, 8], [0, 8], [8, 0], [4, 4], [3, 7]])
    flips = torch.full((6,), flip)
    fill = black_pixel(_prepare, 3, torch.float32, torch.device("cpu"))
    ours = crop_flip(_prepare(u8), offsets, flips, fill)
    for i in range(6):
        img = TF.crop(TF.pad(u8[i], [4], fill=0), int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flip:
            img = TF.horizontal_flip(img)
        ref = TF.normalize(img.float() / 255, [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
        torch.testing.assert_close(ours[i], ref, rtol=0, atol=1e-6)


def test_draws_are_seeded_and_cover_all_offsets_and_both_flips():
    fill = torch.full((1,), -1.0)
    x = torch.rand(4000, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    batches = [(x[i : i + 1000], torch.zeros(1000)) for i in range(0, 4000, 1000)]
    a = [xb for xb, _ in CropFlip(0, fill).epoch(iter(batches), 4000)]
    b = [xb for xb, _ in CropFlip(0, fill).epoch(iter(batches), 4000)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    gen = CropFlip(0, fill)
    offsets = torch.randint(0, 9, (4000, 2), generator=gen.generator)
    assert set(offsets.flatten().tolist()) == set(range(9))
    c = [xb for xb, _ in CropFlip(1, fill).epoch(iter(batches), 4000)]
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
