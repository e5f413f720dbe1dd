"""Workers killed outright (SIGKILL) in the middle of a trial.

The killed worker's trial stops beating; after the heartbeat grace period another worker's
stale check fails it and re-queues it with the same parameters. The study still ends with
exactly its budget of finished trials, nothing stays RUNNING, and no baseline or twin runs
twice. Run with ``-s`` to see the figures (time from the kill to the trial being failed and
to its re-run).
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.study import HeartbeatConfig
from hpo.storage.rdb import make_storage
from hpo.study.budget import BUDGET_ATTR
from hpo.study.requeue import StaleTrialRequeue
from hpo.worker.loop import Worker
from tests.faults.harness import PG_URL, kill_scenario

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

# (backend, baseline mode): fixed baselines on SQLite, paired twins on PostgreSQL (on SQLite
# too when no server is configured), so both kinds of enqueued trial face the kills.
SCENARIOS = [("sqlite", "fixed"), ("postgresql" if PG_URL else "sqlite", "paired")]


@pytest.mark.parametrize(("backend", "mode"), SCENARIOS, ids=[f"{b}-{m}" for b, m in SCENARIOS])
def test_random_kills_lose_nothing_and_duplicate_nothing(backend, mode, tmp_path: Path) -> None:
    url = PG_URL if backend == "postgresql" else f"sqlite:///{tmp_path / 'studies.db'}"
    paired = mode == "paired"
    seed = int(os.environ.get("HPO_FAULT_SEED", "0"))
    figures = kill_scenario(url, tmp_path, workers=3, kills=3, seed=seed, trial_s=1.0,
                            n_trials=7 if paired else 12, seeds=0 if paired else 2,
                            paired=paired)
    # kill_scenario has checked the study: exact budget, nothing RUNNING or WAITING, each
    # baseline seed once, one twin per tuned lineage, one same-parameter copy per lost trial.
    print(f"\n[{backend}, {mode}] {len(figures['kills'])} kills (seed {seed}) in "
          f"{figures['elapsed_s']:.1f} s; budget {figures['budget']}, "
          f"{figures['finished']} finished, {figures['lost']} lost and re-run, "
          f"{figures['discarded']} discarded asks; {figures['trials_per_s']:.2f} trials/s")
    for kill in figures["kills"]:
        if kill["lost_trial"] is None:
            print(f"  kill at {kill['t']:.1f} s of pid {kill['pid']}: between two trials")
            continue
        print(f"  kill at {kill['t']:.1f} s of pid {kill['pid']} in trial "
              f"{kill.get('lost_trial')}: failed after {kill.get('failed_after_s', 0):.1f} s, "
              f"copy {kill.get('rerun')} started after "
              f"{kill.get('rerun_started_after_s', 0):.1f} s ({kill.get('rerun_state')})")
    assert len(figures["kills"]) == 3
    assert all(code == 0 for code in figures["exit_codes"]), figures["exit_codes"]
    assert figures["tracebacks"] == 0
    for kill in figures["kills"]:  # each landed in a run (the runs were held until the last)
        assert kill["run"] is not None and kill["lost_trial"] is not None, kill
        assert kill["rerun_state"] in ("COMPLETE", "PRUNED"), kill
    assert figures["lost"] >= len(figures["kills"])


def test_trial_killed_before_its_first_heartbeat_is_failed_and_rerun(tmp_path: Path) -> None:
    """The few milliseconds between creating a trial and its first heartbeat: Optuna's own
    stale check skips a trial without any heartbeat, which would hold a budget slot forever."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = make_storage(url, HeartbeatConfig(interval=1, grace=1),
                           stale_trial_callback=StaleTrialRequeue(max_retry=3))
    study = optuna.create_study(study_name="orphan", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr(BUDGET_ATTR, 2)
    orphan = study.ask()  # its worker "dies" here: no heartbeat was ever recorded
    orphan.suggest_float("x", 0.0, 1.0)
    worker = Worker(study, lambda t: t.suggest_float("x", 0.0, 1.0), storage=storage,
                    poll_interval=0.2)
    stats = worker.run(handle_signals=False)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    copies = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert [t.state for t in copies] == [TrialState.COMPLETE]
    assert copies[0].params == trials[0].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert stats.completed == 2 and stats.discarded == 0  # waited for the orphan: no overshoot
