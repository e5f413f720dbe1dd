"""Which model a ``model:`` name means: a built-in, a torchvision model, or an import path.

* **Built-ins** (:data:`BUILTIN_MODELS`) are built by :mod:`hpo.engine.models.build`.
* **torchvision names**: any other name in ``torchvision.models.list_models(module=
  torchvision.models)`` (the classification models, e.g. ``mnasnet0_5``), built with
  ``torchvision.models.get_model(name, weights=None, num_classes=...)``. A built-in wins
  over a torchvision name (``vgg11`` is the paper's CIFAR VGG11, ``resnet18`` is
  torchvision's).
* **Import paths** ``package.module:factory`` (``factory`` may be dotted, ``mod:Class.build``):
  a callable returning an ``nn.Module``, called with whichever of ``num_classes``,
  ``in_channels`` and ``image_size`` it accepts (a ``**kwargs`` factory gets all three).
  The path is imported in the process that builds the model, from its own environment
  (an installed package, or ``PYTHONPATH``): a study stores only the string.

:func:`check_model_name` is what :class:`~hpo.engine.spec.TrainSpec` runs: it imports
torchvision only for a name that is not a built-in, and imports an import path's module
(cached by Python), so validating many specs stays cheap. Whether the model builds and
gives ``(batch, classes)`` outputs is checked by :func:`hpo.engine.models.build.check_model`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from hpo.errors import ConfigError, one_line

__all__ = [
    "BUILTIN_MODELS",
    "FACTORY_ARGUMENTS",
    "LIST_MODELS_HINT",
    "call_factory",
    "check_model_name",
    "is_import_path",
    "load_factory",
    "model_kind",
    "torchvision_models",
]

BUILTIN_MODELS = (
    "fc",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "resnet18_cifar",
    "resnet50",
    "vgg11",
)
FACTORY_ARGUMENTS = ("num_classes", "in_channels", "image_size")
LIST_MODELS_HINT = (
    "list torchvision's with: python -c \"import torchvision; "
    'print(torchvision.models.list_models(module=torchvision.models))"'
)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")


@functools.lru_cache(maxsize=1)
def torchvision_models() -> tuple[str, ...]:
    """torchvision's classification model names (imports torchvision once)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def is_import_path(name: str) -> bool:
    return ":" in name


def model_kind(name: str) -> str:
    """``"builtin"``, ``"torchvision"`` or ``"import"`` (the name is assumed valid)."""
    if name in BUILTIN_MODELS:
        return "builtin"
    return "import" if is_import_path(name) else "torchvision"


def check_model_name(name: Any) -> None:
    """Raise a one-line :class:`ConfigError` unless ``name`` names a model.

    An import path must import and name a callable; the factory is not called here.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"Invalid model {name!r}: it must be a built-in name {list(BUILTIN_MODELS)}, a "
            "torchvision model name or an import path 'package.module:factory'."
        )
    if name in BUILTIN_MODELS:
        return
    if is_import_path(name):
        load_factory(name)
        return
    if name in torchvision_models():
        return
    close = difflib.get_close_matches(name, (*BUILTIN_MODELS, *torchvision_models()), n=4)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"Unknown model {name!r}: {hint}built-ins are {list(BUILTIN_MODELS)}; any torchvision "
        f"classification model works ({LIST_MODELS_HINT}); your own network is "
        "'package.module:factory'."
    )


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
            f"{type(exc).__name__}: {one_line(exc)}; fix the module."
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
    """Call ``factory`` with the keys of ``values`` (from :data:`FACTORY_ARGUMENTS`) it
    accepts, by keyword. Returns what it returned and the argument names passed.

    Raises:
        ConfigError: the factory raised (the message names the path and the exception).
    """
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: pass nothing
        params = []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        passed = tuple(values)
    else:
        names = {
            p.name
            for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        passed = tuple(k for k in values if k in names)
    try:
        return factory(**{k: values[k] for k in passed}), passed
    except Exception as exc:
        called = ", ".join(f"{k}={values[k]!r}" for k in passed)
        raise ConfigError(
            f"Model {path!r}: the factory raised {type(exc).__name__}: {one_line(exc)} "
            f"when called as {path.partition(':')[2]}({called}); fix the factory or the "
            "settings it receives."
        ) from exc
