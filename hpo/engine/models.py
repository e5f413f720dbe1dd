"""Model builders with the configured activation in every ReLU-family position.

:func:`build_model` turns a :class:`~hpo.engine.spec.TrainSpec` into a float32 CPU model
with 10 outputs, then audits it (:mod:`hpo.engine.audit`): building fails with
:class:`~hpo.errors.ModelAuditError` if any ReLU-family nonlinearity, module or functional,
does not carry the configured derivatives.

* ``fc`` is built here with the activation injected.
* ``resnet18``, ``resnet50``, ``mobilenet_v3_small`` and ``mobilenet_v3_large`` are
  torchvision's (random init, ``num_classes=10``). torchvision hard-codes ``nn.ReLU``
  (ResNet blocks, MobileNetV3's ``InvertedResidual`` and ``SqueezeExcitation``), so those
  modules are swapped by :func:`replace_activations`, the one place that does module
  surgery. MobileNetV3's Hardswish and Hardsigmoid are part of its design, are not
  ReLU-family, and stay at PyTorch's convention; the audit counts them
  (``AuditReport.other_kinked``).
* ``vgg11`` is the CIFAR-style VGG11 of the paper: torchvision's configuration "A" feature
  extractor, global average pooling and one ``Linear(512, 10)``, initialised as
  torchvision's ``VGG``.

Initialisation draws from torch's global RNG in torchvision's order (the caller seeds it);
replacing activations, adapting the stem and auditing draw nothing, so with PyTorch's
derivatives a built model is bitwise the stock one.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision.models import vgg

from hpo.engine.activations import create_activation
from hpo.engine.audit import AuditReport, audit_model
from hpo.engine.spec import TrainSpec

__all__ = [
    "NUM_CLASSES",
    "BuiltModel",
    "adapt_input_channels",
    "build_model",
    "replace_activations",
]

logger = logging.getLogger(__name__)

NUM_CLASSES = 10


@dataclass
class BuiltModel:
    """A built, audited model.

    Attributes:
        model: float32, on CPU, in training mode.
        configured_activations: distinct configured activation modules (a module applied
            several times per forward, like ``BasicBlock.relu``, counts once).
        audit: what the audit found.
    """

    model: nn.Module
    configured_activations: int
    audit: AuditReport


def build_model(spec: TrainSpec, *, num_classes: int = NUM_CLASSES) -> BuiltModel:
    """Build ``spec.model`` for ``spec.resolved_channels`` x ``spec.resolved_image_size``
    inputs and ``num_classes`` outputs (the dataset's: an image folder's may differ from
    10), with ``spec.activation`` (and its derivatives) in every ReLU-family position.

    Raises:
        ConfigError: activation settings rejected by :func:`create_activation`.
        ModelAuditError: a ReLU-family nonlinearity does not carry the configured
            derivatives (a bug in a builder, or a torchvision change).
    """
    factory = create_activation(
        spec.activation,
        relu_prime_zero=spec.relu_prime_zero,
        relu6_prime_six=spec.relu6_prime_six,
        negative_slope=spec.negative_slope,
        kink_grad=spec.kink_grad,
    )
    channels, size = spec.resolved_channels, spec.resolved_image_size
    if spec.model == "fc":
        model = _fc(channels * size * size, spec.depth, spec.width, spec.batch_norm, factory,
                    num_classes)
    else:
        model = _CNN_BUILDERS[spec.model](spec, num_classes)
        replaced = replace_activations(model, factory)
        logger.debug("%s: replaced %d activation module(s)", spec.model, replaced)
        adapt_input_channels(model, channels)
    model = model.float().train()
    # A private generator: the audit must not move the global RNG the caller seeded.
    example = torch.randn(
        1, channels, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float32
    )
    audit = audit_model(model, example, name=spec.model, expected=factory())
    return BuiltModel(model=model, configured_activations=audit.configured_modules, audit=audit)


# Exact types replaced by the configured activation. Subclasses may change behaviour and are
# left for the audit to reject, as are PReLU (learned slope), RReLU (random slope),
# Threshold (arbitrary threshold and value) and Hardtanh with bounds other than (0, 6).
_REPLACED_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)


def _is_replaced(module: nn.Module) -> bool:
    if type(module) in _REPLACED_TYPES:
        return True
    # nn.Hardtanh(0, 6) is ReLU6 spelt out.
    return type(module) is nn.Hardtanh and (module.min_val, module.max_val) == (0.0, 6.0)


def replace_activations(model: nn.Module, factory: Callable[..., nn.Module]) -> int:
    """Swap every stock ReLU-family module inside ``model`` for ``factory(inplace=...)``.

    Replaced are modules whose type is exactly ``nn.ReLU``, ``nn.ReLU6``, ``nn.LeakyReLU``
    or ``nn.Hardtanh`` with bounds (0, 6): the configured activation rules the whole model,
    so a ReLU6 becomes, say, the configured ReLU. Each replacement keeps the old module's
    ``inplace``. A module used in several places (torchvision's ``BasicBlock.relu`` is
    applied twice) gets one replacement used in all of them. The root module itself is
    never replaced. No RNG is consumed.

    Returns:
        The number of distinct modules replaced.
    """
    memo: dict[int, tuple[nn.Module, nn.Module]] = {}  # id(old) -> (old kept alive, new)
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is None or not _is_replaced(child):
                continue
            if id(child) not in memo:
                memo[id(child)] = (child, factory(inplace=child.inplace))
            setattr(parent, name, memo[id(child)][1])
    return len(memo)


def adapt_input_channels(model: nn.Module, channels: int) -> nn.Conv2d | None:
    """Make a 3-channel CNN take ``channels`` (1 or 3) input channels, in place.

    The stem (the first ``nn.Conv2d`` with 3 input channels, in module order) is replaced by
    a convolution with ``in_channels=1`` and otherwise the same hyperparameters. Its weight
    is the stem's weight summed over the input channels (as timm's ``adapt_input_conv``), so
    at initialisation the 1-channel model computes what the 3-channel model computes on the
    grayscale image repeated three times, and no RNG is consumed.

    Returns:
        The new stem, or ``None`` when ``channels`` is 3 (nothing to do).
    """
    if channels == 3:
        return None
    if channels != 1:
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    stems = (
        (p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3
    )
    path, old = next(stems, ("", None))
    if old is None:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d with 3 input channels")
    new = nn.utils.skip_init(
        nn.Conv2d,
        1,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)
    return new


def _fc(
    in_features: int, depth: int, width: int, batch_norm: bool, factory: Callable[..., nn.Module],
    num_classes: int,
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers.append(nn.Linear(in_features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        # In place is safe: neither Linear nor BatchNorm1d saves its output for backward.
        layers.append(factory(inplace=True))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def _vgg11(spec: TrainSpec, num_classes: int) -> nn.Sequential:
    model = nn.Sequential(
        OrderedDict(
            features=vgg.make_layers(vgg.cfgs["A"], batch_norm=spec.batch_norm),
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


def _mobilenet(name: str) -> Callable[[TrainSpec, int], nn.Module]:
    def build(spec: TrainSpec, num_classes: int) -> nn.Module:
        # The builder's kwargs reach _mobilenet_v3_conf, which scales every channel count
        # by width_mult (MobileNetV3.__init__ ignores the extra keyword).
        # torchvision's MobileNetV3 uses batch-norm momentum 0.01 (tuned for long ImageNet
        # runs): after the few hundred steps of an MNIST trial its running statistics are
        # still near their initial values and eval-mode accuracy is at chance. We keep its
        # eps and use PyTorch's default momentum (0.1), as ResNet and VGG do.
        builder = getattr(torchvision.models, name)
        norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)
        return builder(
            weights=None, num_classes=num_classes, width_mult=spec.width_mult, norm_layer=norm
        )

    return build


def _resnet(name: str) -> Callable[[TrainSpec, int], nn.Module]:
    def build(spec: TrainSpec, num_classes: int) -> nn.Module:
        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)

    return build


_CNN_BUILDERS: dict[str, Callable[[TrainSpec, int], nn.Module]] = {
    "mobilenet_v3_small": _mobilenet("mobilenet_v3_small"),
    "mobilenet_v3_large": _mobilenet("mobilenet_v3_large"),
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
    "vgg11": _vgg11,
}
