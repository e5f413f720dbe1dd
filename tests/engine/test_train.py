from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from hpo.engine.spec import TrainSpec
from hpo.engine.train import EpochReport, train
from hpo.errors import ConfigError

pytestmark = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)

TINY = dict(model="fc", depth=2, width=32, train_subset=1024, val_size=512, batch_size=64)


def _spec(**changes) -> TrainSpec:
    return TrainSpec(**{**TINY, **changes})


def test_same_spec_and_seed_reproduce_bitwise():
    a = train(_spec(epochs=2, relu_prime_zero=1.0))
    b = train(_spec(epochs=2, relu_prime_zero=1.0))
    assert a.params_sha256 == b.params_sha256
    assert a.val_accuracy == b.val_accuracy and a.train_loss == b.train_loss
    assert a.test_accuracy == b.test_accuracy and a.kink_hits == b.kink_hits
    assert len(a.val_accuracy) == 2 and a.epochs_completed == 2
    assert 0.5 < a.val_accuracy[-1] <= 1.0
    c = train(_spec(epochs=2, relu_prime_zero=1.0, seed=1))
    assert c.params_sha256 != a.params_sha256


def test_reproduces_in_another_process():
    spec = _spec(relu_prime_zero=0.5)
    here = train(spec)
    # Same thread count: some CPU kernels split their reductions by thread (see README).
    cmd = [sys.executable, "-m", "hpo", "train", "--json", "--relu-prime-zero", "0.5",
           "--threads", str(torch.get_num_threads())]
    for key, value in TINY.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    payload = json.loads(out.stdout)
    assert payload["params_sha256"] == here.params_sha256
    assert payload["val_accuracy"] == here.val_accuracy
    for key in ("test_accuracy", "kink_hits", "configured_activations", "diverged"):
        assert key in payload
    assert payload["configured_activations"] == 2


def test_runs_differing_only_in_relu_prime_zero_share_weights_and_batches():
    # float64 never rounds a pre-activation onto 0 here, so ReLU'(0) is never used: if the
    # initial weights or the batch order differed, the fingerprints would differ.
    a = train(_spec(precision="float64", relu_prime_zero=0.0))
    b = train(_spec(precision="float64", relu_prime_zero=1.0))
    assert a.kink_hits == b.kink_hits == 0
    assert a.params_sha256 == b.params_sha256


def test_kinks_hit_make_the_derivative_matter():
    # In bfloat16, batch norm's (x - mean) is often exactly 0 (8-bit significand): the
    # following ReLU then sees exact zeros and its derivative there changes the weights.
    a = train(_spec(precision="bfloat16", batch_norm=True, relu_prime_zero=0.0))
    b = train(_spec(precision="bfloat16", batch_norm=True, relu_prime_zero=1.0))
    assert a.kink_hits > 0 and b.kink_hits > 0
    assert a.params_sha256 != b.params_sha256


def test_epoch_callback_receives_reports_and_may_stop_the_run():
    reports: list[EpochReport] = []
    result = train(_spec(epochs=2), on_epoch_end=reports.append)
    assert [r.epoch for r in reports] == [1, 2]
    assert [r.val_accuracy for r in reports] == result.val_accuracy
    assert sum(r.kink_hits for r in reports) == result.kink_hits

    class Stop(Exception):
        pass

    def stop(report: EpochReport) -> None:
        raise Stop

    with pytest.raises(Stop):
        train(_spec(epochs=3), on_epoch_end=stop)


def test_divergence_ends_the_run_cleanly():
    result = train(_spec(epochs=3, optimizer="sgd", lr=1e6))
    assert result.diverged
    assert "non-finite" in result.divergence_reason
    assert result.test_accuracy is None
    assert result.epochs_completed < 3


def test_float16_adam_uses_a_representable_epsilon():
    spec = _spec(precision="float16", depth=1, width=8, train_subset=128, val_size=128)
    result = train(spec)
    assert result.optimizer_eps == pytest.approx(2**-14)
    assert not result.diverged
    with pytest.raises(ConfigError, match="rounds to 0 in float16"):
        train(spec.replace(adam_eps=1e-8))


def test_autocast_mode_keeps_float32_weights():
    result = train(_spec(precision="amp_bfloat16"))
    assert result.precision == "amp_bfloat16"
    assert not result.diverged and result.val_accuracy


def test_caller_rng_state_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(_spec())
    assert torch.equal(torch.rand(3), expected)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        train(_spec(device="cuda"))


def test_observe_model_sees_initial_and_per_epoch_weights():
    seen: list[tuple[int, torch.Tensor]] = []

    def observe(epoch, model):
        seen.append((epoch, next(model.parameters()).detach().clone()))

    train(_spec(epochs=2), observe_model=observe)
    assert [e for e, _ in seen] == [0, 1, 2]
    assert not torch.equal(seen[0][1], seen[1][1])


def test_batch_norm_recalibration_changes_evaluation_only():
    a = train(_spec(batch_norm=True, epochs=2))
    b = train(_spec(batch_norm=True, epochs=2, bn_recalibration=False))
    assert a.train_loss == b.train_loss and a.kink_hits == b.kink_hits
    assert a.params_sha256 != b.params_sha256  # the running statistics differ


def test_recalibrated_statistics_are_exact_batch_averages():
    from hpo.engine.data.splits import Split as _Split
    from hpo.engine.numerics.precision import resolve_precision
    from hpo.engine.train import _recalibrate_batch_norm

    spec = _spec(batch_size=4)
    bn = torch.nn.BatchNorm1d(784, momentum=0.1)
    model = torch.nn.Sequential(torch.nn.Flatten(), bn, torch.nn.Dropout(0.5))
    x = torch.randn(8, 1, 28, 28)
    state = torch.random.get_rng_state()
    _recalibrate_batch_norm(spec, model, _Split(x, torch.zeros(8)), resolve_precision("float32"))
    assert torch.allclose(bn.running_mean, x.reshape(8, 784).mean(0), atol=1e-6)
    assert bn.momentum == 0.1
    assert torch.equal(torch.random.get_rng_state(), state)  # dropout stayed off


@pytest.mark.parametrize(
    ("precision", "fused"),
    [
        ("float32", True),
        ("float64", True),
        ("amp_bfloat16", True),
        ("bfloat16", False),
        ("float16", False),
        ("amp_float16", False),
    ],
)
def test_adam_is_fused_only_where_it_keeps_the_runs_arithmetic(precision, fused):
    # The fused kernel computes float16/bfloat16 updates in float32: pure low precisions
    # keep the op-by-op update in their own dtype, and GradScaler runs keep the plain path.
    from hpo.engine.numerics.precision import resolve_precision
    from hpo.engine.result import TrainResult
    from hpo.engine.step import make_optimizer

    prec = resolve_precision(precision)
    model = torch.nn.Linear(3, 2).to(prec.param_dtype)
    optimizer = make_optimizer(_spec(precision=precision), model, prec, TrainResult())
    assert optimizer.defaults["fused"] is fused
