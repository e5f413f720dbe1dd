from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo.engine.models.activations import ACTIVATIONS, ReLU, ReLU6, create_activation
from hpo.engine.models.audit import RELU_FAMILY_NODES, AuditReport, audit_model
from hpo.engine.models.routing import FunctionalRouting
from hpo.errors import ModelAuditError

X = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))


class Functional(nn.Module):
    """A configured activation, plus a ReLU-family call it cannot reach."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = ReLU(1.0)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.act(self.fc(x)))


class Outer(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.block = Functional(fn)

    def forward(self, x):
        return self.block(x)


ESCAPES = [
    (lambda x: F.threshold(x, 0.0, 0.0), "threshold "),
    (lambda x: F.prelu(x, torch.tensor([0.25])), "prelu "),
    (lambda x: F.rrelu(x), "rrelu "),
    (lambda x: x.clamp(min=0), "clamp(min=0) "),
    (lambda x: torch.clamp(x, 0, 6), "clamp(min=0) "),
    (lambda x: x.clamp_min(0), "clamp_min(min=0) "),
    (lambda x: F.hardtanh(x), "hardtanh "),
    (torch.ops.aten.relu, "relu "),
    (lambda x: torch.ops.aten.leaky_relu(x, 0.01), "leaky_relu "),
]
ROUTED = [
    (F.relu, "relu "),
    (lambda x: F.relu(x, inplace=True), "relu "),
    (torch.relu, "relu "),
    (lambda x: x.relu(), "relu "),
    (lambda x: x.relu_(), "relu "),
    (F.relu_, "relu "),
    (F.relu6, "hardtanh "),
    (lambda x: F.relu6(x, inplace=True), "hardtanh "),
    (F.leaky_relu, "leaky_relu "),
    (lambda x: F.leaky_relu(x, 0.2, True), "leaky_relu_ "),
    (F.leaky_relu_, "leaky_relu_ "),
    (lambda x: F.hardtanh(x, 0.0, 6.0), "hardtanh "),
    (lambda x: F.hardtanh_(x, min_val=0.0, max_val=6.0), "hardtanh "),
]


@pytest.mark.parametrize(("fn", "op"), ESCAPES + ROUTED)
def test_functional_relu_family_call_is_rejected(fn, op):
    with pytest.raises(ModelAuditError) as info:
        audit_model(Outer(fn), X, name="toy")
    message = str(info.value)
    assert "model 'toy' makes 1 ReLU-family op call(s)" in message
    assert op + "x1 in 'block' (Functional)" in message
    assert "\n" not in message


@pytest.mark.parametrize(("fn", "op"), ESCAPES)
def test_what_routing_does_not_cover_still_escapes(fn, op):
    model = FunctionalRouting(Outer(fn), create_activation("relu", relu_prime_zero=1.0))
    with pytest.raises(ModelAuditError) as info:
        audit_model(model, X, name="toy")
    assert op + "x1 in 'model.block' (Functional)" in str(info.value)


@pytest.mark.parametrize(("fn", "_op"), ROUTED)
def test_routed_functional_calls_pass_and_are_counted(fn, _op):
    model = FunctionalRouting(Outer(fn), create_activation("relu", relu_prime_zero=1.0))
    report = audit_model(model, X)
    assert (report.configured_modules, report.configured_calls_per_forward) == (1, 1)
    assert (report.functional_sites, report.functional_calls_per_forward) == (1, 1)
    assert report.configured_sites == 2
    assert "1 routed functional site(s)" in report.summary()


def test_escape_on_the_raw_input_is_seen():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4))
    model.forward = lambda x: nn.Sequential.forward(model, x.clamp(min=0))
    with pytest.raises(ModelAuditError, match=r"clamp\(min=0\) x1 in '<root>'"):
        audit_model(model, X)


def test_an_escape_between_modules_is_blamed_on_the_parent():
    class Parent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(torch.ops.aten.relu(self.a(x)))

    with pytest.raises(ModelAuditError, match=r"relu x1 in '<root>' \(Parent\)"):
        audit_model(Parent(), X)


def test_relu_under_no_grad_cannot_change_a_gradient_and_passes():
    def fn(x):
        with torch.no_grad():
            mask = F.relu(x) > 0
        return x * mask

    assert audit_model(Outer(fn), X).configured_modules == 1


def test_functional_calls_are_counted_per_call():
    model = Outer(lambda x: F.relu(F.relu(x)))
    with pytest.raises(ModelAuditError, match=r"makes 2 .* relu x2"):
        audit_model(model, X)


@pytest.mark.parametrize(
    "fn", [torch.sigmoid, F.hardswish, F.gelu, lambda x: x.clamp(min=-1.0), torch.abs]
)
def test_non_relu_family_functional_calls_pass(fn):
    report = audit_model(Outer(fn), X)
    assert (report.configured_modules, report.configured_calls_per_forward) == (1, 1)


class ReLUSubclass(nn.ReLU):
    pass


@pytest.mark.parametrize(
    "module",
    [
        nn.ReLU(),
        nn.ReLU6(),
        nn.LeakyReLU(),
        nn.Hardtanh(),
        nn.PReLU(),
        nn.RReLU(),
        nn.Threshold(0.0, 0.0),
        ReLUSubclass(),
    ],
)
def test_stock_relu_family_module_is_rejected(module):
    model = nn.Sequential(nn.Linear(4, 4), ReLU(), nn.Sequential(nn.Linear(4, 4), module))
    with pytest.raises(ModelAuditError) as info:
        audit_model(model, X, name="toy")
    assert f"'2.1' ({type(module).__name__})" in str(info.value)
    assert "model 'toy' has 1 ReLU-family module(s)" in str(info.value)


def test_activation_with_other_settings_is_rejected():
    expected = create_activation("relu", relu_prime_zero=1.0)()
    model = nn.Sequential(nn.Linear(4, 4), ReLU(1.0), nn.Linear(4, 4), ReLU(0.5))
    with pytest.raises(ModelAuditError, match=r"'3' ReLU\(relu'\(0\)=0.5\)"):
        audit_model(model, X, expected=expected)
    assert audit_model(model[:2], X, expected=expected).configured_modules == 1
    with pytest.raises(ModelAuditError, match="ReLU6"):
        audit_model(nn.Sequential(ReLU6(1.0)), X, expected=expected)


def test_report_counts_modules_calls_and_other_kinked():
    act = ReLU(1.0)
    model = nn.Sequential(
        nn.Linear(4, 4), act, nn.Hardswish(), nn.Linear(4, 4), act, nn.Hardsigmoid(),
        nn.Hardswish(), nn.Sigmoid(),
    )  # fmt: skip
    report = audit_model(model, X)
    assert report == AuditReport(1, 2, {"Hardsigmoid": 1, "Hardswish": 2})
    assert report.summary() == (
        "1 configured activation module(s), 2 call(s) per forward; kept at PyTorch's "
        "derivative (not ReLU-family): Hardsigmoid x1, Hardswish x2"
    )


def test_audit_restores_training_modes_and_consumes_no_rng():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), ReLU(), nn.Dropout(0.5))
    model.train()
    model[3].eval()
    state = torch.random.get_rng_state()
    audit_model(model, X)
    assert [m.training for m in model.modules()] == [True, True, True, True, False]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(model[1].running_mean, torch.zeros(4))  # eval: stats untouched


def test_hooks_are_removed_after_failure():
    model = Outer(F.relu)
    with pytest.raises(ModelAuditError):
        audit_model(model, X)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_family_node_names_are_pytorchs():
    # The graph scan recognises ops by autograd node name: pin every name it relies on.
    x = torch.randn(4, requires_grad=True) * 1.0
    made = {
        torch.relu(x).grad_fn.name(), F.hardtanh(x, 0.0, 6.0).grad_fn.name(),
        F.leaky_relu(x).grad_fn.name(), F.leaky_relu_(x.clone()).grad_fn.name(),
        F.threshold(x, 0.0, 0.0).grad_fn.name(), F.threshold_(x.clone(), 0.0, 0.0).grad_fn.name(),
        F.prelu(x, torch.tensor([0.25])).grad_fn.name(), F.rrelu(x).grad_fn.name(),
        F.rrelu_(x.clone()).grad_fn.name(),
    }  # fmt: skip
    assert made == set(RELU_FAMILY_NODES)
    assert x.clamp(min=0).grad_fn.name() == "ClampBackward1"
    assert x.clamp_min(0).grad_fn.name() == "ClampMinBackward0"


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("inplace", [False, True])
def test_each_configured_activation_makes_exactly_one_graph_node(name, inplace):
    # The audit's bookkeeping (a configured activation's output node is its own) relies
    # on this, with or without a kink in the input.
    act = create_activation(name, relu_prime_zero=1.0)(inplace=inplace)
    for values in ([-1.0, 0.0, 2.0, 6.0, 7.0], [-1.0, 0.5, 2.0, 7.0]):
        x = torch.tensor(values, requires_grad=True) * 1.0
        before = x.grad_fn
        out = act(x)
        assert [n for n, _ in out.grad_fn.next_functions] == [before]
