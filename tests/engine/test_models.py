from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import vgg

from hpo.engine.activations import KinkedActivation, ReLU, create_activation, kinked_modules
from hpo.engine.audit import RELU_FAMILY_MODULES
from hpo.engine.models import (
    BuiltModel,
    adapt_input_channels,
    build_model,
    replace_activations,
)
from hpo.engine.spec import TrainSpec

TORCHVISION = ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")


def _stock_relus(model: nn.Module) -> int:
    """Distinct stock ReLU modules, counted without the code under test."""
    return sum(type(m) is nn.ReLU for m in model.modules())


def _expected_count(name: str) -> int:
    if name == "fc":
        return TrainSpec().depth
    if name == "vgg11":
        return _stock_relus(vgg.make_layers(vgg.cfgs["A"]))
    return _stock_relus(getattr(torchvision.models, name)(weights=None, num_classes=10))


def _input(spec: TrainSpec, batch: int = 2) -> torch.Tensor:
    shape = (batch, spec.resolved_channels, spec.resolved_image_size, spec.resolved_image_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["fc", "vgg11", *TORCHVISION])
def test_model_builds_with_the_configured_activation(name):
    spec = TrainSpec(model=name, relu_prime_zero=1.0)
    built = build_model(spec)
    assert isinstance(built, BuiltModel)
    assert built.model(_input(spec)).shape == (2, 10)
    assert built.configured_activations == _expected_count(name)
    assert built.configured_activations == len(kinked_modules(built.model))
    assert not [m for m in built.model.modules() if isinstance(m, RELU_FAMILY_MODULES)]
    assert all(m.derivatives == (1.0,) for _, m in kinked_modules(built.model))
    assert "ReLU(relu'(0)=1" in repr(built.model)
    assert built.model.training
    assert all(p.dtype == torch.float32 for p in built.model.parameters())


def test_expected_counts_are_what_the_docs_say():
    assert {n: _expected_count(n) for n in ["vgg11", *TORCHVISION]} == {
        "vgg11": 8, "resnet18": 9, "resnet50": 17, "mobilenet_v3_small": 14,
        "mobilenet_v3_large": 19,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({"activation": "relu6", "relu_prime_zero": 0.5, "relu6_prime_six": 1.0},
         "ReLU6(relu6'(0)=0.5, relu6'(6)=1"),
        ({"activation": "leaky_relu", "negative_slope": 0.1, "kink_grad": "set"},
         "LeakyReLU(leaky_relu'(0)=0.1, negative_slope=0.1, kink_grad=set"),
    ],
)  # fmt: skip
def test_other_activations_rule_the_whole_model(settings, shown):
    built = build_model(TrainSpec(model="mobilenet_v3_small", **settings))
    assert built.configured_activations == 14
    assert repr(built.model).count(shown) == 14


def test_mobilenet_keeps_its_hardswish_and_reports_it():
    built = build_model(TrainSpec(model="mobilenet_v3_small"))
    hardswish = sum(isinstance(m, nn.Hardswish) for m in built.model.modules())
    assert hardswish > 0
    assert built.audit.other_kinked["Hardswish"] == hardswish
    assert "Hardswish x" in built.audit.summary()


def test_resnet18_keeps_basic_block_sharing():
    built = build_model(TrainSpec(model="resnet18"))
    block = built.model.layer1[0]
    assert isinstance(block.relu, KinkedActivation)
    assert built.configured_activations == 9
    # Each BasicBlock applies its one module twice; the stem applies one once.
    assert built.audit.configured_calls_per_forward == 1 + 2 * 8


def test_replace_activations_shares_memoises_and_keeps_inplace():
    shared = nn.ReLU(inplace=True)
    model = nn.Sequential(
        nn.Linear(2, 2), shared, nn.Sequential(shared, nn.ReLU6(), nn.Hardtanh(0.0, 6.0)),
        nn.LeakyReLU(0.2),
    )  # fmt: skip
    state = torch.random.get_rng_state()
    replaced = replace_activations(model, create_activation("relu", relu_prime_zero=1.0))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert replaced == 4
    assert model[1] is model[2][0]
    assert isinstance(model[1], ReLU) and model[1].inplace
    assert all(type(model[2][i]) is ReLU and not model[2][i].inplace for i in (1, 2))
    assert type(model[3]) is ReLU


class MyReLU(nn.ReLU):
    pass


@pytest.mark.parametrize(
    "module", [nn.PReLU(), nn.RReLU(), nn.Hardtanh(), nn.Threshold(0.0, 0.0), MyReLU()]
)
def test_replace_activations_leaves_what_it_cannot_map_to_the_audit(module):
    model = nn.Sequential(nn.Linear(2, 2), module)
    assert replace_activations(model, create_activation("relu")) == 0
    assert model[1] is module


