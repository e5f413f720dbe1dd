"""hpo run --workers N on fewer GPUs: CUDA_VISIBLE_DEVICES assigned round-robin."""

from __future__ import annotations

import torch

from hpo.worker import pool
from hpo.worker.pool import WorkerPlan, plan_workers, visible_gpus


def _fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_more_workers_than_gpus_share_them_round_robin(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = visible_gpus()
    assert gpus == ["0", "1"]
    plans = plan_workers(5, cpus=10, gpus=gpus)
    assert [p.cuda_device for p in plans] == ["0", "1", "0", "1", "0"]
    assert all(p.threads == 2 for p in plans)


def test_round_robin_follows_the_visible_devices(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")
    plans = plan_workers(3, cpus=3, gpus=visible_gpus())
    assert [p.cuda_device for p in plans] == ["3", "5", "3"]


def test_no_gpu_no_assignment(monkeypatch):
    _fake_gpus(monkeypatch, 0)
    assert visible_gpus() == []
    assert plan_workers(2, cpus=2, gpus=visible_gpus()) == [WorkerPlan(0, 1), WorkerPlan(1, 1)]


def test_each_worker_environment_names_its_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    envs = [pool._worker_env("sqlite:///x.db", p) for p in plan_workers(4, cpus=4,
                                                                      gpus=["0", "1"])]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert all(e["OMP_NUM_THREADS"] == "1" for e in envs)
