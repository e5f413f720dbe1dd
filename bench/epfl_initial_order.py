"""Is the EPFL initial experiment's accuracy a matter of batch order? Their loop, plain PyTorch.

Their notebook (notebooks/initial_experiment.ipynb) trains FC 784-2000-10 (seed 42069, Adam
lr 1e-3, batch 128, ToTensor inputs, ReLU'(0) = 0, float32) on the 60,000 MNIST training
images in file order (a DataLoader without shuffle) and reports 95.45 / 95.94 test accuracy
after epochs 1 / 2. ``hpo reproduce epfl-initial`` trains in a fixed seeded permutation
instead. This script runs their loop both ways on this machine. Usage::

    HPO_DATA_DIR=/path/to/datasets python bench/epfl_initial_order.py file|perm
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from hpo.engine.data.idx import load_raw


def main(order: str) -> None:
    torch.set_num_threads(1)
    raw = load_raw("mnist")
    x = raw.train_images.float().div(255).reshape(-1, 784)
    y = raw.train_labels
    xt, yt = raw.test_images.float().div(255).reshape(-1, 784), raw.test_labels
    if order == "perm":
        p = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        x, y = x[p], y[p]
    torch.manual_seed(42069)  # their set_random_seed, then the layers in order
    model = nn.Sequential(nn.Linear(784, 2000), nn.ReLU(), nn.Linear(2000, 10))
    opt = torch.optim.Adam(model.parameters())
    for epoch in (1, 2):
        start = time.perf_counter()
        for i in range(0, len(y), 128):
            loss = F.cross_entropy(model(x[i:i + 128]), y[i:i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        print(f"{order} epoch {epoch}: test accuracy {100 * acc:.2f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "file")
