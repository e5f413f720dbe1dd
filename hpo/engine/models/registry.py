"""The model table: what a ``model:`` name means, in torchvision's style (``register_model``,
``get_model_entry``, ``list_models``). Torch-free: builders are lazy ``module:function`` refs.

A name resolves to a :class:`ModelEntry`: a built-in (:data:`BUILTINS`), else a torchvision
classification model (built with ``torchvision.models.get_model``), else an import path
``package.module:factory`` (called with what it accepts of ``num_classes``, ``in_channels``,
``image_size`` and the model settings). Built-ins win over torchvision names. An entry says
which model settings the model reads, its image-size floor, and whether the configured
activation is injected by its builder or replaced afterwards (module surgery).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpo.errors import ConfigError

__all__ = [
    "BUILTINS",
    "BUILTIN_MODELS",
    "FACTORY_ARGUMENTS",
    "LIST_MODELS_HINT",
    "MODEL_SETTINGS",
    "ModelEntry",
    "accepted_arguments",
    "call_factory",
    "check_model_name",
    "get_model_entry",
    "is_import_path",
    "list_models",
    "load_factory",
    "model_kind",
    "readers_of",
    "register_model",
    "torchvision_models",
]

# Settings that only some models read, and the value a model that reads one uses when it is
# not given (an import-path factory's own default wins). Every other TrainSpec field applies
# to every model.
MODEL_SETTINGS: Mapping[str, Any] = {
    "depth": 2, "width": 64, "batch_norm": False, "width_mult": 1.0,
}
FACTORY_ARGUMENTS = ("num_classes", "in_channels", "image_size")
LIST_MODELS_HINT = (
    "list torchvision's with: python -c \"import torchvision; "
    'print(torchvision.models.list_models(module=torchvision.models))"'
)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")
_DOTTED = re.compile(rf"{_IDENT}(\.{_IDENT})+")


@dataclass(frozen=True)
class ModelEntry:
    """One model: how to build it and what it reads.

    ``kind``: ``"builtin"``, ``"torchvision"`` or ``"import"``. ``builder``: a lazy
    ``"module:callable"``, called by keyword with what it accepts of ``num_classes``,
    ``in_channels``, ``image_size``, ``act`` (the activation factory) and the settings in
    ``reads`` (name -> value used when not given; ``None``: the factory's own default).
    ``min_image_size``: smallest image side (also the default for smaller datasets), and
    ``size_reason`` why. ``activations``: ``"injected"`` by the builder or ``"replaced"``
    after it. ``gray_channels``: input channels for a gray dataset when not set.
    """

    name: str
    kind: str
    builder: str
    reads: Mapping[str, Any] = field(default_factory=dict)
    min_image_size: int = 8
    size_reason: str = ""
    activations: str = "replaced"
    gray_channels: int = 3
    summary: str = ""

    def load_builder(self) -> Callable[..., Any]:
        """Import and return the builder (torch is imported here, not before)."""
        if self.kind == "torchvision":
            import torchvision

            return functools.partial(torchvision.models.get_model, self.name, weights=None)
        return load_factory(self.builder)


_BUILTINS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a built-in model (one entry is all a new built-in needs)."""
    if entry.kind != "builtin" or entry.activations not in ("injected", "replaced"):
        raise ValueError(f"{entry.name}: a built-in entry, activations injected or replaced")
    unknown = set(entry.reads) - set(MODEL_SETTINGS)
    if unknown:
        raise ValueError(f"{entry.name}: unknown model settings {sorted(unknown)}")
    _BUILTINS[entry.name] = entry
    return entry


def _builtin(name: str, builder: str, reads: tuple[str, ...] = (), **kw: Any) -> None:
    register_model(ModelEntry(
        name, "builtin", builder, {s: MODEL_SETTINGS[s] for s in reads}, **kw
    ))


_IMAGENET = "its ImageNet design downsamples too often for images under 28 pixels"
_builtin("fc", "hpo.engine.models.build:fc", ("depth", "width", "batch_norm"),
         activations="injected", gray_channels=1, summary="fully connected net")
_builtin("mobilenet_v3_small", "hpo.engine.models.build:mobilenet_v3_small", ("width_mult",),
         min_image_size=28, size_reason=_IMAGENET)
_builtin("mobilenet_v3_large", "hpo.engine.models.build:mobilenet_v3_large", ("width_mult",),
         min_image_size=28, size_reason=_IMAGENET)
_builtin("resnet18", "hpo.engine.models.build:resnet18", min_image_size=28,
         size_reason=_IMAGENET)
_builtin("resnet18_cifar", "hpo.engine.models.cifar:resnet18_cifar", ("batch_norm",),
         activations="injected", summary="the paper's CIFAR ResNet18")
_builtin("resnet50", "hpo.engine.models.build:resnet50", min_image_size=28,
         size_reason=_IMAGENET)
_builtin("vgg11", "hpo.engine.models.cifar:vgg11", ("batch_norm",), min_image_size=32,
         size_reason="its five max-pools need at least 32 pixels", activations="injected",
         summary="the paper's CIFAR VGG11")

BUILTINS: Mapping[str, ModelEntry] = _BUILTINS  # name -> entry, in registration order
BUILTIN_MODELS = tuple(_BUILTINS)  # the names at import (help texts)


def list_models() -> list[str]:
    """The built-in model names, in registration order."""
    return list(_BUILTINS)


@functools.lru_cache(maxsize=1)
def torchvision_models() -> tuple[str, ...]:
    """torchvision's classification model names (imports torchvision once)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def is_import_path(name: str) -> bool:
    return ":" in name


def model_kind(name: str) -> str:
    """``"builtin"``, ``"torchvision"`` or ``"import"`` (the name is assumed valid)."""
    if name in _BUILTINS:
        return "builtin"
    return "import" if is_import_path(name) else "torchvision"


def get_model_entry(name: Any) -> ModelEntry:
    """The entry ``name`` resolves to.

    Raises:
        ConfigError: not a built-in, torchvision or importable ``package.module:factory``
            name (one line, with close matches and the fix).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"Invalid model {name!r}: it must be a built-in name {list_models()}, a "
            "torchvision model name or an import path 'package.module:factory'."
        )
    if name in _BUILTINS:
        return _BUILTINS[name]
    if is_import_path(name):
        return _import_entry(name)
    if name in torchvision_models():
        return ModelEntry(name, "torchvision", f"torchvision.models:{name}")
    raise ConfigError(
        f"Unknown model {name!r}: {_suggest(name)}built-ins are {list_models()}; any "
        f"torchvision classification model works ({LIST_MODELS_HINT}); your own network is "
        "'package.module:factory'."
    )


