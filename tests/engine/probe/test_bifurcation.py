from __future__ import annotations

import argparse
import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo.cli import probe_cmd
from hpo.engine.models.build import build_model
from hpo.engine.numerics.precision import resolve_precision
from hpo.engine.probe import batched as probe_batched
from hpo.engine.probe import bifurcation as probe
from hpo.engine.probe import reference as probe_reference
from hpo.engine.probe.bifurcation import ProbeProgress, run_probe
from hpo.engine.probe.reference import bitwise_equal, init_models
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

needs_data = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)

TINY = dict(model="fc", depth=2, width=32, train_subset=512, batch_size=64)
# A setting where float rounding alone puts an activation input exactly on 0 now and then:
# with seeds 0..15, one init bifurcates (batch 26 of 32).
NATURAL = dict(model="fc", depth=3, width=64, precision="bfloat16", batch_size=128,
               train_subset=4096, normalize=False)


def _spec(**changes) -> TrainSpec:
    return TrainSpec(**{**TINY, **changes})


@pytest.fixture
def one_thread():
    # F.linear can change bits with the thread count for some shapes; one thread makes the
    # engine's models and the batched kernels comparable bit for bit.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def dead_unit(monkeypatch):
    """Make unit 3 of hidden layer ``layer`` (0-based) of every built model dead: its weights
    and bias are 0, so its input is exactly 0 for every sample, in every mini-batch."""

    def install(layer: int) -> None:
        def build(spec):
            built = build_model(spec)
            linear = [m for m in built.model.modules() if isinstance(m, nn.Linear)][layer]
            with torch.no_grad():
                linear.weight[3] = 0
                linear.bias[3] = 0
            return built

        monkeypatch.setattr(probe_reference, "build_model", build)

    return install


@needs_data
def test_float64_without_structural_zeros_never_bifurcates():
    r = run_probe(_spec(precision="float64"), inits=4, compare="all")
    assert r.method == "batched" and r.batches_per_epoch == 8
    assert r.bifurcated == 0 and r.kinked_batches == 0
    assert r.batches_examined == 4 * 8  # every init went through the whole epoch
    assert r.bifurcated_fraction == 0.0 and r.hazard_per_batch == 0.0
    assert r.median_samples_to_bifurcation is None
    assert r.samples_to_bifurcation == [None] * 4
    assert r.forward_flops > 0 and r.backward_flops == 0


@needs_data
@pytest.mark.parametrize("method", ["batched", "reference"])
@pytest.mark.parametrize("compare", ["first", "first_weight"])
def test_a_kink_hit_in_every_batch_bifurcates_every_init_at_once(dead_unit, method, compare):
    dead_unit(0)
    r = run_probe(_spec(), inits=3, alphas=(0.0, 1.0), compare=compare, method=method)
    assert r.bifurcated == 3 and r.bifurcated_fraction == 1.0
    assert r.batches_to_bifurcation == [1, 1, 1]
    assert r.samples_to_bifurcation == [64, 64, 64]
    assert r.median_samples_to_bifurcation == 64.0
    assert r.batches_examined == 3 and r.hazard_per_batch == 1.0
    # the same kinks with the same derivative never differ
    same = run_probe(_spec(), inits=3, alphas=(1.0, 1.0), method=method)
    assert same.bifurcated == 0 and same.kinked_batches == 3 * 8


@needs_data
@pytest.mark.parametrize("method", ["batched", "reference"])
def test_compare_all_sees_differences_that_do_not_reach_the_first_layer(dead_unit, method):
    # A dead unit in the second hidden layer: alpha changes its incoming gradient, which
    # reaches the second layer's weights but is multiplied by its zero weights on the way
    # down, so the first layer's gradients are bitwise unchanged.
    dead_unit(1)
    first = run_probe(_spec(), inits=2, compare="first", method=method)
    every = run_probe(_spec(), inits=2, compare="all", method=method)
    assert first.bifurcated == 0 and first.kinked_batches == 2 * 8
    assert every.bifurcated == 2 and every.batches_to_bifurcation == [1, 1]


@needs_data
def test_natural_bifurcations_batched_equals_engine_models(one_thread):
    spec = TrainSpec(**NATURAL)
    fast = run_probe(spec, inits=16, method="batched", compare="first")
    slow = run_probe(spec, inits=16, method="reference", compare="first")
    assert fast.bifurcated >= 1  # the setting is meant to exercise a real bifurcation
    assert fast.batches_to_bifurcation == slow.batches_to_bifurcation
    assert fast.kinked_batches == slow.kinked_batches
    assert fast.batches_examined == slow.batches_examined
    every = run_probe(spec, inits=16, compare="all")
    for f, a in zip(fast.batches_to_bifurcation, every.batches_to_bifurcation):
        assert f is None or (a is not None and a <= f)


