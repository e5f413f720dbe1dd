"""The table of ``hpo`` commands, in the order ``hpo --help`` shows them (as Optuna's CLI).

Each entry is a :class:`~hpo.cli.base.Command` class: its flags and one call of the layer
below. ``train``, ``probe`` and ``diverge`` add themselves (their flags come from TrainSpec).
"""

from __future__ import annotations

from hpo.cli import diverge_cmd, probe_cmd, train_cmd
from hpo.cli.base import Command, RegisteredCommand
from hpo.cli.compare_cmd import Compare
from hpo.cli.reproduce_cmd import Reproduce
from hpo.cli.study_cmds import Create, Dashboard, Export, Run, Status, Worker

__all__ = ["COMMANDS"]


class _Train(RegisteredCommand):
    module = train_cmd


class _Probe(RegisteredCommand):
    module = probe_cmd


class _Diverge(RegisteredCommand):
    module = diverge_cmd


COMMANDS: dict[str, type[Command]] = {
    "train": _Train,
    "create": Create,
    "worker": Worker,
    "run": Run,
    "status": Status,
    "export": Export,
    "dashboard": Dashboard,
    "compare": Compare,
    "probe": _Probe,
    "diverge": _Diverge,
    "reproduce": Reproduce,
}
