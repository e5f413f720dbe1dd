"""The probe's protocol options (the EPFL volume notebook): ``accumulate`` (no zero_grad,
summed gradients compared by value), ``sample_size`` (drawn with replacement), ``shuffle``
and ``loss_dtype``; the defaults keep what the probe computed before."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo.engine.numerics.precision import resolve_precision
from hpo.engine.probe import batched as probe_batched
from hpo.engine.probe import bifurcation as probe
from hpo.engine.probe.bifurcation import run_probe
from hpo.engine.probe.reference import init_models
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

needs_data = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)

# bfloat16 puts activation inputs exactly on 0 now and then: in this order, with seeds 0..15,
# init 6 bifurcates (batch 50 of 64).
NATURAL = dict(model="fc", depth=3, width=32, precision="bfloat16", batch_size=64,
               train_subset=4096, normalize=False, kink_grad="set")
THEIRS = dict(compare="first_weight", train_set="all", accumulate=True, shuffle=False,
              loss_dtype="param")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _notebook(spec: TrainSpec, inits: int) -> list[int | None]:
    """The EPFL notebook's loop on the engine's models: two nets, no zero_grad, the first
    Linear's accumulated ``.grad`` compared with ``(g1 - g2).abs().sum() != 0``."""
    precision = resolve_precision(spec.precision)
    x, y = probe._training_data(spec, precision, torch.device("cpu"), None, "all")
    out: list[int | None] = []
    for k in range(inits):
        nets = [m.to(precision.param_dtype) for m in init_models(spec, k, (0.0, 1.0))]
        firsts = [next(m for m in n.modules() if isinstance(m, nn.Linear)) for n in nets]
        found = None
        for b, s in enumerate(range(0, len(y), spec.batch_size)):
            xb, yb = x[s : s + spec.batch_size], y[s : s + spec.batch_size]
            for net in nets:
                F.cross_entropy(net(xb), yb).backward()
            if (firsts[0].weight.grad - firsts[1].weight.grad).abs().sum() != 0:
                found = b + 1
                break
        out.append(found)
    return out


@needs_data
def test_accumulate_is_the_notebooks_loop(one_thread):
    spec = TrainSpec(**NATURAL)
    r = run_probe(spec, inits=16, **THEIRS)
    assert r.accumulate and not r.shuffle and r.loss_dtype == "param"
    assert r.batches_to_bifurcation == _notebook(spec, 16)
    assert r.bifurcated >= 1  # the setting does exercise the kinked path


@needs_data
def test_replaying_only_kinked_inits_loses_no_bifurcation(monkeypatch, one_thread):
    spec = TrainSpec(**NATURAL)
    skipping = run_probe(spec, inits=8, **THEIRS)
    monkeypatch.setattr(
        probe_batched, "_kink_hits",
        lambda layers, xb, act: torch.ones(len(layers[0][0]), dtype=torch.bool),
    )
    forced = run_probe(spec, inits=8, **THEIRS)
    assert forced.kinked_batches == forced.batches_examined  # every batch replayed
    assert forced.batches_to_bifurcation == skipping.batches_to_bifurcation
    assert skipping.bifurcated >= 1 and skipping.kinked_batches < skipping.batches_examined


@needs_data
def test_summed_gradients_differ_no_sooner_than_one_batchs_gradients(one_thread):
    spec = TrainSpec(**NATURAL)
    summed = run_probe(spec, inits=8, **THEIRS)
    single = run_probe(spec, inits=8, **{**THEIRS, "accumulate": False})
    assert summed.batches_examined >= single.batches_examined
    assert single.bifurcated >= 1
    for s, one in zip(summed.batches_to_bifurcation, single.batches_to_bifurcation):
        assert s is None or (one is not None and s >= one)


def test_order_draws_with_replacement_once_for_every_init():
    spec = TrainSpec(model="fc", seed=3)
    drawn = probe._order(spec, 100, 150, shuffle=False)
    assert len(drawn) == 150 and int(drawn.min()) >= 0 and int(drawn.max()) < 100
    assert len(set(drawn.tolist())) < 100  # with replacement: repeats, some never drawn
    assert torch.equal(drawn, probe._order(spec.replace(seed=4), 100, 150, shuffle=False))
    assert not torch.equal(drawn, probe._order(spec.replace(split_seed=1), 100, 150, False))
    assert torch.equal(probe._order(spec, 10, None, shuffle=False), torch.arange(10))
    default = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(probe._order(spec, 10, None, shuffle=True), default)


@needs_data
def test_sample_size_sets_the_pass_length():
    spec = TrainSpec(model="fc", depth=1, width=8, batch_size=64, precision="float64")
    r = run_probe(spec, inits=2, sample_size=200, shuffle=False, train_set="all")
    assert r.train_samples == 200 and r.batches_per_epoch == 4 and r.sample_size == 200
    assert r.batches_examined == 2 * 4 and r.bifurcated == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(sample_size=0), "sample_size"),
    (dict(loss_dtype="half"), "loss_dtype"),
    (dict(accumulate=True, method="reference"), "accumulate needs method 'batched'"),
])
def test_bad_protocol_options_are_one_line_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        run_probe(TrainSpec(model="fc"), inits=1, **kwargs)
