from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.engine.models.activations import KinkedActivation, kinked_modules
from hpo.engine.models.build import build_model
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError


def _count(model: nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in model.modules())


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Parameter counts of the widely used CIFAR definitions (kuangliu/pytorch-cifar): VGG11
# 9,231,114 with BN, ResNet18 11,173,962 with BN; without BN, minus 2 per BN channel.
@pytest.mark.parametrize(
    ("batch_norm", "params", "norms"), [(True, 9_231_114, 8), (False, 9_225_610, 0)]
)
def test_vgg11_is_the_paper_cifar_net(batch_norm, params, norms):
    model = build_model(TrainSpec(model="vgg11", batch_norm=batch_norm)).model
    assert _params(model) == params
    assert _count(model, nn.BatchNorm2d) == norms
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.bias is not None for c in convs)
    assert _count(model, nn.MaxPool2d) == 5
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("batch_norm", "params", "norms"), [(True, 11_173_962, 20), (False, 11_164_362, 0)]
)
def test_resnet18_cifar_is_the_paper_cifar_net(batch_norm, params, norms):
    built = build_model(TrainSpec(model="resnet18_cifar", batch_norm=batch_norm, image_size=32))
    model = built.model
    assert _params(model) == params
    assert _count(model, nn.BatchNorm2d) == norms
    assert _count(model, nn.Identity) == (0 if batch_norm else 20) + 5  # + identity shortcuts
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 16 + 3 and all(c.bias is None for c in convs)
    stem = convs[0]
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((3, 3), (1, 1), 64)
    assert _count(model, nn.MaxPool2d) == 0
    assert model.fc.in_features == 512 and model.fc.out_features == 10
    assert built.configured_activations == 17  # stem + two per BasicBlock, all distinct
    assert len(kinked_modules(model)) == 17
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)  # global pooling


def test_resnet18_cifar_keeps_32x32_until_the_first_block():
    model = build_model(TrainSpec(model="resnet18_cifar", image_size=32)).model
    seen = {}
    model.layer1.register_forward_pre_hook(lambda m, a: seen.update(shape=a[0].shape))
    model(torch.randn(1, 3, 32, 32))
    assert seen["shape"] == (1, 64, 32, 32)  # torchvision's stem would leave 8x8


def test_cifar_nets_inject_the_configured_activation_and_adapt_to_one_channel():
    for name in ("vgg11", "resnet18_cifar"):
        spec = TrainSpec(model=name, activation="relu6", relu_prime_zero=1.0, channels=1)
        model = build_model(spec).model
        acts = [m for _, m in kinked_modules(model)]
        assert acts and all(isinstance(a, KinkedActivation) and a.derivatives == (1.0, 0.0)
                            for a in acts)
        assert next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels == 1
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_batch_norm_applies_to_the_cifar_nets_only():
    TrainSpec(model="resnet18_cifar", batch_norm=True)
    with pytest.raises(ConfigError, match=r"batch_norm=True is not read by model 'mnasnet0_5'"):
        TrainSpec(model="mnasnet0_5", batch_norm=True)
