"""The training protocol: SGD settings, per-epoch schedules, seeded augmentation, memory
format, and a step path that never reads a tensor value on the host per step."""

from __future__ import annotations

import math
import os
import sys
import warnings

import pytest
import torch
from torch import nn

from hpo.engine import train as train_mod
from hpo.engine.spec import TrainSpec
from hpo.engine.step import make_scheduler, uses_channels_last
from hpo.engine.train import train
from hpo.errors import ConfigError

needs_mnist = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)
TINY = dict(model="fc", depth=1, width=16, train_subset=256, val_size=256, batch_size=64)


def _lrs(spec: TrainSpec) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=spec.lr)
    scheduler = make_scheduler(spec, opt)
    values = []
    for _ in range(spec.epochs):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return values


def test_schedule_values_per_epoch():
    cos = _lrs(TrainSpec(lr=0.1, epochs=4, lr_schedule="cosine"))
    expected = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert cos == pytest.approx(expected, rel=1e-12)
    step = _lrs(TrainSpec(lr=0.1, epochs=7, lr_schedule="step", lr_step_epochs=3, lr_gamma=0.5))
    assert step == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025], rel=1e-12)
    assert _lrs(TrainSpec(lr=0.1, epochs=3)) == [0.1, 0.1, 0.1]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (dict(lr_schedule="linear"), "Unknown lr_schedule 'linear'"),
        (dict(lr_schedule="step"), "needs lr_step_epochs"),
        (dict(lr_schedule="step", lr_step_epochs=0), "lr_step_epochs 0"),
        (dict(lr_step_epochs=3), "only apply to lr_schedule 'step'"),
        (dict(lr_schedule="cosine", lr_gamma=0.5), "only apply to lr_schedule 'step'"),
        (dict(lr_schedule="step", lr_step_epochs=2, lr_gamma=0.0), "lr_gamma 0.0"),
        (dict(augment="autoaugment"), "Unknown augment 'autoaugment'"),
        (dict(channels_last="yes"), "Unknown channels_last 'yes'"),
        (dict(nesterov=True), "nesterov=true needs optimizer 'sgd'"),
        (dict(optimizer="sgd", nesterov=True), "momentum > 0"),
        (dict(nesterov="no"), "Invalid nesterov 'no'"),
    ],
)
def test_invalid_protocol_settings_are_rejected_in_one_line(changes, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        TrainSpec(**changes)
    assert "\n" not in str(info.value)


def test_valid_protocol_settings_and_yaml_booleans():
    spec = TrainSpec(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
                     lr_schedule="step", lr_step_epochs=30, augment="crop_flip",
                     channels_last=True)
    assert spec.channels_last == "true"
    assert TrainSpec(channels_last=False).channels_last == "false"


def test_channels_last_auto_means_cuda_and_a_conv_net():
    conv, fc = nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Sequential(nn.Linear(2, 2))
    auto = TrainSpec()
    assert uses_channels_last(auto, conv, torch.device("cuda"))
    assert not uses_channels_last(auto, fc, torch.device("cuda"))
    assert not uses_channels_last(auto, conv, torch.device("cpu"))
    assert uses_channels_last(TrainSpec(channels_last="true"), conv, torch.device("cpu"))
    assert not uses_channels_last(TrainSpec(channels_last="false"), conv, torch.device("cuda"))


@needs_mnist
def test_augmented_sgd_run_reproduces_bitwise_and_shares_batches_across_relu_prime_zero():
    spec = TrainSpec(**TINY, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                     nesterov=True, lr_schedule="cosine", augment="crop_flip", epochs=2,
                     precision="float64", relu_prime_zero=0.0)
    a, b = train(spec), train(spec)
    assert a.params_sha256 == b.params_sha256 and a.train_loss == b.train_loss
    # float64 never lands on the kink: the same weights and augmented batches give the same
    # bits whatever ReLU'(0) is.
    c = train(spec.replace(relu_prime_zero=1.0))
    assert c.kink_hits == 0 and c.params_sha256 == a.params_sha256
    plain = train(spec.replace(augment="none"))
    assert plain.params_sha256 != a.params_sha256


@needs_mnist
def test_defaults_are_todays_loop():
    """The protocol's defaults change nothing: explicit 'none'/'false' give the same bits."""
    spec = TrainSpec(**TINY)
    same = spec.replace(lr_schedule="none", augment="none", channels_last="false")
    assert train(spec).params_sha256 == train(same).params_sha256


def _counting(monkeypatch, counter: list[int]) -> None:
    """Count every Python-side read of a tensor value (``item``, ``bool``, ``tolist``),
    except the kink scan's: it runs on CPU tensors only (``x.is_cpu``; other devices take
    ``Scanner.masks``, which reads nothing)."""
    for name in ("item", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, **kwargs):
            if not sys._getframe(1).f_code.co_filename.endswith("kinkscan.py"):
                counter[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)


@needs_mnist
@pytest.mark.parametrize("augment", ["none", "crop_flip"])
def test_device_step_path_reads_no_tensor_value_per_step(monkeypatch, augment):
    """The GPU path of the loop, run on the CPU: host reads do not grow with the steps."""
    monkeypatch.setattr(train_mod, "_reads_loss_each_step", lambda device: False)
    monkeypatch.setattr(train_mod, "_CUDA_CHECK_EVERY", 10**9)
    reads = []
    for subset in (128, 512):  # 2 and 8 steps an epoch
        counter = [0]
        spec = TrainSpec(**{**TINY, "train_subset": subset}, optimizer="sgd", lr=0.05,
                         momentum=0.9, lr_schedule="cosine", augment=augment, epochs=2)
        fit = train_mod._fit

        def counted_fit(*args, _fit=fit, _counter=counter, **kwargs):
            with monkeypatch.context() as m:
                _counting(m, _counter)
                return _fit(*args, **kwargs)

        monkeypatch.setattr(train_mod, "_fit", counted_fit)
        result = train(spec)
        monkeypatch.setattr(train_mod, "_fit", fit)
        assert result.epochs_completed == 2
        reads.append(counter[0])
    assert reads[0] == reads[1], f"host reads grow with the number of steps: {reads}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_mnist
def test_cuda_steps_do_not_synchronise(monkeypatch):
    """On CUDA, synchronisations (sync debug mode's warnings) do not grow with the steps."""
    monkeypatch.setattr(train_mod, "_CUDA_CHECK_EVERY", 10**9)
    counts = []
    for subset in (128, 512):
        spec = TrainSpec(**{**TINY, "train_subset": subset}, optimizer="sgd", lr=0.05,
                         momentum=0.9, augment="crop_flip", device="cuda", epochs=2)
        fit = train_mod._fit

        def guarded_fit(*args, _fit=fit, **kwargs):
            torch.cuda.set_sync_debug_mode("warn")
            try:
                return _fit(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        monkeypatch.setattr(train_mod, "_fit", guarded_fit)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            train(spec)
        monkeypatch.setattr(train_mod, "_fit", fit)
        counts.append(sum("synchroniz" in str(w.message) for w in seen))
    assert counts[0] == counts[1], f"synchronisations grow with the steps: {counts}"
