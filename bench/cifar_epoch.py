"""One CIFAR10 epoch of ``resnet18_cifar`` with crop+flip: ours, a DataLoader, the floor.

Three ways to train the same model (float32, batch 128, SGD momentum 0.9, weight decay
5e-4, the same initial weights) for one epoch on the same CIFAR10-shaped data (generated
uint8 images of the real size, 50,000 by default, ``--subset N`` for fewer), measured side
by side in one run (ratios, not a timed test):

* **ours**: ``hpo.engine.train.train`` with ``augment: crop_flip``: the data resident on the
  run's device, normalised once, augmented there a batch at a time (``hpo/engine/
  augment.py``). The figure is the engine's ``train_time_s`` (the train pass: shuffle,
  gather, augment, steps; validation and test excluded). The generated images are handed
  to the engine in place of a dataset file (``load_splits`` is swapped for this run only).
* **dataloader**: the usual pipeline: a torchvision.datasets-style dataset (uint8 HWC
  arrays, ``PIL.Image.fromarray`` per sample) with ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize(mean, std)``, a
  ``DataLoader(batch_size, shuffle=True, num_workers=--workers, pin_memory on CUDA)``, the
  batches copied to the device with ``non_blocking=True``.
* **floor**: the same number of steps with the same batch sizes on one batch already on the
  device: the compute alone.

Targets: on a GPU ours >= 3x faster than the DataLoader and <= 1.3x the floor. Run:
``python bench/cifar_epoch.py --device cpu --subset 512`` (CPU) or
``python bench/cifar_epoch.py --device cuda`` (GPU, the whole 50,000 images).
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import _timing  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from hpo.engine import train as train_mod
from hpo.engine.data import tensors as data_mod
from hpo.engine.data.loading import LoadedSplits
from hpo.engine.data.registry import dataset_info
from hpo.engine.data.splits import prepared_splits
from hpo.engine.models.build import build_model
from hpo.engine.spec import TrainSpec
from hpo.engine.step import deterministic, make_optimizer, seeded, uses_channels_last


class _PerSample(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: HWC uint8 -> PIL -> transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_and_optimizer(spec: TrainSpec, device: torch.device):
    model = build_model(spec).model.to(device)
    fmt = torch.channels_last if uses_channels_last(spec, model, device) else None
    if fmt is not None:
        model = model.to(memory_format=fmt)
    return model, make_optimizer(spec, model, train_mod.resolve_precision("float32"),
                                 train_mod.TrainResult()), fmt


def _step(model, optimizer, xb, yb) -> None:
    loss = F.cross_entropy(model(xb), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--subset", type=int, default=50_000, help="training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: 8 on CUDA, 0 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = train_mod.resolve_device(args.device)
    workers = args.workers if args.workers is not None else (8 if device.type == "cuda" else 0)
    n, val = args.subset, 256
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n + val, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n + val,), generator=gen)
    raw = data_mod.RawDataset("cifar10", images, labels, images[:val], labels[:val])
    spec = TrainSpec(model="resnet18_cifar", dataset="cifar10", batch_size=args.batch_size,
                     train_subset=n, val_size=val, optimizer="sgd", lr=0.05, momentum=0.9,
                     weight_decay=5e-4, augment="crop_flip", bn_recalibration=False,
                     device=device.type)
    steps = -(-n // args.batch_size)
    print(f"resnet18_cifar, {n} images, batch {args.batch_size} ({steps} steps), {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"DataLoader workers {workers}")

    # --- ours: the engine, on generated images handed over in place of the archive ---
    def load(spec_, data_dir, dtype, dev):
        return LoadedSplits(*prepared_splits(raw, val, n, 0, True, dtype, dev), 10)

    with mock.patch.object(train_mod, "load_splits", load):
        ours = train_mod.train(spec).train_time_s

    # --- dataloader: per-sample PIL transforms ---
    mean, std = dataset_info("cifar10").mean, dataset_info("cifar10").std
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean, std),
    ])
    # The engine's training rows (its seeded split), as uint8 HWC arrays.
    train_idx, _ = data_mod.split_indices(n + val, val_size=val, train_subset=n, split_seed=0,
                                          own_validation=False)
    hwc = images[train_idx].permute(0, 2, 3, 1).contiguous().numpy()
    loader = DataLoader(_PerSample(hwc, labels[train_idx].numpy(), transform),
                        batch_size=args.batch_size, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    with seeded(0, device), deterministic(device):
        model, optimizer, fmt = _model_and_optimizer(spec, device)
        model.train()
        _sync(device)
        start = time.perf_counter()
        for xb, yb in loader:
            xb = xb.to(device, non_blocking=True)
            if fmt is not None:
                xb = xb.contiguous(memory_format=fmt)
            _step(model, optimizer, xb, yb.to(device, non_blocking=True))
        _sync(device)
        reference = time.perf_counter() - start

        # --- floor: the same steps on one resident batch ---
        model, optimizer, fmt = _model_and_optimizer(spec, device)
        model.train()
        xb = torch.randn(args.batch_size, 3, 32, 32, device=device)
        if fmt is not None:
            xb = xb.contiguous(memory_format=fmt)
        yb = torch.randint(0, 10, (args.batch_size,), device=device)
        last = n - (steps - 1) * args.batch_size
        _sync(device)
        start = time.perf_counter()
        for step in range(steps):
            size = args.batch_size if step < steps - 1 else last
            _step(model, optimizer, xb[:size], yb[:size])
        _sync(device)
        floor = time.perf_counter() - start

    print(f"{'pipeline':<12}{'epoch s':>10}{'img/s':>10}")
    for name, t in (("ours", ours), ("dataloader", reference), ("floor", floor)):
        print(f"{name:<12}{t:>10.2f}{n / t:>10.0f}")
    print(f"dataloader / ours = {reference / ours:.2f}x (GPU target >= 3)")
    print(f"ours / floor      = {ours / floor:.2f}x (GPU target <= 1.3)")


if __name__ == "__main__":
    main()
