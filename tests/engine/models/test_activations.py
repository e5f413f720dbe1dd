from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo.engine.models.activations import (
    ACTIVATIONS,
    LeakyReLU,
    ReLU,
    ReLU6,
    create_activation,
    kinked_modules,
)
from hpo.engine.spec import ACTIVATION_NAMES
from hpo.errors import ConfigError

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SPECIAL = [-7.0, -6.0, -1.0, -0.0, 0.0, 0.0, 1e-3, 1.0, 5.5, 6.0, 6.0, 7.0]


def _inputs(dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    # Random values on a coarse grid so that many land exactly on 0 and 6.
    grid = torch.randint(-16, 16, (4, 64), generator=gen).to(torch.float64) / 2
    special = torch.tensor(SPECIAL, dtype=torch.float64)
    return torch.cat([grid.flatten(), special]).to(dtype)


def _grad_out(n: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    g[:3] = torch.tensor([float("inf"), -2.0, 0.0], dtype=torch.float64)
    return g.to(dtype)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.uint8)


def _fwd_bwd(module: nn.Module, x: torch.Tensor, g: torch.Tensor, inplace_input: bool = False):
    leaf = x.clone().requires_grad_(True)
    inp = leaf * 1 if inplace_input else leaf  # in-place needs a non-leaf input
    out = module(inp)
    out.backward(g)
    return out.detach().clone(), leaf.grad


REFERENCES = [
    (lambda inplace: ReLU(inplace=inplace), lambda inplace: nn.ReLU(inplace=inplace)),
    (lambda inplace: ReLU6(inplace=inplace), lambda inplace: nn.ReLU6(inplace=inplace)),
    (lambda inplace: LeakyReLU(inplace=inplace), lambda inplace: nn.LeakyReLU(inplace=inplace)),
    (
        lambda inplace: LeakyReLU(0.2, inplace=inplace),
        lambda inplace: nn.LeakyReLU(0.2, inplace=inplace),
    ),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("pair", REFERENCES, ids=["relu", "relu6", "leaky", "leaky0.2"])
def test_default_derivatives_are_bitwise_pytorch(pair, inplace, dtype):
    ours, ref = pair
    x = _inputs(dtype)
    g = _grad_out(x.numel(), dtype)
    out_a, grad_a = _fwd_bwd(ours(inplace), x, g, inplace_input=inplace)
    out_b, grad_b = _fwd_bwd(ref(inplace), x, g, inplace_input=inplace)
    assert torch.equal(_bits(out_a), _bits(out_b))
    assert torch.equal(_bits(grad_a), _bits(grad_b))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_relu_derivative_at_zero_is_the_configured_value(dtype):
    x = _inputs(dtype)
    g = _grad_out(x.numel(), dtype)
    _, grad = _fwd_bwd(ReLU(0.5), x, g)
    _, ref = _fwd_bwd(nn.ReLU(), x, g)
    on_kink = x == 0
    assert on_kink.sum() > 10
    assert torch.equal(grad[on_kink], g[on_kink] * 0.5)
    # Everywhere else the gradient is PyTorch's to the bit.
    assert torch.equal(_bits(grad[~on_kink]), _bits(ref[~on_kink]))


def test_relu6_has_two_configurable_kinks():
    x = _inputs(torch.float32)
    g = _grad_out(x.numel(), torch.float32)
    _, grad = _fwd_bwd(ReLU6(prime_zero=1.0, prime_six=0.25), x, g)
    _, ref = _fwd_bwd(nn.ReLU6(), x, g)
    at0, at6 = x == 0, x == 6
    assert at0.any() and at6.any()
    assert torch.equal(grad[at0], g[at0])
    assert torch.equal(grad[at6], g[at6] * 0.25)
    rest = ~(at0 | at6)
    assert torch.equal(_bits(grad[rest]), _bits(ref[rest]))


def test_leaky_relu_default_is_its_slope_and_can_be_changed():
    x = torch.tensor([-1.0, 0.0, 2.0])
    g = torch.tensor([3.0, 3.0, 3.0])
    _, grad = _fwd_bwd(LeakyReLU(0.1), x, g)
    assert grad.tolist() == pytest.approx([0.3, 0.3, 3.0])
    _, grad = _fwd_bwd(LeakyReLU(0.1, prime_zero=1.0), x, g)
    assert grad.tolist() == pytest.approx([0.3, 3.0, 3.0])


def test_set_mode_reproduces_the_papers_code():
    x = torch.tensor([-1.0, 0.0, 0.0, 2.0])
    g = torch.tensor([5.0, 5.0, -2.0, 5.0])
    _, grad = _fwd_bwd(ReLU(0.7, kink_grad="set"), x, g)
    assert grad.tolist() == pytest.approx([0.0, 0.7, 0.7, 5.0])
    _, grad = _fwd_bwd(ReLU(0.7), x, g)
    assert grad.tolist() == pytest.approx([0.0, 3.5, -1.4, 5.0])


def test_inplace_module_modifies_input_and_keeps_configured_gradient():
    leaf = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    inp = leaf * 1
    out = ReLU(1.0, inplace=True)(inp)
    assert out.data_ptr() == inp.data_ptr()
    out.backward(torch.ones(3))
    assert leaf.grad.tolist() == [0.0, 1.0, 1.0]


def test_dense_fallback_when_most_inputs_are_on_the_kink():
    # More kinks than a sparse index can hold cheaply: the module keeps a boolean mask.
    x = torch.zeros(4, 8)
    x[0, 0] = 1.0
    g = torch.full((4, 8), 2.0)
    module = ReLU(0.25)
    _, grad = _fwd_bwd(module, x, g)
    expected = torch.full((4, 8), 0.5)
    expected[0, 0] = 2.0
    assert torch.equal(grad, expected)
    assert module.kink_hits() == (31,)


CONFIGURED = [
    (lambda inplace: ReLU(0.5, inplace=inplace), lambda inplace: nn.ReLU(inplace=inplace)),
    (lambda inplace: ReLU6(0.5, 0.5, inplace=inplace), lambda inplace: nn.ReLU6(inplace=inplace)),
    (
        lambda inplace: LeakyReLU(0.2, prime_zero=0.5, inplace=inplace),
        lambda inplace: nn.LeakyReLU(0.2, inplace=inplace),
    ),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("pair", CONFIGURED, ids=["relu", "relu6", "leaky0.2"])
def test_input_off_the_kinks_uses_pytorchs_own_op(pair, inplace, dtype):
    # No input on a kink: the configured derivative cannot matter, so the module returns
    # PyTorch's own op (its own backward node), bitwise the reference.
    ours, ref = pair
    x = _inputs(dtype)
    x = x[(x != 0) & (x != 6)]
    g = _grad_out(x.numel(), dtype)
    module = ours(inplace)
    assert not module.is_pytorch_default
    leaf = x.clone().requires_grad_(True)
    out = module(leaf * 1 if inplace else leaf)
    assert "KinkFunction" not in type(out.grad_fn).__name__
    out.backward(g)
    out_b, grad_b = _fwd_bwd(ref(inplace), x, g, inplace_input=inplace)
    assert torch.equal(_bits(out), _bits(out_b))
    assert torch.equal(_bits(leaf.grad), _bits(grad_b))
    assert module.kink_hits() == (0,) * len(module.kinks)


@pytest.mark.parametrize("value", [0.0, -0.0])
def test_each_kink_alone_is_found(value):
    # A single input on one kink (either zero, or 6 alone) must reach the configured value.
    x = torch.tensor([-1.0, value, 2.0, 7.0])
    _, grad = _fwd_bwd(ReLU(0.5), x, torch.ones(4))
    assert grad.tolist() == [0.0, 0.5, 1.0, 1.0]
    x6 = torch.tensor([-1.0, 6.0, 2.0, 7.0])
    module = ReLU6(prime_zero=0.5, prime_six=0.25)
    _, grad = _fwd_bwd(module, x6, torch.ones(4))
    assert grad.tolist() == [0.0, 0.25, 1.0, 0.0]
    assert module.kink_hits() == (0, 1)


def test_empty_input():
    leaf = torch.zeros(0, 3, requires_grad=True)
    ReLU(1.0)(leaf).sum().backward()
    assert leaf.grad.shape == (0, 3)


@pytest.mark.parametrize(
    "module", [ReLU(0.3), ReLU6(0.3, 0.9), LeakyReLU(0.05, prime_zero=0.7)], ids=repr
)
def test_gradcheck_away_from_kinks(module):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, generator=gen, dtype=torch.float64) * 16 - 8
    x = x[((x.abs() > 1e-3) & ((x - 6).abs() > 1e-3))].requires_grad_(True)
    assert torch.autograd.gradcheck(module, (x,))


def test_kink_hits_count_backward_passes_only():
    module = ReLU6(prime_zero=1.0)
    x = torch.tensor([0.0, 0.0, 6.0, 1.0, -1.0])
    with torch.no_grad():
        module(x)
    module(x.clone())  # no grad required: not a backward pass
    assert module.kink_hits() == (0, 0)
    for _ in range(3):
        _fwd_bwd(module, x, torch.ones(5))
    assert module.kink_hits() == (6, 3)
    module.reset_kink_hits()
    assert module.kink_hits() == (0, 0)


def test_kink_hits_are_counted_at_pytorch_default_too():
    module = ReLU()
    _fwd_bwd(module, torch.tensor([0.0, 1.0, 0.0]), torch.ones(3))
    assert module.kink_hits() == (2,)
    assert module.is_pytorch_default


def test_counters_are_not_part_of_the_state_dict():
    model = nn.Sequential(nn.Linear(3, 3), ReLU(1.0))
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    assert [name for name, _ in kinked_modules(model)] == ["1"]


def test_repr_shows_configured_derivatives():
    assert "relu'(0)=0.5" in repr(ReLU(0.5))
    text = repr(ReLU6(1, 0.25, inplace=True))
    assert "relu6'(0)=1" in text and "relu6'(6)=0.25" in text and "inplace=True" in text
    assert "negative_slope=0.1" in repr(LeakyReLU(0.1))
    assert "kink_grad=set" in repr(ReLU(1, kink_grad="set"))


def test_factory_builds_configured_modules():
    factory = create_activation("relu6", relu_prime_zero=0.5, relu6_prime_six=1.0)
    module = factory(inplace=True)
    assert isinstance(module, ReLU6)
    assert module.derivatives == (0.5, 1.0) and module.inplace
    assert create_activation("leaky_relu", negative_slope=0.2)().derivatives == (0.2,)
    assert create_activation("relu")().is_pytorch_default


def test_the_activation_table_has_exactly_trainspecs_activations():
    """TrainSpec's names (torch-free) and the classes here are the same set, each class
    under its own ``name``."""
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    for name, cls in ACTIVATIONS.items():
        assert cls.name == name


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        create_activation("gelu")
    for name in ACTIVATIONS:
        assert name in str(err.value)
    assert "'gelu'" in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "one", None])
def test_non_finite_derivative_is_rejected(bad):
    with pytest.raises(ConfigError, match="finite"):
        ReLU(bad)


def test_settings_that_do_not_apply_are_rejected():
    with pytest.raises(ConfigError, match="relu6_prime_six"):
        create_activation("relu", relu6_prime_six=1.0)
    with pytest.raises(ConfigError, match="negative_slope"):
        create_activation("relu", negative_slope=0.2)
    with pytest.raises(ConfigError, match="kink_grad"):
        ReLU(1.0, kink_grad="add")


def test_functional_reference_values():
    # Sanity of the references themselves: PyTorch's choices at the kinks.
    x = torch.tensor([0.0, 6.0], requires_grad=True)
    F.relu6(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]
