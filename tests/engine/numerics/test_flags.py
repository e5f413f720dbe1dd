"""The run's numerics flags: set from the precision and the spec, all put back afterwards.

These are plain process settings, so everything here runs on a CPU-only machine; what TF32
does to the numbers needs a GPU (bench/cuda_check.py).
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from hpo.engine.numerics.flags import check_tf32_device, fp32_precision_api, numerics, read_flags
from hpo.engine.numerics.platform import platform_record
from hpo.engine.spec import PRECISIONS, TrainSpec
from hpo.engine.train import train
from hpo.errors import ConfigError

NEW = pytest.mark.skipif(not fp32_precision_api(), reason="needs torch's fp32_precision API")
needs_data = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)
TINY = dict(model="fc", depth=1, width=16, train_subset=256, val_size=256, batch_size=64)


def _state() -> dict:
    """Every flag the context may touch (TF32 raw and effective, both reduced-precision
    switches with their split-K parts), read through the API this torch wants read."""
    return read_flags()


@pytest.fixture
def odd_caller_flags():
    """The caller's flags set away from PyTorch's defaults, so a restore to the defaults
    instead of to the caller's values would be seen; PyTorch's put back at the end."""
    matmul = torch.backends.cuda.matmul
    new = fp32_precision_api()
    before = (
        (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
        if new else (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    )
    rpr = (matmul.allow_fp16_reduced_precision_reduction,
           matmul.allow_bf16_reduced_precision_reduction)
    if new:
        matmul.fp32_precision = "tf32"  # the caller allows TF32 everywhere
    else:
        torch.set_float32_matmul_precision("high")
    matmul.allow_fp16_reduced_precision_reduction = False
    try:
        yield _state()
    finally:
        if new:
            matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before
        else:
            torch.set_float32_matmul_precision(before[0])
            torch.backends.cudnn.allow_tf32 = before[1]
        matmul.allow_fp16_reduced_precision_reduction = rpr[0]
        matmul.allow_bf16_reduced_precision_reduction = rpr[1]


@pytest.mark.parametrize("precision", [p for p in PRECISIONS if p != "tf32"])
def test_tf32_is_off_under_every_other_precision(precision, odd_caller_flags):
    with numerics(precision):
        flags = read_flags()
        assert flags["cuda_matmul_allow_tf32"] is False
        assert flags["cudnn_allow_tf32"] is False  # cuDNN's default is on: turned off
    assert _state() == odd_caller_flags


def test_tf32_precision_turns_it_on_and_back():
    before = _state()
    assert before["cuda_matmul_allow_tf32"] is False  # PyTorch's default for matmuls
    with numerics("tf32"):
        flags = read_flags()
        assert flags["cuda_matmul_allow_tf32"] and flags["cudnn_allow_tf32"]
    assert _state() == before


@pytest.mark.parametrize("setting, value", [("on", True), ("off", False)])
def test_reduced_precision_reduction_is_a_setting(setting, value, odd_caller_flags):
    with numerics("bfloat16", setting):
        flags = read_flags()
        assert flags["fp16_reduced_precision_reduction"] is value
        assert flags["bf16_reduced_precision_reduction"] is value
    assert _state() == odd_caller_flags


def test_default_leaves_pytorchs_reduced_precision_setting(odd_caller_flags):
    with numerics("float16", "default"):
        flags = read_flags()
        assert flags["fp16_reduced_precision_reduction"] is False  # the caller's, kept
        assert flags["bf16_reduced_precision_reduction"] is True  # PyTorch's default
    assert _state() == odd_caller_flags


def test_flags_are_put_back_when_the_body_raises(odd_caller_flags):
    with pytest.raises(RuntimeError, match="boom"), numerics("float32", "off"):
        assert read_flags()["fp16_reduced_precision_reduction"] is False
        raise RuntimeError("boom")
    assert _state() == odd_caller_flags


@NEW
def test_split_k_switch_survives_the_restore():
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_fp16_reduced_precision_reduction
    matmul.allow_fp16_reduced_precision_reduction = (False, False)  # split-K off too
    try:
        with numerics("float16", "on"):  # a bool sets split-K back on
            assert matmul.allow_fp16_reduced_precision_reduction_split_k is True
        assert matmul.allow_fp16_reduced_precision_reduction is False
        assert matmul.allow_fp16_reduced_precision_reduction_split_k is False
    finally:
        matmul.allow_fp16_reduced_precision_reduction = (before, True)


@NEW
def test_new_api_raises_no_deprecation_warning_and_legacy_reads_work_after():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with numerics("tf32", "on"):
            platform_record("cpu")  # reads the flags inside: must not hit a legacy getter
        with numerics("float32"):
            pass
    assert not [w for w in caught if "TF32" in str(w.message) or "fp32" in str(w.message)]
    # A caller that used the legacy API reads it back after a run (no "mix of the legacy
    # and new APIs" error from its getters).
    torch.set_float32_matmul_precision("high")
    try:
        with numerics("float32"):
            assert read_flags()["cuda_matmul_allow_tf32"] is False
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.set_float32_matmul_precision("highest")
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_legacy_api_sets_and_restores_too():
    # torch < 2.7 has only allow_tf32 / set_float32_matmul_precision: the same contract.
    # On a newer torch the legacy setters still work (they update the new settings too).
    torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.allow_tf32 = False
    try:
        before = _state()
        with numerics("tf32", api="legacy"):
            assert torch.get_float32_matmul_precision() == "high"
            assert torch.backends.cudnn.allow_tf32 is True
        assert _state() == before
        with numerics("float32", api="legacy"):
            assert torch.backends.cuda.matmul.allow_tf32 is False
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "medium"
        assert _state() == before
    finally:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = True


def test_unknown_setting_is_refused_before_anything_is_set():
    before = _state()
    with pytest.raises(ConfigError, match="reduced_precision_reduction 'sometimes'.*'off'"):
        with numerics("float32", "sometimes"):
            pass
    assert _state() == before


def test_tf32_needs_cuda():
    with pytest.raises(ConfigError, match=r"precision 'tf32' needs a CUDA device.*use float32"):
        check_tf32_device("tf32", torch.device("cpu"), "auto")
    check_tf32_device("float32", torch.device("cpu"), "cpu")
    check_tf32_device("tf32", torch.device("cuda"), "cuda")  # no GPU needed to decide


def test_spec_refuses_tf32_on_cpu_and_accepts_it_elsewhere():
    with pytest.raises(ConfigError, match="precision 'tf32' needs a CUDA device"):
        TrainSpec(precision="tf32")  # device defaults to cpu
    assert TrainSpec(precision="tf32", device="auto").precision == "tf32"
    with pytest.raises(ConfigError, match="reduced_precision_reduction 'yes'"):
        TrainSpec(reduced_precision_reduction="yes")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only case")
def test_train_with_device_auto_refuses_tf32_without_cuda():
    before = _state()
    with pytest.raises(ConfigError, match="device 'auto' is 'cpu' on this machine"):
        train(TrainSpec(**TINY, precision="tf32", device="auto"))
    assert _state() == before


@needs_data
def test_train_records_its_flags_and_puts_every_one_back(odd_caller_flags):
    result = train(TrainSpec(**TINY, reduced_precision_reduction="on"))
    assert _state() == odd_caller_flags
    flags = result.platform["flags"]
    assert flags["cuda_matmul_allow_tf32"] is False and flags["cudnn_allow_tf32"] is False
    assert flags["fp16_reduced_precision_reduction"] is True  # the run's, not the caller's
    assert flags["deterministic_algorithms"] is True  # read inside the run
    assert result.platform["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert result.platform["num_threads"] == result.threads


@needs_data
def test_flags_are_put_back_after_a_run_that_raises(odd_caller_flags):
    def stop(report):
        assert read_flags()["fp16_reduced_precision_reduction"] is True  # inside the run
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        train(TrainSpec(**TINY, reduced_precision_reduction="on", epochs=2),
              on_epoch_end=stop)
    assert _state() == odd_caller_flags
