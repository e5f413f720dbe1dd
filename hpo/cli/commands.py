"""The table of ``hpo`` commands, in the order ``hpo --help`` shows them (as Optuna's CLI).

Each entry is a :class:`~hpo.cli.base.Command` class: its flags and one call of the layer
below (``train``, ``probe`` and ``diverge`` generate their flags from TrainSpec).
"""

from __future__ import annotations

from hpo.cli.base import Command
from hpo.cli.compare_cmd import Compare
from hpo.cli.diverge_cmd import Diverge
from hpo.cli.probe_cmd import Probe
from hpo.cli.reproduce_cmd import Reproduce
from hpo.cli.study_cmds import Create, Dashboard, Export, Run, Status, Worker
from hpo.cli.train_cmd import Train

__all__ = ["COMMANDS"]

COMMANDS: dict[str, type[Command]] = {
    "train": Train,
    "create": Create,
    "worker": Worker,
    "run": Run,
    "status": Status,
    "export": Export,
    "dashboard": Dashboard,
    "compare": Compare,
    "probe": Probe,
    "diverge": Diverge,
    "reproduce": Reproduce,
}