class _AlwaysKinked:
    def reset_kink_hits(self) -> None:
        pass

    def kink_hits(self) -> tuple[int]:
        return (1,)


@needs_data
@pytest.mark.parametrize("method", ["batched", "reference"])
def test_skipping_batches_without_a_kink_hit_loses_no_bifurcation(
    monkeypatch, one_thread, method
):
    # The probe computes both backward passes only after a kink hit. Force them on every
    # mini-batch: the bifurcations found must be exactly the same.
    spec = TrainSpec(**NATURAL)
    skipping = run_probe(spec, inits=6, method=method)  # init 5 bifurcates
    if method == "batched":
        monkeypatch.setattr(
            probe_batched, "_kink_hits",
            lambda layers, xb, act: torch.ones(len(layers[0][0]), dtype=torch.bool),
        )
    else:
        real = probe_reference.kinked_modules
        monkeypatch.setattr(
            probe_reference, "kinked_modules", lambda m: [*real(m), ("always", _AlwaysKinked())]
        )
    forced = run_probe(spec, inits=6, method=method)
    assert forced.kinked_batches == forced.batches_examined  # really computed everywhere
    assert forced.batches_to_bifurcation == skipping.batches_to_bifurcation
    assert skipping.bifurcated >= 1 and skipping.kinked_batches < skipping.batches_examined


@needs_data
def test_same_seed_same_result_and_other_seed_other_inits():
    spec = TrainSpec(**NATURAL)
    a, b = (run_probe(spec, inits=16).to_dict() for _ in range(2))
    for d in (a, b):
        d.pop("wall_time_s"), d.pop("init_time_s")
    assert a == b and a["bifurcated"] >= 1
    c = run_probe(spec.replace(seed=100), inits=2)
    assert c.init_seeds == [100, 101]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_batched_gradients_are_the_engine_models_gradients(one_thread, precision):
    # The batched GEMMs are the engine model's GEMMs up to the BLAS's choice of kernel: on
    # some CPUs MKL's batched and plain products round differently, so values are compared
    # to float tolerance. What the probe decides must not depend on that: per init, the
    # gradients with ReLU'(0) = 0 and = 1 differ (bitwise) in the batched path exactly
    # when they differ in the engine model.
    spec = _spec(depth=2, width=16, precision=precision)
    dtype = resolve_precision(precision).param_dtype
    layers = probe_batched._stack(
        spec, [0, 1], resolve_precision(precision), torch.device("cpu"), init_models,
        (0.0,),
    )
    layers[0][0][1, 5] = 0  # a dead unit in init 1 so that the derivative at 0 is used
    layers[0][1][1, 5] = 0
    gen = torch.Generator().manual_seed(0)
    xb = torch.randn(48, 784, generator=gen).to(dtype)
    yb = torch.randint(0, 10, (48,), generator=gen)
    tol = {"float32": 1e-5, "bfloat16": 2e-2}[precision]
    batched_by_alpha, engine_by_alpha = {}, {}
    for alpha in (0.0, 1.0):
        batched = probe_batched._grads(
            layers, torch.tensor([0, 1]), xb, yb, probe_batched._activation(spec, alpha), 3
        )
        batched_by_alpha[alpha] = batched
        for k in (0, 1):
            (model,) = init_models(spec, k, (alpha,))
            model = model.to(dtype)
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for lin, (w, c) in zip(linears, layers):
                    lin.weight.copy_(w[k])
                    lin.bias.copy_(c[k])
            params = [p for lin in linears for p in (lin.weight, lin.bias)]
            loss = F.cross_entropy(model(xb.view(48, 1, 28, 28)).float(), yb)
            grads = torch.autograd.grad(loss, params)
            engine_by_alpha[(alpha, k)] = grads
            for g, mine in zip(grads, batched):
                assert torch.allclose(g.float(), mine[k].float(), rtol=tol, atol=tol * 1e-2)
    for k in (0, 1):
        engine_differs = not all(
            bitwise_equal(a, b)
            for a, b in zip(engine_by_alpha[(0.0, k)], engine_by_alpha[(1.0, k)])
        )
        batched_differs = not all(
            bitwise_equal(a[k], b[k])
            for a, b in zip(batched_by_alpha[0.0], batched_by_alpha[1.0])
        )
        assert batched_differs == engine_differs == (k == 1), k


