"""Runs that diverge (NaN/inf) or run out of memory: recorded with the reason, counted
against the budget (never retried: the same parameters fail the same way), and the worker
goes on with the next trial.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo.objective.attrs import trial_attrs
from hpo.worker.outcomes import OOM_ATTR, OOM_REASON_ATTR
from hpo.worker.pool import open_worker
from tests.faults._fake import FakeTrain
from tests.faults.harness import check_study, delete_study, new_study, trials

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture()
def study(storage_url: str, tmp_path: Path):
    """(url, name, budget): 4 search trials and 2 baseline seeds."""
    name, budget, _ = new_study(storage_url, tmp_path, n_trials=4, seeds=2)
    yield storage_url, name, budget
    if storage_url.startswith("postgresql"):
        delete_study(storage_url, name)


def _run(url: str, name: str, train) -> object:
    worker = open_worker(name, url, worker_index=0, train_fn=train, poll_interval=0.1)
    return worker.run(handle_signals=False)


@pytest.mark.parametrize("mode", ["nan", "nan-value"])
def test_diverged_runs_are_recorded_and_the_worker_goes_on(study, mode) -> None:
    url, name, budget = study
    stats = _run(url, name, FakeTrain(0.0, mode))
    ts = trials(url, name)
    check_study(ts, budget, seeds=2)
    assert (stats.pruned, stats.failed, stats.stopped_by) == (budget, 0, "budget")
    for t in ts:
        attrs = trial_attrs(t.user_attrs)
        assert t.state == TrialState.PRUNED and attrs["diverged"] is True
        reason = attrs["divergence_reason"]
        assert reason == ("train loss is nan at epoch 2" if mode == "nan"
                          else "the objective returned nan"), reason
    print(f"\n{mode}: {budget} diverged trials recorded as PRUNED; e.g. {reason!r}")


class _SometimesOutOfMemory(FakeTrain):
    """Baseline runs (PyTorch's ReLU'(0) = 0) run out of memory, tuned runs do not."""

    def __call__(self, spec, **kwargs):
        if not spec.relu_prime_zero:
            import torch

            self.calls += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB "
                                         "(GPU 0; 7.79 GiB total capacity)")
        return super().__call__(spec, **kwargs)


def test_out_of_memory_is_recorded_and_the_worker_goes_on(study) -> None:
    url, name, budget = study
    train = _SometimesOutOfMemory(0.0)
    stats = _run(url, name, train)
    ts = trials(url, name)
    check_study(ts, budget, seeds=2)
    oom = [t for t in ts if t.user_attrs.get(OOM_ATTR)]
    assert sorted(t.user_attrs["hpo_seed"] for t in oom) == [0, 1]  # the two baselines
    assert all(t.state == TrialState.PRUNED for t in oom)
    assert oom[0].user_attrs[OOM_REASON_ATTR].startswith(
        "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB")
    assert train.calls == budget  # nothing was retried
    assert (stats.completed, stats.pruned, stats.failed) == (budget - 2, 2, 0)
    print(f"\nout of memory: {len(oom)} trials PRUNED with {OOM_REASON_ATTR}="
          f"{oom[0].user_attrs[OOM_REASON_ATTR]!r}; {stats.completed} others completed")


def test_every_run_out_of_memory_does_not_stop_the_worker(study) -> None:
    """Three errors in a row stop a worker (a broken setup); out-of-memory runs do not: they
    are an outcome of their parameters, like divergence."""
    url, name, budget = study

    def cpu_oom(spec, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 68719476736 bytes.")

    stats = _run(url, name, cpu_oom)
    check_study(trials(url, name), budget, seeds=2)
    assert (stats.pruned, stats.failed, stats.stopped_by) == (budget, 0, "budget")
