"""Reading a study file: safe YAML parsing and the one-line error format.

Every config error reads ``<file>: <key.path>: <problem> (got <value>); allowed: ...;
fix: ...`` so a user can find the line to change without reading a traceback.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hpo.errors import ConfigError, did_you_mean, one_line

# one_line is hpo.errors' own, re-exported for the config modules that take it from here
__all__ = ["NOTHING", "Checker", "Shown", "config_error", "one_line", "read_yaml"]

NOTHING = object()  # "no value to show" (None is a value worth showing)


class Shown:
    """A ``got`` value shown as its text, without quotes (e.g. a range ``[0.0, 1.0]``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def config_error(
    source: str,
    path: str,
    problem: str,
    got: Any = NOTHING,
    allowed: str | None = None,
    fix: str | None = None,
    hint: str = "",
) -> ConfigError:
    """Format the one-line error every config check raises (``hint``, e.g. "did you mean
    'lr'?", goes beside the bad value)."""
    msg = f"{source}: {path}: {problem}" if path else f"{source}: {problem}"
    shown = "; ".join(p for p in (f"got {_show(got)}" if got is not NOTHING else "", hint) if p)
    if shown:
        msg += f" ({shown})"
    if allowed:
        msg += f"; allowed: {allowed}"
    if fix:
        msg += f"; fix: {fix}"
    return ConfigError(msg)


# ----------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no arbitrary objects) that also reads ``1e-3`` as a float, as
    YAML 1.2 and every researcher do (YAML 1.1 reads it as a string), and refuses duplicate
    keys instead of keeping the last one silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML file safely.

    Raises:
        ConfigError: the file is missing or unreadable, or the YAML is invalid (with line
            and column).
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "file not found"
        raise ConfigError(
            f"{path}: {what}; fix: check the path (study files live in study_configs/)."
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc}); fix: check it.") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = " ".join(str(exc.problem or exc.context or "").split())
        raise ConfigError(
            f"{path}: {where}: invalid YAML: {problem}; fix: correct the YAML syntax there."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from exc


def _show(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 120 else text[:117] + "..."


class Checker:
    """Generic checks of one file's values; ``source`` (the file) prefixes every message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(
        self,
        path: str,
        problem: str,
        got: Any = NOTHING,
        allowed: str | None = None,
        fix: str | None = None,
        hint: str = "",
    ) -> ConfigError:
        return config_error(self.source, path, problem, got, allowed, fix, hint)

    def mapping(
        self,
        value: Any,
        path: str,
        keys: tuple[str, ...] | None = None,
        required: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(value, Mapping):
            raise self.error(
                path or "(top level)",
                "expected a mapping of key: value",
                value,
                fix="indent the keys under it",
            )
        for key in value:
            if not isinstance(key, str):
                raise self.error(join_path(path, str(key)), "keys must be strings", key)
            if keys is not None and key not in keys:
                raise self.error(
                    join_path(path, key),
                    "unknown key",
                    key,
                    ", ".join(keys),
                    "remove it or correct its spelling",
                    did_you_mean(key, keys),
                )
        for key in required:
            if key not in value:
                raise self.error(join_path(path, key), "required key is missing", fix=f"add {key}:")

    def choice(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.error(
                path, "unknown value", value, ", ".join(allowed), "pick one",
                did_you_mean(value, allowed),
            )
        return value

    def integer(self, value: Any, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(path, "invalid value", value, f"an integer >= {minimum}", "correct it")
        return value

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(path, "not a number", value, "a finite number", "correct it")
        if not math.isfinite(value):
            raise self.error(path, "not finite", value, "a finite number", "correct it")
        return value


def join_path(path: str, key: str) -> str:
    """``a.b`` + ``c`` -> ``a.b.c``; the top level has the empty path."""
    return f"{path}.{key}" if path else key
