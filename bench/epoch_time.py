"""One MNIST training epoch: our engine against the usual user pipeline and the compute floor.

Ways to train the same fully connected net (float32, batch 128, Adam lr 1e-3, the
same initial weights) on the same 50,000 training images, measured side by side in one run:

* **ours**: ``hpo.engine.train.train(spec)`` with ``epochs=1`` and ReLU'(0) = 1, exactly what
  a trial runs. "train pass" is the engine's own ``TrainResult.train_time_s`` (shuffle,
  batching, forward, backward, Adam, loss check; validation excluded); "train + val" is the
  ``EpochReport.elapsed_s`` the engine passes to its epoch callback (the train pass plus
  accuracy on the 10,000 validation images). The once-per-trial cost of ``train()`` (model
  build and audit, input preparation, test accuracy) is shown separately ("whole call").
  Its batches are gathered from the prepared float32 training tensor a chunk of whole
  batches at a time (``hpo/engine/data/batches.py``: one ``index_select`` per 4 MiB, 10
  batches; each batch is then a contiguous slice of the chunk).
* **reference**: the pipeline of the Optuna PyTorch example (``optuna-examples/pytorch/
  pytorch_simple.py``): torchvision's ``MNIST`` dataset with ``transforms.ToTensor()``, a
  ``DataLoader(batch_size=128, shuffle=True)`` over the same training indices, stock
  ``nn.ReLU`` and ``torch.optim.Adam``; "train + val" adds a no-grad pass over the same
  validation images with a batch-128 loader, as in the example. torchvision's class needs
  the unpacked IDX files in a writable folder: the official ``.gz`` files from
  ``$HPO_DATA_DIR`` are unpacked into a temporary folder (the data folder is never written).
* **floor**: the pure compute: the same number of forward/backward/Adam steps, with the
  same batch sizes, on one batch already in memory, stock ``nn.ReLU``, the engine's Adam
  settings and determinism settings, nothing else in the loop.
* **floor, 16 rotating batches** (information): the floor, but the steps use 16 different
  batches in turn, gathered before the clock starts. Nothing is gathered in the loop; what
  it adds to the floor is the cost of a step reading an input it did not read last step
  (the same-batch floor keeps its input, weights, gradients and Adam state in the core's
  cache; a new 400 KB batch each step does not fit beside them).
* **floor, shuffled batches** (information): the floor, but each step's batch is gathered
  with its own ``index_select`` from the whole prepared float32 training tensor in a random
  order (the engine's way before its chunked gather). The difference to the floor is
  what shuffling costs done one batch at a time (a parallel kernel per 400 KB batch,
  random rows from a 157 MB tensor between steps).

Targets (issue 10, the engine in pure Python): ours' train pass within 1.25x of the floor
(fc 2x64 and 3x256); the reference's train pass at least 5x ours for fc 2x64 (for 3x256 the
compute dominates and about 2.5-3x is the ceiling, so that row is information only).

Variants run interleaved (their order rotates every round) after a warm-up round that is
not counted; each figure in the table is the median over the counted rounds. The floor and
ours always run back to back (in alternating order), and the target is checked on the
median of their per-round ratios: on a cloud machine whose speed drifts by 30% over tens
of seconds (measured: every variant slower for a few rounds, then faster again, with no
page faults or steal time to explain it), a ratio of two medians taken at different
moments moved between 1.18x and 1.35x from run to run. On a machine shared with
other jobs, ``--threads 1 --cpu-clock`` measures the main thread's CPU time instead of
wall time (the engine's own timers are switched to the same clock): steadier, though
memory stalls still count, and it says nothing about two threads.

Usage::

    HPO_DATA_DIR=/work/shared/datasets python bench/epoch_time.py            # final figures
    HPO_DATA_DIR=/work/shared/datasets python bench/epoch_time.py --quick    # sanity run
    HPO_DATA_DIR=/work/shared/datasets python bench/epoch_time.py --quick --threads 1 \
        --cpu-clock                                                           # busy machine
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path

import _timing  # puts the repository on sys.path
import torch
import torch.nn.functional as F
from _timing import Check, clock, machine_header, median, print_checks, print_table, spread
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from hpo.engine import train as train_mod
from hpo.engine.data import idx
from hpo.engine.data import tensors as data_mod
from hpo.engine.models.activations import KinkedActivation
from hpo.engine.models.build import build_model
from hpo.engine.numerics.precision import resolve_precision
from hpo.engine.result import TrainResult
from hpo.engine.spec import TrainSpec
from hpo.engine.step import deterministic, make_optimizer
from hpo.engine.train import EpochReport, train

NETS = {"2x64": (2, 64), "3x256": (3, 256)}
# The targets: ours within 1.25x of the floor; >= 5x faster than the reference for
# 2x64 (for 3x256 compute dominates and 2.5-3x is about the most there is: shown as info).
FLOOR_TARGET = 1.25
REFERENCE_TARGET = {"2x64": 5.0}


def stock_copy(model: nn.Module) -> nn.Module:
    """The same model (same weights) with every configured activation back to nn.ReLU."""
    stock = copy.deepcopy(model)
    for parent in list(stock.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, KinkedActivation):
                setattr(parent, name, nn.ReLU(inplace=child.inplace))
    return stock


def build_stock(spec: TrainSpec) -> nn.Module:
    torch.manual_seed(spec.seed)  # as the engine: the initial weights come from the seed
    return stock_copy(build_model(spec).model)


@contextlib.contextmanager
def engine_clock() -> Iterator[None]:
    """Make the engine's own timers read the benchmark's clock (a no-op for wall time)."""
    if not _timing.using_cpu_clock():
        yield
        return
    saved = train_mod.time
    train_mod.time = types.SimpleNamespace(perf_counter=time.thread_time)  # type: ignore
    try:
        yield
    finally:
        train_mod.time = saved


def unpack_mnist(data_dir: Path, into: Path) -> Path:
    """Unpack the official .gz files into ``into/MNIST/raw`` for torchvision's MNIST class."""
    raw = into / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = data_dir / "MNIST" / "raw"
    for filename, _ in datasets.MNIST.resources:
        with gzip.open(source / filename, "rb") as src, open(raw / filename[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return into


class Bench:
    """The variants for one net, each callable once per round."""

    def __init__(self, net: str, spec: TrainSpec, data_dir: Path, mnist_root: Path) -> None:
        self.net, self.spec, self.data_dir = net, spec, data_dir
        raw = idx.load_raw("mnist", data_dir)
        train_idx, val_idx = data_mod.split_indices(
            len(raw.train_labels), val_size=spec.val_size, train_subset=spec.train_subset,
            split_seed=spec.split_seed,
        )
        self.n_train = len(train_idx)
        tv = datasets.MNIST(str(mnist_root), train=True, transform=transforms.ToTensor())
        self.ref_train = Subset(tv, train_idx.tolist())
        self.ref_val = Subset(tv, val_idx.tolist())
        # The floor's data: the engine-prepared training images, already in memory.
        self.train_x = data_mod.prepare_images(
            raw.train_images[train_idx], dataset="mnist", normalize=True, dtype=torch.float32
        )
        self.train_y = raw.train_labels[train_idx]
        self.times: dict[str, list[float]] = {
            k: [] for k in ("ours_train", "ours_epoch", "ours_call", "ref_train", "ref_epoch",
                            "floor", "floor_rotating", "floor_shuffled")
        }

    # -- ours: the engine's own loop and timers -------------------------------------------
    def ours(self) -> None:
        reports: list[EpochReport] = []
        started = clock()
        with engine_clock():
            result = train(self.spec, data_dir=self.data_dir, on_epoch_end=reports.append)
        self.times["ours_call"].append(clock() - started)
        self.times["ours_train"].append(result.train_time_s)
        self.times["ours_epoch"].append(reports[0].elapsed_s)

    # -- reference: the Optuna example's pipeline --------------------------------------------
    def reference(self) -> None:
        model = build_stock(self.spec)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.spec.lr)
        train_loader = DataLoader(self.ref_train, batch_size=self.spec.batch_size, shuffle=True)
        val_loader = DataLoader(self.ref_val, batch_size=self.spec.batch_size, shuffle=True)
        started = clock()
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
        trained = clock()
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in val_loader:
                correct += (model(data).argmax(dim=1) == target).sum().item()
        done = clock()
        self.times["ref_train"].append(trained - started)
        self.times["ref_epoch"].append(done - started)

    # -- floor: the same steps on one batch in memory ----------------------------------------
    def floor(self) -> None:
        self.times["floor"].append(self._floor("same"))

    def floor_rotating(self) -> None:
        self.times["floor_rotating"].append(self._floor("rotating"))

    def floor_shuffled(self) -> None:
        self.times["floor_shuffled"].append(self._floor("shuffled"))

    def _floor(self, batches: str) -> float:
        """The compute alone, under the engine's determinism settings. ``batches``:

        * ``same``: the same batch every step (it stays in the core's cache);
        * ``rotating``: 16 different batches gathered before the clock starts, used in turn
          (no gather in the loop, but each step reads an input it did not read last step:
          the cost of new data alone, which no pipeline can avoid);
        * ``shuffled``: each step's batch is gathered from the whole training tensor (what
          any pipeline that shuffles samples must move).
        """
        model = build_stock(self.spec)
        optimizer = make_optimizer(
            self.spec, model, resolve_precision(self.spec.precision), TrainResult()
        )
        bs, n = self.spec.batch_size, self.n_train
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        rotating = [
            (data_mod.gather_rows(self.train_x, idx), self.train_y.index_select(0, idx))
            for idx in order[: 16 * bs].split(bs)
        ] if batches == "rotating" else []
        model.train()
        with deterministic(torch.device("cpu")):
            started = clock()
            for step, start in enumerate(range(0, n, bs)):
                if batches == "shuffled":
                    idx = order[start : start + bs]
                    x = data_mod.gather_rows(self.train_x, idx)
                    y = self.train_y.index_select(0, idx)
                elif batches == "rotating":
                    x, y = rotating[step % len(rotating)]
                    x, y = x[: min(bs, n - start)], y[: min(bs, n - start)]
                else:
                    x, y = self.train_x[: min(bs, n - start)], self.train_y[: min(bs, n - start)]
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            return clock() - started

    def checks(self) -> list[Check]:
        t = {k: median(v) for k, v in self.times.items()}
        net = self.net
        ref_target = REFERENCE_TARGET.get(net)
        paired = [o / f for o, f in zip(self.times["ours_train"], self.times["floor"])]
        return [
            Check(f"fc {net}: ours train pass / floor, per round", median(paired),
                  FLOOR_TARGET, note=f"median of {len(paired)} back-to-back pairs, "
                  f"{min(paired):.2f}-{max(paired):.2f}x"),
            Check(f"fc {net}: ours train pass / floor, medians", t["ours_train"] / t["floor"],
                  None, note="the medians of the table"),
            Check(f"fc {net}: reference train pass / ours train pass",
                  t["ref_train"] / t["ours_train"], ref_target, at_least=True,
                  note="" if ref_target else "compute-bound: ~2.5-3x is the ceiling"),
            Check(f"fc {net}: reference train+val / ours train+val",
                  t["ref_epoch"] / t["ours_epoch"], None),
            Check(f"fc {net}: floor with 16 rotating batches / floor",
                  t["floor_rotating"] / t["floor"], None,
                  note="new input each step, nothing gathered"),
            Check(f"fc {net}: ours train pass / floor with shuffled batches",
                  t["ours_train"] / t["floor_shuffled"], None,
                  note="the floor plus the per-step batch gather"),
            Check(f"fc {net}: ours train+val / floor", t["ours_epoch"] / t["floor"], None,
                  note="validation is not in the floor"),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _timing.add_common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=None,
                        help="counted rounds after the warm-up (default 9; --quick 2)")
    parser.add_argument("--nets", default="2x64,3x256", help=f"comma list of {list(NETS)}")
    args = parser.parse_args(argv)
    _timing.setup(parser, args)
    nets = args.nets.split(",")
    if unknown := [n for n in nets if n not in NETS]:
        parser.error(f"unknown net(s) {unknown}; choose from {list(NETS)}")
    rounds = args.rounds or (2 if args.quick else 9)
    subset = 12_800 if args.quick else None
    data_dir = Path(args.data_dir)

    print(machine_header())
    print(f"MNIST, float32, batch 128, Adam, train images {subset or 50_000}, "
          f"ours with ReLU'(0)=1; 1 warm-up round + {rounds} counted rounds (median)\n")
    checks: list[Check] = []
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="hpo-bench-mnist-") as tmp:
        mnist_root = unpack_mnist(data_dir, Path(tmp))
        for net in nets:
            depth, width = NETS[net]
            spec = TrainSpec(model="fc", depth=depth, width=width, batch_size=128,
                             precision="float32", optimizer="adam", lr=1e-3, epochs=1,
                             relu_prime_zero=1.0, train_subset=subset)
            bench = Bench(net, spec, data_dir, mnist_root)
            # The floor and ours run back to back (their order alternating), so that the
            # target's ratio is taken per round between neighbours in time; the other
            # variants rotate around that pair.
            pair = [bench.floor, bench.ours]
            others = [bench.reference, bench.floor_rotating, bench.floor_shuffled]
            for r in range(rounds + 1):
                units = [pair if r % 2 == 0 else pair[::-1]] + [[v] for v in others]
                shift = r % len(units)
                for unit in units[shift:] + units[:shift]:
                    for variant in unit:
                        variant()
                if r == 0:  # warm-up round: not counted
                    for v in bench.times.values():
                        v.clear()
            for key, label in [("floor", "floor (compute only)"),
                               ("floor_rotating", "floor, 16 rotating batches"),
                               ("floor_shuffled", "floor, shuffled batches"),
                               ("ours_train", "ours: train pass"),
                               ("ours_epoch", "ours: train + val"),
                               ("ours_call", "ours: whole train() call"),
                               ("ref_train", "reference: train pass"),
                               ("ref_epoch", "reference: train + val")]:
                values = bench.times[key]
                steps = -(-bench.n_train // spec.batch_size)
                rows.append([f"fc {net}", label, f"{median(values) * 1e3:.1f}",
                             spread(values), f"{median(values) / steps * 1e6:.0f}"])
            checks += bench.checks()
    print_table(["net", "variant", "median ms", "min-max ms", "us/step"], rows)
    print()
    failed = print_checks(checks)
    print(f"\n{failed} target(s) missed" if failed else "\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
