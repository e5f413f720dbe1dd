"""The TrainSpec flags that ``hpo train``, ``hpo probe`` and ``hpo diverge`` share.

One flag per :class:`~hpo.engine.spec.TrainSpec` field (``relu_prime_zero`` ->
``--relu-prime-zero``), generated from the spec's field table: help, choices and defaults
are written once, on the field. Model settings (depth, width ...) default to "not given".
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

from hpo.engine.models.registry import MODEL_SETTINGS, readers_of
from hpo.engine.spec import FIELDS, TrainSpec

__all__ = ["add_spec_arguments", "spec_from_args"]

log = logging.getLogger(__name__)


def add_spec_arguments(
    parser: argparse.ArgumentParser,
    *,
    exclude: tuple[str, ...] = (),
    training: bool = True,
    notes: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per TrainSpec field, except those in ``exclude`` and, unless
    ``training``, those that only matter when parameters are updated. ``notes`` appends a
    command's remark to a field's help."""
    for row in FIELDS:
        if row.name in exclude or (row.meta["training"] and not training):
            continue
        kwargs: dict[str, Any] = {"default": _default(row.name), "help": _help(row, notes or {})}
        if row.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif row.meta["choices"] is not None and row.kind is str:
            kwargs.update(type=row.kind, choices=row.meta["choices"])
        else:
            kwargs.update(type=row.kind, metavar=row.name.upper())
        parser.add_argument("--" + row.name.replace("_", "-"), dest=row.name, **kwargs)


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    """The TrainSpec of the fields ``args`` has flags for (the others keep their default);
    a derivative outside the activation's subdifferential is logged as a warning."""
    values = {row.name: getattr(args, row.name) for row in FIELDS if hasattr(args, row.name)}
    spec = TrainSpec(**values)
    for note in spec.notes():
        log.warning("%s", note)
    return spec


def _default(name: str) -> object:
    # A model setting is "given or not": its default is the model's, resolved by TrainSpec.
    return None if name in MODEL_SETTINGS else TrainSpec.defaults()[name]


def _help(row: Any, notes: Mapping[str, str]) -> str:
    name, default = row.name, TrainSpec.defaults()[row.name]
    text = row.meta["help"]
    if name in MODEL_SETTINGS:
        text = f"{', '.join(readers_of(name))}: {text}"
    if name in notes:
        text += f"; {notes[name]}"
    if default is not None and not isinstance(default, bool):
        text += f" (default: {default})"
    return text
