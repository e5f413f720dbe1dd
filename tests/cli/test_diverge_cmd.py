"""``hpo diverge``'s handler on a made-up result (no training): the no-kink line and safe
output file names."""

from __future__ import annotations

import argparse
import json
import types

import pytest

from hpo.analysis import diverge
from hpo.analysis.diverge import DivergenceResult, RunRecord
from hpo.analysis.hints import no_kink_line
from hpo.cli import diverge_cmd
from hpo.engine.spec import TrainSpec


def _result(hits: int) -> DivergenceResult:
    spec = TrainSpec(model="fc", depth=1, width=16, epochs=1)
    runs = [RunRecord(role, "bfloat16", alpha, n, [n], 1, False, None, [0.5], "x")
            for role, alpha, n in (("reference", 0.0, 0), ("control", 0.0, 0),
                                   ("alpha", 1.0, hits))]
    l1 = 0.0 if hits == 0 else 3.5
    return DivergenceResult(
        spec=spec, alphas=(1.0,), precisions=("bfloat16",), epochs=[0, 1],
        l1={"bfloat16": {"1": [0.0, l1]}}, control_l1={"bfloat16": [0.0, 0.0]},
        reference_l1_norm={"bfloat16": [1.0, 1.0]}, n_params=42, runs=runs,
    )


def _run(monkeypatch, tmp_path, hits: int, *flags: str) -> None:
    result = _result(hits)
    monkeypatch.setattr(diverge, "run_divergence", lambda spec, **kw: result)
    # A model named module:function (whose file name would carry the colon).
    fake_spec = types.SimpleNamespace(model="mynet:build", dataset="mnist", seed=0)
    monkeypatch.setattr(diverge_cmd, "spec_from_args", lambda args: fake_spec)
    parser = argparse.ArgumentParser(prog="hpo")
    diverge_cmd.Diverge().register(parser.add_subparsers(dest="command"), "diverge")
    args = parser.parse_args(["diverge", "--alphas", "1", "--output", str(tmp_path), *flags])
    assert args.handler(args) == 0


@pytest.mark.parametrize("as_json", [False, True])
def test_no_kink_hit_anywhere_is_said_in_one_line(monkeypatch, tmp_path, capsys, as_json):
    _run(monkeypatch, tmp_path, 0, *(["--json"] if as_json else []))
    out = capsys.readouterr().out
    expected = no_kink_line("these 3 runs")
    if as_json:
        assert json.loads(out)["no_kink"] == expected
    else:
        assert out.count("No kink hit") == 1 and expected in out.splitlines()


def test_a_kink_hit_prints_no_such_line_and_files_have_no_colon(monkeypatch, tmp_path, capsys):
    _run(monkeypatch, tmp_path, 2, "--json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["no_kink"] is None
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["diverge_mynet_build_mnist_seed0.html", "diverge_mynet_build_mnist_seed0.json"]
    assert json.loads((tmp_path / names[1]).read_text())["no_kink"] is None
