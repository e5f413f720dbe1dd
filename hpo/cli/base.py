"""What every ``hpo`` command shares: the command class and the argument types.

A command is a :class:`Command` subclass, as in Optuna's own CLI: ``add_arguments`` declares
its flags, ``take_action`` parses what argparse could not and makes one call of the layer
below (:mod:`hpo.worker.local`, :mod:`hpo.analysis.api`), then prints. The table of commands
is :data:`hpo.cli.commands.COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import ClassVar

__all__ = [
    "STORAGE_HELP",
    "add_run_arguments",
    "emit",
    "Command",
    "int_arg",
    "non_negative_float",
    "non_negative_int",
    "positive_int",
]

STORAGE_HELP = (
    "study storage URL (default: $HPO_STORAGE, the study file's storage:, or the project's "
    "storage/hpo.db), e.g. postgresql://user@host:5432/db (psycopg2)"
)


class Command:
    """One sub-command: its flags (:meth:`add_arguments`) and its action (:meth:`take_action`)."""

    help: ClassVar[str] = ""
    description: ClassVar[str | None] = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's flags and positional arguments on ``parser``."""

    def take_action(self, args: argparse.Namespace) -> int:
        """Run the command; return its exit code."""
        raise NotImplementedError

    def register(self, sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
        """Add the command as ``name`` to ``sub``, the ``hpo`` parser's sub-commands."""
        parser = sub.add_parser(name, help=self.help, description=self.description)
        self.add_arguments(parser)
        parser.set_defaults(handler=self.take_action)
        return parser



def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every command that runs the engine shares: data folder, threads, JSON."""
    parser.add_argument("--data-dir", metavar="DIR", help="folder with the dataset files in "
                        "torchvision's layout (default: $HPO_DATA_DIR)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def emit(payload: dict, as_json: bool, human: Callable[[], None]) -> int:
    """Print ``payload`` as one JSON line, or call ``human`` to print it for people."""
    if as_json:
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    else:
        human()
    return 0


def int_arg(text: str) -> int:
    """An integer flag value."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer flag value >= 1."""
    value = int_arg(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def non_negative_int(text: str) -> int:
    """An integer flag value >= 0."""
    value = int_arg(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def non_negative_float(text: str) -> float:
    """A number flag value >= 0 (not NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value
