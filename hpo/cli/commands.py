"""The list of sub-command modules, in the order ``hpo --help`` shows them."""

from __future__ import annotations

from hpo.cli import (
    compare_cmd,
    diverge_cmd,
    probe_cmd,
    reproduce_cmd,
    study_cmds,
    train_cmd,
)

MODULES = [train_cmd, study_cmds, compare_cmd, probe_cmd, diverge_cmd, reproduce_cmd]
