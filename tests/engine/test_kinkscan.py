"""The compiled kink scan: exactly ``(x == k).any()`` for every precision and layout it
takes, ``None`` where it does not apply, and the same training results as PyTorch ops."""

from __future__ import annotations

import os

import pytest
import torch

from hpo.engine import kinkscan
from hpo.engine.activations import ReLU, ReLU6

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
KINK_SETS = [(0.0,), (0.0, 6.0)]
# Bigger than the scan's block (4096) and than its parallel threshold (32768).
LARGE = 3 * 32768 + 17
GRAIN = 32768  # PyTorch's at::internal::GRAIN_SIZE: the scan splits work as PyTorch does

needs_native = pytest.mark.skipif(
    not kinkscan.native_available(), reason="the compiled scan is not built here"
)


def _reference(x: torch.Tensor, kinks: tuple[float, ...]) -> bool:
    return any(bool((x == k).any()) for k in kinks)


def _off_kink(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=gen, dtype=torch.float64) * 20 - 10
    x = x.to(dtype)
    x[(x == 0) | (x == 6)] = 1.5
    return x


def test_native_scan_is_built_in_ci():
    # CI installs with `pip install -e .`, which must build the extension there; elsewhere
    # the PyTorch fallback is allowed (no C compiler).
    if os.environ.get("CI"):
        assert kinkscan.native_available()


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kinks", KINK_SETS)
@pytest.mark.parametrize("n", [1, 7, 4096, 4097, LARGE])
def test_finds_a_single_value_on_a_kink_anywhere(dtype, kinks, n):
    x = _off_kink(n, dtype)
    assert kinkscan.any_on_kinks(x, kinks) is False
    for pos in sorted({0, n // 2, n - 1}):
        for value in (*kinks, -0.0):
            y = x.clone()
            y[pos] = value
            assert kinkscan.any_on_kinks(y, kinks) is True, (pos, value)


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [GRAIN, GRAIN + 1, 2 * GRAIN + 1, LARGE])
def test_finds_a_kink_at_every_thread_chunk_boundary(threads, n):
    """Each thread scans the chunk PyTorch's elementwise kernels give it (min(threads,
    ceil(n / GRAIN)) equal chunks; one chunk up to GRAIN items): a hit on either side of
    every chunk boundary, and in the last item, is found whatever the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = _off_kink(n, torch.float32)
        assert kinkscan.any_on_kinks(x, (0.0,)) is False
        parts = 1 if n <= GRAIN else min(threads, -(-n // GRAIN))
        chunk = -(-n // parts)
        edges = {p for k in range(1, parts) for p in (k * chunk - 1, k * chunk)}
        for pos in sorted({0, *edges, n - 1}):
            y = x.clone()
            y[pos] = 0.0
            assert kinkscan.any_on_kinks(y, (0.0,)) is True, (threads, n, pos)
    finally:
        torch.set_num_threads(before)


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kinks", KINK_SETS)
def test_near_misses_and_specials_are_not_kinks(dtype, kinks):
    info = torch.finfo(dtype)
    six = torch.tensor(6.0, dtype=dtype)
    values = [
        info.smallest_normal, -info.smallest_normal, info.tiny / 2,  # tiny/2: a subnormal
        float("nan"), float("inf"), float("-inf"), -6.0,
        float(torch.nextafter(six, torch.tensor(7.0, dtype=dtype))),
        float(torch.nextafter(six, torch.tensor(5.0, dtype=dtype))),
    ]
    x = torch.tensor(values, dtype=torch.float64).to(dtype)
    assert not _reference(x, kinks)
    assert kinkscan.any_on_kinks(x, kinks) is False
    # ReLU's only kink is 0: a 6 is no hit for it.
    assert kinkscan.any_on_kinks(torch.tensor([6.0], dtype=dtype), (0.0,)) is False


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_pytorch_on_random_tensors(dtype):
    gen = torch.Generator().manual_seed(3)
    for trial in range(40):
        n = int(torch.randint(1, 70000, (1,), generator=gen))
        # A coarse grid makes exact zeros and sixes likely in some tensors, absent in others.
        step = [0.5, 0.37, 1e-3][trial % 3]
        x = (torch.randn(n, generator=gen, dtype=torch.float64) * 4 / step).round() * step
        x = x.to(dtype)
        for kinks in KINK_SETS:
            assert kinkscan.any_on_kinks(x, kinks) is _reference(x, kinks), (trial, kinks)


@needs_native
def test_empty_tensor_has_no_kink():
    assert kinkscan.any_on_kinks(torch.empty(0), (0.0,)) is False


@pytest.mark.parametrize(
    "x, kinks",
    [
        (torch.zeros(4, 4).t()[:, :3], (0.0,)),  # not contiguous
        (torch.zeros(4, dtype=torch.int32), (0.0,)),  # not a float precision
        (torch.zeros(4), (0.0, 6.0, 7.0)),  # more than two kinks
        (torch.zeros(4, dtype=torch.float16), (0.1,)),  # kink not representable
    ],
)
def test_does_not_apply_where_it_cannot_answer(x, kinks):
    assert kinkscan.any_on_kinks(x, kinks) is None


def test_without_the_extension_it_answers_none(monkeypatch):
    monkeypatch.setattr(kinkscan, "_native", None)
    assert kinkscan.any_on_kinks(torch.zeros(4), (0.0,)) is None


@pytest.mark.parametrize("make", [lambda: ReLU(1.0), lambda: ReLU6(0.5, 0.25)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_gradients_do_not_depend_on_the_scan(monkeypatch, make, dtype):
    gen = torch.Generator().manual_seed(0)
    x = ((torch.randn(64, 300, generator=gen) * 8).round() / 2).to(dtype)  # many 0 and 6
    x[0] = 1.25  # and rows without any
    g = torch.randn(64, 300, generator=gen).to(dtype)

    def run() -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        act = make()
        leaf = x.clone().requires_grad_()
        out = act(leaf * 1)
        (grad,) = torch.autograd.grad(out, leaf, g)
        return out, grad, act.kink_hits()

    native = run()
    monkeypatch.setattr(kinkscan, "_native", None)
    fallback = run()
    assert native[2] == fallback[2] and sum(native[2]) > 0
    for a, b in zip(native[:2], fallback[:2]):
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8))


@pytest.mark.skipif(not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files")
def test_training_is_bitwise_the_same_with_and_without_the_scan(monkeypatch):
    from hpo.engine.spec import TrainSpec
    from hpo.engine.train import train

    spec = TrainSpec(model="fc", depth=2, width=32, train_subset=1024, val_size=512,
                     batch_size=64, precision="bfloat16", batch_norm=True, relu_prime_zero=1.0)
    native = train(spec)
    monkeypatch.setattr(kinkscan, "_native", None)
    fallback = train(spec)
    assert native.kink_hits == fallback.kink_hits > 0
    assert native.params_sha256 == fallback.params_sha256


@needs_native
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_modules_scanner_answers_as_any_on_kinks(dtype):
    import copy
    import pickle

    scan = kinkscan.Scanner((0.0, 6.0))
    x = _off_kink(5000, dtype)
    assert scan(x) is False and scan(x.view(50, 100).t()) is None  # not contiguous
    x[1234] = 6.0
    assert scan(x) is True
    for clone in (pickle.loads(pickle.dumps(scan)), copy.deepcopy(scan)):
        assert clone.kinks == (0.0, 6.0) and clone(x) is True
    relu = pickle.loads(pickle.dumps(ReLU(1.0)))  # a module with its scanner pickles
    assert relu._scan(torch.zeros(3, dtype=dtype)) is True
