"""Config dataclasses <-> the JSON records a study stores: one serialiser, read from the
dataclass fields and their types, so a new field is written in one place.

A field is stored under its name (or the ``key`` given to :func:`stored`), its value converted
by its type: a section dataclass as a record of its own, tuples as lists, Optuna distributions
as their JSON. Why and how a field stays out of old records: docs/design.md#one-serialiser
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution

__all__ = ["from_record", "stored", "to_json", "to_record"]

T = TypeVar("T")


def stored(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    key: str | None = None,
    omit: Callable[[Any], bool] | None = None,
    absent: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with how it is stored.

    Args:
        key: the record's key (default: the field's name).
        omit: ``omit(obj)`` true leaves the field out of ``obj``'s record (so records written
            before the field existed stay equal to the same config written now).
        absent: the value of a key missing from a record (default: the field's default).
    """
    meta = {"key": key, "omit": omit, "absent": absent}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def to_record(obj: Any) -> dict[str, Any]:
    """The JSON-serialisable record of a config dataclass, fields in declaration order."""
    return {
        f.metadata.get("key") or f.name: to_json(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if not (f.metadata.get("omit") and f.metadata["omit"](obj))
    }


def to_json(value: Any) -> Any:
    """A value as JSON: config dataclasses as records, tuples as lists, distributions as
    their JSON objects; mappings and lists converted item by item."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_record(value)
    if isinstance(value, BaseDistribution):
        return json.loads(distribution_to_json(value))
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    return value


def from_record(cls: type[T], record: Mapping[str, Any], *, ignore: tuple[str, ...] = ()) -> T:
    """Rebuild a config dataclass from :func:`to_record`'s output.

    Raises:
        KeyError: a required key is missing, or the record has a key no field stores
            (outside ``ignore``).
        TypeError, ValueError: a value of the wrong shape.
    """
    if not isinstance(record, Mapping):
        raise TypeError(f"{cls.__name__}: expected a mapping, got {type(record).__name__}")
    hints = _hints(cls)
    fields = {f.metadata.get("key") or f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in record if k not in fields and k not in ignore]
    if unknown:
        raise KeyError(f"{cls.__name__} stores no key {unknown[0]!r}")
    values = {}
    for key, f in fields.items():
        if key in record:
            values[f.name] = _from_json(hints[f.name], record[key])
        elif f.metadata.get("absent", dataclasses.MISSING) is not dataclasses.MISSING:
            values[f.name] = f.metadata["absent"]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{cls.__name__}: {key!r} is missing")
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_json(tp: Any, value: Any) -> Any:
    """``value`` read as the type ``tp`` (the inverse of :func:`to_json`)."""
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None: the one non-None type
        (tp,) = [a for a in args if a is not type(None)]
        return _from_json(tp, value)
    if dataclasses.is_dataclass(tp):
        return from_record(tp, value)
    if tp is BaseDistribution:
        return json_to_distribution(json.dumps(value))
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple(_from_json(args[0], v) for v in value)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {type(value).__name__}")
        return {k: _from_json(args[1], v) for k, v in value.items()}
    return value
