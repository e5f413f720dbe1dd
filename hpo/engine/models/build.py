"""Build a :class:`~hpo.engine.spec.TrainSpec`'s model with the configured activation in
every ReLU-family position, then audit it (:mod:`hpo.engine.models.audit`).

Which builder makes a ``model:`` name, which settings it gets, and whether the activation
is injected by the builder or swapped in afterwards (:func:`replace_activations`) is the
table in :mod:`hpo.engine.models.registry`; the built-ins that are not the paper's CIFAR
networks (:mod:`hpo.engine.models.cifar`) are built by the functions here. Models by name or
import path are also wrapped in functional routing. Building draws from torch's global RNG
in torchvision's order only. Why: docs/design.md#building-a-model
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from hpo.engine.data.registry import dataset_info
from hpo.engine.models import registry
from hpo.engine.models.activations import create_activation
from hpo.engine.models.audit import AuditReport, audit_model
from hpo.engine.models.routing import FunctionalRouting
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError, ModelAuditError, one_line

__all__ = [
    "NUM_CLASSES",
    "BuiltModel",
    "adapt_input_channels",
    "build_model",
    "check_model",
    "fc",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "replace_activations",
    "resnet18",
    "resnet50",
]

logger = logging.getLogger(__name__)

NUM_CLASSES = 10


@dataclass
class BuiltModel:
    """A built, audited model.

    Attributes:
        model: float32, on CPU, in training mode.
        configured_activations: configured sites seen in one forward pass: distinct
            activation modules (a module applied several times per forward, like
            ``BasicBlock.relu``, counts once) plus routed functional call sites.
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
        ConfigError: activation settings rejected by :func:`create_activation`; a model by
            name or import path that does not build or does not run on an example input
            (one line naming the model and the fix).
        ModelAuditError: a ReLU-family nonlinearity does not carry the configured
            derivatives (a bug in a builder, a torchvision change, or a user's model).
    """
    factory = create_activation(
        spec.activation,
        relu_prime_zero=spec.relu_prime_zero,
        relu6_prime_six=spec.relu6_prime_six,
        negative_slope=spec.negative_slope,
        kink_grad=spec.kink_grad,
    )
    channels, size = spec.resolved_channels, spec.resolved_image_size
    entry = registry.get_model_entry(spec.model)
    kind = entry.kind
    model, adapt = _instantiate(entry, spec, factory, num_classes)
    if entry.activations == "replaced":
        replaced = replace_activations(model, factory)
        logger.debug("%s: replaced %d activation module(s)", spec.model, replaced)
    if adapt:
        adapt_input_channels(model, channels)
    if kind != "builtin":
        model = FunctionalRouting(model, factory)
    model = model.float().train()
    # A private generator: the audit must not move the global RNG the caller seeded.
    example = torch.randn(
        1, channels, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float32
    )
    if kind == "builtin":
        audit = audit_model(model, example, name=spec.model, expected=factory())
    else:
        audit = _audit_foreign(model, example, spec.model, factory(), num_classes)
    return BuiltModel(model=model, configured_activations=audit.configured_sites, audit=audit)


def check_model(spec: TrainSpec, *, num_classes: int | None = None) -> BuiltModel:
    """Build ``spec``'s model once, as a study or ``hpo train`` starts, and run it on a
    small example batch in training mode, so a bad model fails before anything is written.

    The global RNG is left as it was. Built-ins are checked too (it is cheap next to
    training) so every model goes through one path. ``num_classes`` defaults to the
    dataset's; an image folder's is known only once it is read, so the check then uses 10
    (a factory should build the ``num_classes`` it is given).

    Raises:
        ConfigError: the model does not build, its output is not ``(batch, num_classes)`` in
            training mode, or it has no ReLU-family activation for the derivatives to act on.
        ModelAuditError: as :func:`build_model`.
    """
    if num_classes is None:
        num_classes = dataset_info(spec.dataset).num_classes or NUM_CLASSES
    with torch.random.fork_rng(devices=[]):
        built = build_model(spec, num_classes=num_classes)
        channels, size = spec.resolved_channels, spec.resolved_image_size
        x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = _forward(built.model, x, spec.model)
    _check_output(out, x, spec.model, num_classes)
    if built.configured_activations == 0:
        raise ConfigError(
            f"Model {spec.model!r} has no ReLU-family activation (module or routed functional "
            "call) for the configured derivatives to act on; choose a model that uses ReLU, "
            "ReLU6 or LeakyReLU."
        )
    return built


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
    """Make a CNN take ``channels`` input channels, in place.

    The stem (the first ``nn.Conv2d`` in module order) is replaced by one with
    ``in_channels=channels``, its weight derived from the old one as timm's
    ``adapt_input_conv`` does (summed for 1 channel, else repeated and rescaled); no RNG is
    consumed. A model whose first layer is not a ``Conv2d`` is left as it is.
    Why: docs/design.md#adapting-the-input-channels

    Returns:
        The new stem, or ``None`` when nothing was changed.
    """
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    path, old = next(
        ((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None)
    )
    if old is None or old.in_channels == channels:
        return None
    if old.groups != 1:
        raise ValueError(
            f"{type(model).__name__}: the stem {path!r} is a grouped convolution "
            f"(groups={old.groups}); it cannot be adapted to {channels} channel(s)"
        )
    new = nn.utils.skip_init(
        nn.Conv2d,
        channels,
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
        if channels == 1:
            new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        else:
            repeat = math.ceil(channels / old.in_channels)
            weight = old.weight.repeat(1, repeat, 1, 1)[:, :channels]
            new.weight.copy_(weight * (old.in_channels / channels))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)
    return new


def fc(
    num_classes: int, in_channels: int, image_size: int, depth: int, width: int,
    act: Callable[..., nn.Module], batch_norm: bool = False,
) -> nn.Sequential:
    """The built-in ``fc``: ``depth`` hidden layers of ``width`` units, each followed by
    batch norm (if ``batch_norm``) and the configured activation."""
    in_features = in_channels * image_size * image_size
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers.append(nn.Linear(in_features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        # In place is safe: neither Linear nor BatchNorm1d saves its output for backward.
        layers.append(act(inplace=True))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def _mobilenet(name: str, num_classes: int, width_mult: float) -> nn.Module:
    # The builder's kwargs reach _mobilenet_v3_conf, which scales every channel count
    # by width_mult (MobileNetV3.__init__ ignores the extra keyword).
    # torchvision's MobileNetV3 uses batch-norm momentum 0.01 (tuned for long ImageNet
    # runs): after the few hundred steps of an MNIST trial its running statistics are
    # still near their initial values and eval-mode accuracy is at chance. We keep its
    # eps and use PyTorch's default momentum (0.1), as ResNet and VGG do.
    builder = getattr(torchvision.models, name)
    norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)
    return builder(weights=None, num_classes=num_classes, width_mult=width_mult, norm_layer=norm)


def mobilenet_v3_small(num_classes: int, width_mult: float) -> nn.Module:
    """torchvision's MobileNetV3-Small, batch-norm momentum 0.1."""
    return _mobilenet("mobilenet_v3_small", num_classes, width_mult)


def mobilenet_v3_large(num_classes: int, width_mult: float) -> nn.Module:
    """torchvision's MobileNetV3-Large, batch-norm momentum 0.1."""
    return _mobilenet("mobilenet_v3_large", num_classes, width_mult)


def resnet18(num_classes: int) -> nn.Module:
    """torchvision's ResNet18, random init."""
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


def resnet50(num_classes: int) -> nn.Module:
    """torchvision's ResNet50, random init."""
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


def _instantiate(
    entry: registry.ModelEntry, spec: TrainSpec, act: Callable[..., nn.Module],
    num_classes: int,
) -> tuple[nn.Module, bool]:
    """``entry``'s model, not yet adapted: (module, whether its stem still needs adapting).

    The builder gets, by keyword, what it accepts of the sizes, ``act`` (built-ins only)
    and the model settings ``spec`` applies (given, or the entry's default)."""
    if entry.kind == "torchvision":
        return entry.load_builder()(num_classes=num_classes), True
    values: dict[str, Any] = {
        "num_classes": num_classes,
        "in_channels": spec.resolved_channels,
        "image_size": spec.resolved_image_size,
    }
    if entry.kind == "builtin":
        values["act"] = act
    values.update(spec.model_settings())
    model, passed = registry.call_factory(entry.name, entry.load_builder(), values)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"Model {entry.name!r}: the factory returned {type(model).__name__} "
            f"({_short(model)}), not a torch.nn.Module; return the network itself."
        )
    return model, "in_channels" not in passed