def check_model_name(name: Any) -> None:
    """Raise a one-line :class:`ConfigError` unless ``name`` names a model (an import path
    is imported and must name a callable; the factory is not called)."""
    get_model_entry(name)


def readers_of(setting: str) -> list[str]:
    """The built-in models that read ``setting``."""
    return [name for name, entry in _BUILTINS.items() if setting in entry.reads]


def _suggest(name: str) -> str:
    """``did you mean ...? `` for an unknown name, each close match once."""
    if _DOTTED.fullmatch(name):
        module, _, attr = name.rpartition(".")
        return (f"did you mean {module + ':' + attr!r} (an import path puts a colon before "
                "the factory)? ")
    names = list(dict.fromkeys((*_BUILTINS, *torchvision_models())))
    close = difflib.get_close_matches(name, names, n=4)
    return f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""


@functools.lru_cache(maxsize=256)
def _import_entry(path: str) -> ModelEntry:
    """An import path's entry: it reads the model settings its factory accepts."""
    factory = load_factory(path)
    names, var_kw, defaults = accepted_arguments(factory)
    reads = {
        s: _plain(defaults.get(s)) for s in MODEL_SETTINGS if var_kw or s in names
    }
    return ModelEntry(path, "import", path, reads)


def _plain(value: Any) -> Any:
    """A factory default worth recording (a number or bool), else ``None``."""
    return value if isinstance(value, (bool, int, float)) else None


def accepted_arguments(
    factory: Callable[..., Any],
) -> tuple[frozenset[str], bool, dict[str, Any]]:
    """(keyword names ``factory`` accepts, whether it takes ``**kwargs``, their defaults)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature: pass nothing
        return frozenset(), False, {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = [
        p for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    defaults = {p.name: p.default for p in named if p.default is not inspect.Parameter.empty}
    return frozenset(p.name for p in named), var_kw, defaults


def load_factory(path: str) -> Callable[..., Any]:
    """Import ``package.module:factory`` and return the callable.

    Raises:
        ConfigError: malformed path, module not importable, attribute missing, or not
            callable; each names the path and the fix.
    """
    if not _IMPORT_PATH.fullmatch(path):
        raise ConfigError(
            f"Invalid model import path {path!r}: write it as 'package.module:factory' "
            "(dotted module, one colon, a callable's name)."
        )
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name) and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise ConfigError(
                f"Model {path!r}: module {module_name!r} is not importable here (no module "
                f"named {exc.name!r}); install its package or add its folder to PYTHONPATH "
                "on every machine that builds the model."
            ) from exc
        raise ConfigError(
            f"Model {path!r}: importing module {module_name!r} failed: {exc}; install what "
            "it needs in this environment."
        ) from exc
    except Exception as exc:  # the user's module raised while importing
        raise ConfigError(
            f"Model {path!r}: importing module {module_name!r} raised "
            f"{type(exc).__name__}: {_one_line(exc)}; fix the module."
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"Model {path!r}: module {module_name!r} has no attribute {attr!r}; check "
                "the name after the colon (a function or class returning an nn.Module)."
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(
            f"Model {path!r}: {attr!r} is a {type(obj).__name__}, not callable; name a "
            "function or class that returns an nn.Module."
        )
    return obj


def call_factory(
    path: str, factory: Callable[..., Any], values: dict[str, Any]
) -> tuple[Any, tuple[str, ...]]:
    """Call ``factory`` with the keys of ``values`` it accepts, by keyword (a ``**kwargs``
    factory gets them all). Returns what it returned and the argument names passed.

    Raises:
        ConfigError: the factory raised (the message names the path and the exception).
    """
    names, var_kw, _ = accepted_arguments(factory)
    passed = tuple(k for k in values if var_kw or k in names)
    try:
        return factory(**{k: values[k] for k in passed}), passed
    except Exception as exc:
        called = ", ".join(f"{k}={values[k]!r}" for k in passed)
        raise ConfigError(
            f"Model {path!r}: the factory raised {type(exc).__name__}: {_one_line(exc)} "
            f"when called as {path.partition(':')[2]}({called}); fix the factory or the "
            "settings it receives."
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
