from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from hpo.engine.activations import ACTIVATIONS, ReLU, ReLU6, create_activation
from hpo.engine.audit import RELU_FAMILY_OPS, AuditReport, audit_model
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


@pytest.mark.parametrize(
    ("fn", "op"),
    [
        (F.relu, "aten.relu "),
        (lambda x: F.relu(x, inplace=True), "aten.relu_ "),
        (torch.relu, "aten.relu "),
        (F.relu6, "aten.hardtanh "),
        (F.leaky_relu, "aten.leaky_relu "),
        (lambda x: F.hardtanh(x, 0.0, 6.0), "aten.hardtanh "),
        (lambda x: F.threshold(x, 0.0, 0.0), "aten.threshold "),
        (lambda x: F.prelu(x, torch.tensor([0.25])), "aten._prelu_kernel "),
        (lambda x: F.rrelu(x), "aten.rrelu_with_noise "),
        (lambda x: x.clamp(min=0), "aten.clamp(min=0) "),
        (lambda x: torch.clamp(x, 0, 6), "aten.clamp(min=0) "),
        (lambda x: x.clamp_min(0), "aten.clamp_min(min=0) "),
    ],
)
def test_functional_relu_family_call_is_rejected(fn, op):
    with pytest.raises(ModelAuditError) as info:
        audit_model(Outer(fn), X, name="toy")
    message = str(info.value)
    assert "model 'toy' makes 1 ReLU-family op call(s)" in message
    assert op + "x1 in 'block' (Functional)" in message
    assert "\n" not in message


def test_functional_calls_are_counted_per_call():
    model = Outer(lambda x: F.relu(F.relu(x)))
    with pytest.raises(ModelAuditError, match=r"makes 2 .* aten\.relu x2"):
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


class _FamilyOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in RELU_FAMILY_OPS:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_each_configured_activation_forward_issues_exactly_one_family_op(name, inplace, grad):
    # The audit's bookkeeping (ops inside a configured module are its own) relies on this.
    act = create_activation(name, relu_prime_zero=1.0)(inplace=inplace)
    x = torch.tensor([-1.0, 0.0, 2.0, 6.0, 7.0], requires_grad=grad) * 1.0
    with torch.set_grad_enabled(grad), _FamilyOps() as mode:
        act(x)
    assert len(mode.ops) == 1, mode.ops
