"""The ``hpo`` command line: parse, delegate, and map errors to exit codes.

Shaped like Optuna's CLI: one :class:`~hpo.cli.base.Command` class per sub-command, listed
in :data:`hpo.cli.commands.COMMANDS`; its ``take_action`` parses, makes one call of the
Python API's layer (:mod:`hpo.worker.local`, :mod:`hpo.analysis.api`, the engine) and
prints. No training or study logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from hpo.errors import HpoError

__all__ = ["build_parser", "main"]

log = logging.getLogger("hpo")


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad flags already; make the message one readable line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"hpo: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``hpo`` parser with every command of :data:`hpo.cli.commands.COMMANDS`."""
    from hpo.cli import commands

    parser = _Parser(
        prog="hpo",
        description="Treat ReLU'(0) as a hyperparameter: train, run studies, compare.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logs on errors"
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, command in commands.COMMANDS.items():
        command().register(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hpo`` with ``argv`` (default: the process's); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe must fail here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`hpo status | head`): not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except HpoError as exc:
        if args.debug:
            raise
        print(f"hpo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
