"""``hpo probe`` end to end as a subprocess: the JSON result carries the platform record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = os.environ.get("HPO_DATA_DIR")


def _probe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HPO_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "hpo", "probe", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not DATA, reason="HPO_DATA_DIR is not set")
def test_json_carries_the_platform_record(tmp_path):
    proc = _probe(tmp_path, "--depth", "1", "--width", "16", "--train-subset", "256",
                  "--batch-size", "64", "--inits", "2", "--threads", "1",
                  "--reduced-precision-reduction", "on", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["spec"]["reduced_precision_reduction"] == "on"
    platform = result["platform"]
    assert platform["num_threads"] == 1 and platform["device"] == "cpu"
    assert platform["cpu_capability"] and platform["torch"] == result["torch_version"]
    assert platform["flags"]["fp16_reduced_precision_reduction"] is True
    assert platform["flags"]["cuda_matmul_allow_tf32"] is False


def test_tf32_on_a_cpu_exits_2_in_one_line(tmp_path):
    proc = _probe(tmp_path, "--precision", "tf32", "--inits", "2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "precision 'tf32' needs a CUDA device" in proc.stderr


def test_probe_flags_are_the_specs_minus_training_and_share_its_help():
    import argparse

    from hpo.cli import probe_cmd
    from hpo.engine.spec import FIELDS

    parser = argparse.ArgumentParser(prog="hpo")
    probe_cmd.Probe().register(parser.add_subparsers(dest="command"), "probe")
    probe = parser._subparsers._group_actions[0].choices["probe"]
    flags = {a.dest: a for a in probe._actions}
    for row in FIELDS:
        expected = not row.meta["training"] and row.name != "relu_prime_zero"
        assert (row.name in flags) == expected, row.name
    assert flags["seed"].help.startswith(FIELDS[[r.name for r in FIELDS].index("seed")]
                                         .meta["help"])
    assert flags["depth"].default is None  # given or not: the model resolves it


def test_probe_refuses_a_setting_the_model_does_not_read(tmp_path):
    proc = _probe(tmp_path, "--model", "resnet18", "--width", "64", "--inits", "2")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "width=64 is not read by model 'resnet18'" in proc.stderr


@pytest.mark.parametrize("kinked", [0, 3])
def test_no_kink_line_when_no_batch_had_an_input_on_a_kink(monkeypatch, capsys, kinked):
    import argparse

    from hpo.analysis.hints import no_kink_line
    from hpo.cli import probe_cmd
    from hpo.engine.probe import bifurcation

    def fake(spec, **kw):
        return bifurcation.ProbeResult(
            spec=spec.to_dict(), inits=2, alphas=(0.0, 1.0), compare="first",
            method="batched", train_samples=128, batches_per_epoch=2, batches_examined=4,
            kinked_batches=kinked, init_seeds=[0, 1], samples_to_bifurcation=[None, None])

    monkeypatch.setattr(bifurcation, "run_probe", fake)
    parser = argparse.ArgumentParser(prog="hpo")
    probe_cmd.Probe().register(parser.add_subparsers(dest="command"), "probe")
    for flags in ([], ["--json"]):
        args = parser.parse_args(["probe", "--inits", "2", *flags])
        assert args.handler(args) == 0
        out = capsys.readouterr().out
        line = no_kink_line("the 4 mini-batches examined")
        if flags:
            assert json.loads(out)["no_kink"] == (line if kinked == 0 else None)
        else:
            assert (line in out.splitlines()) == (kinked == 0)
