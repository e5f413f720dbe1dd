"""The checks a TrainSpec field's value must pass, and the note for a derivative outside its
activation's subdifferential: small functions that raise one :class:`ConfigError` line
naming the setting, the value and what is allowed (used by :mod:`hpo.engine.spec`).
"""

from __future__ import annotations

import math
from typing import Any

from hpo.engine.data.registry import DatasetInfo
from hpo.errors import ConfigError, close_match

__all__ = [
    "check_bool", "check_bounds", "check_choice", "check_fits_dataset", "check_int",
    "check_real", "derivative_note",
]


def derivative_note(
    name: str, value: float | None, activation: str = "relu", negative_slope: float = 0.01
) -> str | None:
    """A one-line note when a derivative at a kink is outside the activation's
    subdifferential there (any finite value is allowed; this only says so)."""
    if value is None:
        return None
    if name == "relu_prime_zero" and activation == "leaky_relu":
        low, high = sorted((negative_slope, 1.0))
        where = f"leaky_relu (slope {negative_slope:g}) at 0"
    else:
        low, high = 0.0, 1.0
        where = "relu6 at 6" if name == "relu6_prime_six" else f"{activation} at 0"
    if low <= value <= high:
        return None
    return (f"{name}={value:g} is outside [{low:g}, {high:g}], so it is not a subgradient of "
            f"{where}; the run uses it as given.")


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value in allowed:
        return
    if not all(isinstance(a, str) for a in allowed):
        shown = " or ".join(str(a) for a in allowed)
        raise ConfigError(f"Invalid {name} {value!r}. Allowed: {shown}.")
    close = close_match(value, allowed)
    hint = f" Did you mean {close!r}?" if close else ""
    raise ConfigError(f"Unknown {name} {value!r}.{hint} Valid values are {list(allowed)}.")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"Invalid {name} {value!r}: it must be an integer >= {minimum}.")
    if value < minimum:
        raise ConfigError(f"Invalid {name} {value!r}: it must be an integer >= {minimum}.")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"Invalid {name} {value!r}: it must be true or false.")


def check_real(name: str, value: Any, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else True)
    if not ok:
        need = "a finite number > 0" if positive else "a finite number"
        raise ConfigError(f"Invalid {name} {value!r}: it must be {need}.")


def check_bounds(name: str, value: float, minimum: float | None, below: float | None) -> None:
    if below is not None and not minimum <= value < below:
        raise ConfigError(f"Invalid {name} {value!r}: it must be in [{minimum:g}, {below:g}).")
    if minimum is not None and value < minimum:
        raise ConfigError(f"Invalid {name} {value!r}: it must be >= {minimum:g}.")


def check_fits_dataset(info: DatasetInfo, val_size: int, train_subset: int | None) -> None:
    """Reject a validation or training set larger than a dataset of known size (image
    folders are checked when they are read)."""
    n = info.train_size
    if n is None:
        return
    if val_size >= n:
        raise ConfigError(
            f"val_size={val_size} does not fit the {n} training images of {info.name!r}; "
            f"allowed 1 to {n - 1}; lower val_size."
        )
    if train_subset is not None and train_subset > n - val_size:
        raise ConfigError(
            f"train_subset={train_subset} with val_size={val_size} needs more than the {n} "
            f"training images of {info.name!r}; allowed train_subset: 1 to {n - val_size} "
            "(or lower val_size)."
        )