def _audit_foreign(
    model: nn.Module, example: Tensor, name: str, expected: nn.Module, num_classes: int
) -> AuditReport:
    """Audit a model by name or import path: an error in its forward is the user's."""
    try:
        audit = audit_model(model, example, name=name, expected=expected)
    except (ConfigError, ModelAuditError):
        raise
    except Exception as exc:
        raise _forward_error(name, example, exc) from exc
    with torch.no_grad():
        _check_output(_forward(model.eval(), example, name), example, name, num_classes)
    model.train()
    return audit


def _forward(model: nn.Module, x: Tensor, name: str) -> Any:
    try:
        return model(x)
    except Exception as exc:
        raise _forward_error(name, x, exc) from exc


def _forward_error(name: str, x: Tensor, exc: Exception) -> ConfigError:
    b, c, h, _ = x.shape
    message = one_line(exc, limit=300)
    return ConfigError(
        f"Model {name!r} fails on a ({b}, {c}, {h}, {h}) example input: "
        f"{type(exc).__name__}: {message}; make it accept {c}-channel {h}x{h} images "
        "(a factory may take in_channels and image_size) or set channels/image_size."
    )


def _check_output(out: Any, x: Tensor, name: str, num_classes: int) -> None:
    expected = (x.shape[0], num_classes)
    if isinstance(out, Tensor) and tuple(out.shape) == expected:
        return
    got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
    raise ConfigError(
        f"Model {name!r} returns {got} for a {tuple(x.shape)} input; it must return one "
        f"tensor of logits of shape (batch, classes) = {expected} in training and "
        "evaluation mode (turn off auxiliary outputs, e.g. aux_logits=False)."
    )


def _short(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."
