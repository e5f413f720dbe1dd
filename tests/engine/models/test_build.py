from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import vgg

from hpo.engine.models.activations import KinkedActivation, ReLU, create_activation, kinked_modules
from hpo.engine.models.audit import RELU_FAMILY_MODULES
from hpo.engine.models.build import (
    BuiltModel,
    adapt_input_channels,
    build_model,
    check_model,
    replace_activations,
)
from hpo.engine.models.routing import FunctionalRouting
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError, ModelAuditError

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


# -- torchvision models by name --------------------------------------------------------
@pytest.mark.parametrize("name", ["mnasnet0_5", "squeezenet1_1", "shufflenet_v2_x0_5"])
def test_torchvision_model_by_name_is_bitwise_the_stock_one(name):
    spec = TrainSpec(model=name, image_size=32)
    torch.manual_seed(0)
    built = build_model(spec)
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    stock = torchvision.models.get_model(name, weights=None, num_classes=10)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(built.model, FunctionalRouting)
    assert built.configured_activations == _stock_relus(stock) > 0
    assert not [m for m in built.model.modules() if isinstance(m, RELU_FAMILY_MODULES)]
    x = _input(spec)
    out, grads = _outputs_and_grads(built.model, x)
    ref_out, ref_grads = _outputs_and_grads(stock, x)
    assert torch.equal(out, ref_out)
    for (n, _, g), (ref_n, _, ref_g) in zip(grads, ref_grads, strict=True):
        assert n == "model." + ref_n and torch.equal(g, ref_g), n


def test_torchvision_model_by_name_gets_the_configured_activation_and_a_gray_stem():
    built = build_model(TrainSpec(model="mnasnet0_5", channels=1, relu_prime_zero=1.0))
    convs = [m for m in built.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 1 and not [c for c in convs if c.in_channels == 3]
    assert all(m.derivatives == (1.0,) for _, m in kinked_modules(built.model))
    assert built.model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnet18_on_32x32():
    built = build_model(TrainSpec(model="resnet18", image_size=32))
    assert built.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_functional_relus_of_a_torchvision_model_are_routed_and_counted():
    # DenseNet applies F.relu after its last block; GoogLeNet/Inception use F.relu only.
    built = build_model(TrainSpec(model="densenet121", image_size=32))
    assert built.audit.functional_sites == 1
    assert built.configured_activations == built.audit.configured_modules + 1 == 121


def test_torchvision_model_with_auxiliary_outputs_is_rejected_at_check():
    with pytest.raises(ConfigError, match=r"'googlenet' returns GoogLeNetOutputs .* aux_logits"):
        check_model(TrainSpec(model="googlenet", image_size=64))


def test_torchvision_model_without_relu_is_rejected_at_check():
    with pytest.raises(ConfigError, match="'efficientnet_b0' has no ReLU-family activation"):
        check_model(TrainSpec(model="efficientnet_b0", image_size=32))


# -- a user's network by import path ---------------------------------------------------
USER_MODULE = '''
import torch
import torch.nn.functional as F
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.act(self.conv(x))).mean((2, 3)))

def build(num_classes, in_channels):
    return Net(in_channels, num_classes)

def build_rgb():
    return Net()

def build_all(**kwargs):
    seen.append(kwargs)
    return Net(kwargs["in_channels"], kwargs["num_classes"])

seen = []

def not_a_module(num_classes):
    return [Net()]

def raises():
    raise RuntimeError("factory failed")

def wrong_classes():
    return Net(num_classes=7)

def tuple_in_training():
    class Aux(Net):
        def forward(self, x):
            out = super().forward(x)
            return (out, out) if self.training else out
    return Aux()

def prelu():
    return nn.Sequential(nn.Conv2d(3, 2, 1), nn.PReLU(), nn.Flatten(), nn.LazyLinear(10))

def no_relu():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10))

def clamp():
    class C(Net):
        def forward(self, x):
            return super().forward(x.clamp(min=0))
    return C()
'''


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    (tmp_path / "hpo_test_usernet.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "hpo_test_usernet"
    sys.modules.pop("hpo_test_usernet", None)


def test_import_path_factory_gets_its_arguments_and_is_routed(usermod):
    spec = TrainSpec(model=f"{usermod}:build", channels=1, relu_prime_zero=1.0)
    state = torch.random.get_rng_state()
    built = check_model(spec)
    assert torch.equal(torch.random.get_rng_state(), state)  # check_model leaves the RNG
    assert isinstance(built.model, FunctionalRouting)
    assert built.model.model.conv.in_channels == 1  # the factory's own 1-channel stem
    assert (built.audit.configured_modules, built.audit.functional_sites) == (1, 1)
    assert built.configured_activations == 2
    assert all(m.derivatives == (1.0,) for _, m in kinked_modules(built.model))


def test_import_path_factory_without_in_channels_gets_its_stem_adapted(usermod):
    built = build_model(TrainSpec(model=f"{usermod}:build_rgb", channels=1))
    assert built.model.model.conv.in_channels == 1


def test_kwargs_factory_gets_all_three(usermod):
    build_model(TrainSpec(model=f"{usermod}:build_all", channels=1, image_size=30))
    assert sys.modules[usermod].seen[-1] == {"num_classes": 10, "in_channels": 1, "image_size": 30}


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("not_a_module", r"the factory returned list \(\[Net\(.*\), not a torch.nn.Module"),
        ("raises", r"the factory raised RuntimeError: factory failed when called as raises\(\)"),
        ("wrong_classes", r"returns shape \(1, 7\) for a \(1, 3, 28, 28\) input"),
        ("tuple_in_training", r"returns tuple for a \(2, 3, 28, 28\) input"),
        ("no_relu", "has no ReLU-family activation"),
    ],
)
def test_bad_factories_fail_the_check_in_one_line(usermod, factory, message):
    with pytest.raises(ConfigError, match=message) as info:
        check_model(TrainSpec(model=f"{usermod}:{factory}"))
    assert "\n" not in str(info.value) and f"'{usermod}:{factory}'" in str(info.value)


@pytest.mark.parametrize(("factory", "what"), [("prelu", "PReLU"), ("clamp", "clamp")])
def test_audit_still_catches_what_a_user_model_cannot_route(usermod, factory, what):
    with pytest.raises(ModelAuditError, match=what):
        build_model(TrainSpec(model=f"{usermod}:{factory}"))


def test_the_dataset_class_count_reaches_every_kind_of_model(usermod):
    for name in ("fc", "resnet18_cifar", "vgg11", "mnasnet0_5", f"{usermod}:build"):
        built = check_model(TrainSpec(model=name, image_size=32), num_classes=5)
        assert built.model(torch.randn(2, built_channels(name), 32, 32)).shape == (2, 5), name
    with pytest.raises(ConfigError, match=r"shape \(1, 7\) .* = \(1, 5\)"):
        check_model(TrainSpec(model=f"{usermod}:wrong_classes"), num_classes=5)


def built_channels(name: str) -> int:
    return TrainSpec(model=name, image_size=32).resolved_channels