def test_init_k_has_the_weights_of_train_seed_plus_k():
    spec = _spec(seed=7)
    (model,) = init_models(spec, 2, (0.0,))
    torch.manual_seed(9)  # what train() does for --seed 9
    expected = build_model(spec.replace(seed=9)).model
    for p, q in zip(model.parameters(), expected.parameters()):
        assert torch.equal(p, q)
    layers = probe_batched._stack(
        spec, [0, 2], resolve_precision("float32"), torch.device("cpu"), init_models,
        (0.0,),
    )
    assert torch.equal(layers[0][0][1], expected[1].weight)


def test_bitwise_equal_tells_signed_zeros_apart():
    assert not bitwise_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert bitwise_equal(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    assert bitwise_equal(None, None) and not bitwise_equal(None, torch.zeros(1))


@needs_data
def test_identical_alphas_never_bifurcate_on_a_cnn_with_dropout(one_thread):
    # MobileNetV3 has dropout: both networks must draw the same masks, or gradients differ.
    spec = TrainSpec(model="mobilenet_v3_small", precision="bfloat16", batch_size=4,
                     train_subset=8)
    r = run_probe(spec, inits=1, alphas=(1.0, 1.0), compare="all")
    assert r.method == "reference" and r.kinked_batches >= 1 and r.bifurcated == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(inits=0), "inits"),
        (dict(inits=1, alphas=(0.0, float("nan"))), "alphas"),
        (dict(inits=1, alphas=(0.0,)), "alphas"),
        (dict(inits=1, compare="last"), "compare"),
        (dict(inits=1, method="fast"), "method"),
        (dict(inits=1, train_set="val"), "train_set"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        run_probe(_spec(), **kwargs)


def test_first_weight_compares_the_first_layers_weight_alone():
    model = build_model(_spec()).model
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert probe_reference.compared_params(model, "first_weight") == [first.weight]
    assert probe_reference.compared_params(model, "first") == [first.weight, first.bias]


@needs_data
def test_train_set_all_probes_every_training_image_unnormalised():
    """Section 3's protocol: all 60,000 MNIST training images, not the training split."""
    spec = TrainSpec(model="fc", depth=1, width=4, dataset="mnist", precision="float32",
                     batch_size=4096, normalize=False)
    whole = run_probe(spec, inits=1, train_set="all")
    assert (whole.train_samples, whole.batches_per_epoch, whole.train_set) == (60000, 15, "all")
    assert run_probe(spec, inits=1).train_samples == 60000 - spec.val_size  # the split
    first = run_probe(spec.replace(train_subset=5000), inits=1, train_set="all")
    assert first.train_samples == 5000
    x, _ = probe._training_data(spec, resolve_precision("float32"), torch.device("cpu"), None,
                                "all")
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # ToTensor's [0, 1]


def test_settings_the_probe_cannot_honour_are_config_errors():
    with pytest.raises(ConfigError, match="relu_prime_zero"):
        run_probe(_spec(relu_prime_zero=0.5), inits=1)
    with pytest.raises(ConfigError, match="batched"):
        run_probe(_spec(batch_norm=True), inits=1, method="batched")


@needs_data
def test_progress_is_reported_and_may_stop_the_probe():
    seen: list[ProbeProgress] = []

    class Stop(Exception):
        pass

    def progress(p: ProbeProgress) -> None:
        seen.append(p)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        run_probe(_spec(), inits=2, progress=progress)
    assert [p.batches_examined for p in seen] == [2, 4, 6]
    assert seen[0].batches_total == 2 * 8


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hpo")
    probe_cmd.Probe().register(parser.add_subparsers(), "probe")
    return parser.parse_args(["probe", *argv])


@needs_data
def test_cli_json(capsys):
    args = _parse(["--depth", "2", "--width", "32", "--train-subset", "512", "--batch-size",
                   "64", "--inits", "3", "--alphas", "0", "0.5", "--compare", "all",
                   "--seed", "4", "--json"])
    assert args.handler(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("inits", "bifurcated_fraction", "hazard_per_batch",
                "median_samples_to_bifurcation", "batches_examined", "samples_to_bifurcation",
                "wall_time_s", "spec", "alphas", "compare", "method"):
        assert key in out
    assert out["inits"] == 3 and out["alphas"] == [0.0, 0.5] and out["compare"] == "all"
    assert out["spec"]["width"] == 32 and out["spec"]["seed"] == 4
    assert out["init_seeds"] == [4, 5, 6] and len(out["samples_to_bifurcation"]) == 3
    assert out["batches_examined"] == 3 * 8 and out["median_samples_to_bifurcation"] is None


@needs_data
def test_cli_summary_and_errors(capsys):
    args = _parse(["--depth", "1", "--width", "8", "--train-subset", "128", "--inits", "2"])
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "bifurcated within one epoch: 0/2" in text and "hazard per mini-batch" in text
    with pytest.raises(ConfigError, match="inits"):
        args = _parse(["--inits", "0"])
        args.handler(args)
