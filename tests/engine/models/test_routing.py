from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo.engine.models.activations import KinkedActivation, ReLU, create_activation, kinked_modules
from hpo.engine.models.audit import audit_model
from hpo.engine.models.routing import FunctionalRouting


class Net(nn.Module):
    """A stock network whose nonlinearities are functional calls of one kind, each spelt
    differently on its own line."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        x, y = self.fc1(x), None
        if self.kind == "relu":
            x = F.relu(x)
            y = torch.relu(self.fc2(x))
            y = self.fc2(y).relu()
            y = F.relu(y * 2, inplace=True)
        elif self.kind == "relu6":
            x = F.relu6(x)
            y = F.relu6(self.fc2(x), inplace=True)
            y = F.hardtanh(self.fc2(y), 0.0, 6.0)
            y = F.hardtanh_(y * 2, 0.0, 6.0)
        else:
            x = F.leaky_relu(x)
            y = F.leaky_relu(self.fc2(x), 0.01, True)
            y = F.leaky_relu_(self.fc2(y))
            y = F.leaky_relu(y * 2)
        return self.fc3(y)


def _run(model, x):
    out = model(x)
    out.square().sum().backward()
    return out.detach(), {n.removeprefix("model."): p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind", ["relu", "relu6", "leaky_relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_routed_model_is_bitwise_pytorch_at_pytorchs_derivatives(kind, dtype):
    torch.manual_seed(0)
    stock = Net(kind).to(dtype)
    routed = FunctionalRouting(copy.deepcopy(stock), create_activation(kind))
    # Exact zeros (the stock ReLUs' kinks) and values past 6 among the inputs.
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1), dtype=dtype) * 4
    x[::3, 0] = 0
    with torch.no_grad():
        stock.fc1.bias[:4] = 0
        routed.model.fc1.bias[:4] = 0
        stock.fc1.weight[:4, 1:] = 0
        routed.model.fc1.weight[:4, 1:] = 0  # -> exact zeros before the first activation
    out, grads = _run(stock, x)
    r_out, r_grads = _run(routed, x)
    assert torch.equal(out, r_out)
    assert grads.keys() == r_grads.keys()
    for name, g in grads.items():
        assert torch.equal(g, r_grads[name]), name
    assert len(routed.sites) == 4
    assert sum(sum(m.kink_hits()) for m in routed.sites.values()) > 0


def test_routed_relu_uses_the_configured_derivative_at_zero():
    class Fn(nn.Module):
        def forward(self, x):
            return F.relu(x)

    model = FunctionalRouting(Fn(), create_activation("relu", relu_prime_zero=1.0))
    x = torch.tensor([-1.0, 0.0, 0.0, 2.0], requires_grad=True)
    model(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0]
    (site,) = model.sites.values()
    assert site.kink_hits() == (2,)
    x.grad = None
    F.relu(x).sum().backward()  # outside the wrapper: PyTorch's own derivative
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_the_configured_activation_rules_functional_calls_too():
    class Fn(nn.Module):
        def forward(self, x):
            return F.relu6(x) + F.leaky_relu(x, 0.3)

    model = FunctionalRouting(Fn(), create_activation("relu"))
    x = torch.tensor([-1.0, 7.0])
    assert model(x).tolist() == [0.0, 14.0]  # both became ReLU, as nn.ReLU6 modules do
    assert all(type(m) is ReLU for m in model.sites.values())


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = ReLU(1.0)

    def forward(self, x):
        return F.relu(self.fc(self.act(x)))


def test_sites_are_per_module_and_line_and_shared_by_a_reused_module():
    shared = Block()
    model = nn.Sequential(Block(), shared, shared)
    routed = FunctionalRouting(model, create_activation("relu", relu_prime_zero=1.0))
    report = audit_model(routed, torch.randn(2, 4))
    line = inspect.getsourcelines(Block.forward)[1] + 1
    assert sorted(routed.sites) == [f"0/relu@L{line}", f"1/relu@L{line}"]
    assert (report.configured_modules, report.configured_calls_per_forward) == (2, 3)
    assert (report.functional_sites, report.functional_calls_per_forward) == (2, 3)
    assert report.configured_sites == 4
    # Routed sites are layers like any other: kink hits per layer, .to() and repr see them.
    names = [n for n, _ in kinked_modules(routed)]
    assert f"sites.0/relu@L{line}" in names and len(names) == 4
    assert "routes: F.relu" in repr(routed)


def test_configured_modules_are_not_routed_twice():
    model = FunctionalRouting(nn.Sequential(nn.Linear(4, 4), ReLU(1.0)), create_activation("relu"))
    model(torch.randn(3, 4, requires_grad=True)).sum().backward()
    assert len(model.sites) == 0


def test_other_hardtanh_bounds_and_clamp_are_not_routed():
    class Fn(nn.Module):
        def forward(self, x):
            return F.hardtanh(x) + x.clamp(min=0) + F.threshold(x, 0.0, 0.0)

    model = FunctionalRouting(Fn(), create_activation("relu"))
    model(torch.randn(3))
    assert len(model.sites) == 0


def test_routing_holds_in_training_and_evaluation_and_survives_deepcopy():
    class Fn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return F.relu(self.drop(x))

    model = FunctionalRouting(Fn(), create_activation("relu", relu_prime_zero=1.0))
    x = torch.zeros(8, requires_grad=True)
    for mode in (model.train, model.eval):
        mode()
        x.grad = None
        model(x).sum().backward()
        assert torch.all(x.grad[x.grad != 0] >= 1.0) and x.grad.any()
    clone = copy.deepcopy(model)
    clone(torch.zeros(2, requires_grad=True)).sum().backward()
    (site,) = clone.sites.values()
    assert isinstance(site, KinkedActivation) and site is not next(iter(model.sites.values()))
    assert site.kink_hits()[0] > 0