def _stock_fc(spec: TrainSpec) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = spec.resolved_channels * spec.resolved_image_size**2
    for _ in range(spec.depth):
        layers += [nn.Linear(width_in, spec.width)]
        layers += [nn.BatchNorm1d(spec.width)] if spec.batch_norm else []
        layers += [nn.ReLU(inplace=True)]
        width_in = spec.width
    return nn.Sequential(*layers, nn.Linear(width_in, 10))


def _outputs_and_grads(model: nn.Module, x: torch.Tensor):
    torch.manual_seed(3)  # MobileNetV3's dropout
    out = model(x)
    F.cross_entropy(out, torch.tensor([1, 7])).backward()
    return out.detach(), [(n, p.detach().clone(), p.grad) for n, p in model.named_parameters()]


@pytest.mark.parametrize(
    ("spec", "stock"),
    [
        (TrainSpec(model="fc"), _stock_fc),
        (TrainSpec(model="fc", relu_prime_zero=0.0, batch_norm=True, depth=3), _stock_fc),
        (TrainSpec(model="resnet18"), lambda s: torchvision.models.resnet18(num_classes=10)),
        (
            TrainSpec(model="mobilenet_v3_small", relu_prime_zero=0.0),
            lambda s: torchvision.models.mobilenet_v3_small(num_classes=10),
        ),
    ],
)
def test_default_derivatives_are_bitwise_pytorch(spec, stock):
    x = _input(spec)
    torch.manual_seed(0)
    built = build_model(spec).model
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    reference = stock(spec)
    # Same draws in the same order: surgery, stem and audit draw nothing.
    assert torch.equal(torch.random.get_rng_state(), state)
    out, grads = _outputs_and_grads(built, x)
    ref_out, ref_grads = _outputs_and_grads(reference, x)
    assert torch.equal(out, ref_out)
    assert [n for n, *_ in grads] == [n for n, *_ in ref_grads]
    for (name, p, g), (_, ref_p, ref_g) in zip(grads, ref_grads):
        assert torch.equal(p, ref_p), name
        assert g is not None and torch.equal(g, ref_g), name


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vgg11"])
def test_one_channel_stem_sees_grayscale_like_the_rgb_model(name):
    torch.manual_seed(0)
    gray = build_model(TrainSpec(model=name, channels=1)).model.eval()
    torch.manual_seed(0)
    rgb = build_model(TrainSpec(model=name)).model.eval()
    convs = [m for m in gray.modules() if isinstance(m, nn.Conv2d)]
    stem = next(m for m in rgb.modules() if isinstance(m, nn.Conv2d))
    assert convs[0].in_channels == 1 and not [c for c in convs if c.in_channels == 3]
    for attr in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(convs[0], attr) == getattr(stem, attr), attr
    assert (convs[0].bias is None) == (stem.bias is None)
    x = _input(TrainSpec(model=name, channels=1))
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_adapt_input_channels_replaces_only_the_first_conv():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 3, 1))
    inner = nn.Sequential(nn.Conv2d(3, 5, 1))
    model.append(inner)
    state = torch.random.get_rng_state()
    assert adapt_input_channels(model, 3) is None
    new = adapt_input_channels(model, 1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model[0] is new and new.in_channels == 1 and new.stride == (2, 2)
    assert model[2][0].in_channels == 3
    assert adapt_input_channels(nn.Sequential(nn.Conv2d(1, 2, 1)), 1) is None  # already 1
    assert adapt_input_channels(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), 1) is None


def test_adapt_input_channels_from_one_to_three_keeps_the_output_on_gray_images():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=True))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
        new = adapt_input_channels(model, 3)
        assert new.in_channels == 3 and model[0] is new
        torch.testing.assert_close(model(x.repeat(1, 3, 1, 1)), before)


def test_width_mult_scales_mobilenet_channels():
    def stem(width_mult):
        model = build_model(TrainSpec(model="mobilenet_v3_large", width_mult=width_mult)).model
        return model.features[0][0].out_channels, model.classifier[0].in_features

    assert stem(1.0) == (16, 960)
    assert stem(0.5) == (8, 480)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg11_is_the_cifar_style_net_with_torchvision_init(batch_norm):
    model = build_model(TrainSpec(model="vgg11", batch_norm=batch_norm)).model
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (8 if batch_norm else 0)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(torch.all(c.bias == 0) for c in convs)
    assert torch.all(model.classifier.bias == 0)
    assert 0.005 < model.classifier.weight.std().item() < 0.015  # normal(0, 0.01)
    x = _input(TrainSpec(model="vgg11", image_size=40))
    assert model(x).shape == (2, 10)  # global pooling: larger images work too
