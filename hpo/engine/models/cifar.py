"""The CIFAR networks of the paper (Bertoin et al., 2021), sized for 32x32 inputs.

Both take the activation as a factory (``factory(inplace=...)``), so no module surgery is
needed, and both initialise as torchvision's ImageNet versions do; ``vgg11`` has a global
pool and one Linear head, ``resnet18_cifar`` a 3x3 stride-1 stem without max-pool and
optional BatchNorm.
See docs/design.md#the-papers-cifar-networks-and-torchvisions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import Tensor, nn
from torchvision.models import vgg

__all__ = ["ResNet18Cifar", "resnet18_cifar", "vgg11"]

ActivationFactory = Callable[..., nn.Module]


def vgg11(num_classes: int, batch_norm: bool, act: ActivationFactory) -> nn.Sequential:
    """The paper's CIFAR VGG11 (module docstring), torchvision's VGG initialisation."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in vgg.cfgs["A"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(act(inplace=True))
        in_channels = v
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*layers),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(512, num_classes),
        )
    )
    # torchvision's VGG.__init__ initialisation, in the same module order.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)
    return model


class _BasicBlock(nn.Module):
    def __init__(
        self, cin: int, cout: int, stride: int, batch_norm: bool, act: ActivationFactory
    ) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else nn.Identity
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(cout)
        self.act1 = act(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = norm(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout)
            )
        self.act2 = act(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """ResNet-18 for 32x32 images (module docstring)."""

    def __init__(self, num_classes: int, batch_norm: bool, act: ActivationFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64) if batch_norm else nn.Identity()
        self.act = act(inplace=True)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(
                nn.Sequential(
                    _BasicBlock(cin, cout, stride, batch_norm, act),
                    _BasicBlock(cout, cout, 1, batch_norm, act),
                )
            )
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        # torchvision's ResNet.__init__ initialisation (the Linear keeps PyTorch's default).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18_cifar(num_classes: int, batch_norm: bool, act: ActivationFactory) -> ResNet18Cifar:
    return ResNet18Cifar(num_classes, batch_norm, act)
