from __future__ import annotations

import argparse
import json
import math
import os
import re

import pytest
import torch

from hpo.analysis.diverge import (
    DivergenceResult,
    alpha_key,
    alpha_notes,
    l1_distance,
    plot_divergence,
    run_divergence,
    validate_alphas,
)
from hpo.cli import diverge_cmd
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError

needs_data = pytest.mark.skipif(
    not os.environ.get("HPO_DATA_DIR"), reason="needs the MNIST files (set HPO_DATA_DIR)"
)

TINY = dict(model="fc", depth=1, width=16, train_subset=512, val_size=256, batch_size=64)


# --- the distance ---------------------------------------------------------------------
def test_l1_is_elementwise_not_a_difference_of_sums():
    a = [torch.tensor([1.0, -1.0, 3.0]), torch.tensor([[2.0, 5.0]])]
    b = [torch.tensor([-1.0, 1.0, 3.0]), torch.tensor([[5.0, 2.0]])]
    assert sum(t.sum() for t in a) == sum(t.sum() for t in b)  # equal sums...
    assert l1_distance(a, b) == 2 + 2 + 0 + 3 + 3  # ...yet 10 apart
    assert l1_distance(a, a) == 0.0


def test_l1_uses_the_exact_values_in_float64():
    # One bfloat16 ulp at 1 is 2**-7; many float32 ulps at 2**24 must not be lost either.
    x = torch.tensor([1.0], dtype=torch.bfloat16)
    y = torch.tensor([1.0 + 2**-7], dtype=torch.bfloat16)
    assert l1_distance([x], [y]) == 2**-7
    big = torch.full((1000,), 2.0**24, dtype=torch.float32)
    assert l1_distance([big], [big + 2]) == 2000.0
    tiny = torch.full((10_000,), 1e-30, dtype=torch.float32)
    assert math.isclose(l1_distance([tiny], [torch.zeros_like(tiny)]),
                        10_000 * float(tiny[0]), rel_tol=1e-12)


def test_l1_rejects_mismatched_parameters():
    with pytest.raises(ValueError, match="shape"):
        l1_distance([torch.zeros(2)], [torch.zeros(3)])
    with pytest.raises(ValueError, match="1 tensors with 2"):
        l1_distance([torch.zeros(2)], [torch.zeros(2), torch.zeros(1)])


# --- inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.5"])
def test_bad_alphas_are_config_errors_naming_the_value(bad):
    with pytest.raises(ConfigError, match=re.escape(repr(bad)) + r".*finite number"):
        validate_alphas([0.5, bad])


def test_any_finite_alpha_is_accepted_and_one_outside_0_1_is_noted():
    # the published experiments use -0.5 to 50: as hpo train --relu-prime-zero, never refused
    assert validate_alphas([-0.5, 0, 2, 50]) == (-0.5, 0.0, 2.0, 50.0)
    notes = alpha_notes(TrainSpec(**TINY), [-0.5, 0, 0.5, 1, 2])
    assert len(notes) == 2
    assert notes[0].startswith("relu_prime_zero=-0.5 is outside [0, 1]")
    assert "not a subgradient of relu at 0" in notes[1] and "\n" not in notes[1]
    leaky = TrainSpec(**TINY, activation="leaky_relu", negative_slope=0.2)
    assert alpha_notes(leaky, [0.2, 0.6, 1]) == []
    assert "outside [0.2, 1]" in alpha_notes(leaky, [0.1])[0]


def test_alphas_must_be_given_once_and_at_least_one():
    assert validate_alphas([0, 0.5, 1]) == (0.0, 0.5, 1.0)
    with pytest.raises(ConfigError, match="at least one"):
        validate_alphas([])
    with pytest.raises(ConfigError, match="twice"):
        validate_alphas([1, 1.0])


def test_alpha_keys_are_short_and_round_trip():
    assert [alpha_key(a) for a in (0, 1, 0.5, 1.0)] == ["0", "1", "0.5", "1"]
    assert float(alpha_key(0.1234567891)) == 0.1234567891


def test_bad_inputs_fail_before_any_training(tmp_path):
    spec = TrainSpec(**TINY, epochs=1)
    with pytest.raises(ConfigError, match="float8"):
        run_divergence(spec, alphas=[1], precisions=["float32", "float8"], data_dir=tmp_path)
    with pytest.raises(ConfigError, match="twice"):
        run_divergence(spec, alphas=[1], precisions=["float32", "float32"], data_dir=tmp_path)
    with pytest.raises(ConfigError, match="nan"):
        run_divergence(spec, alphas=[float("nan")], data_dir=tmp_path)
    if not torch.cuda.is_available():  # float32 would train first, then tf32 fail: no
        with pytest.raises(ConfigError, match="precision 'tf32' needs a CUDA device"):
            run_divergence(spec.replace(device="auto"), alphas=[1.0],
                           precisions=["float32", "tf32"], data_dir=tmp_path)


# --- the experiment -------------------------------------------------------------------
@pytest.fixture(scope="module")
def result() -> DivergenceResult:
    if not os.environ.get("HPO_DATA_DIR"):
        pytest.skip("needs the MNIST files (set HPO_DATA_DIR)")
    torch.set_num_threads(1)
    # bfloat16 + batch norm hits kinks (see tests/engine/test_train.py); float32 here does not.
    spec = TrainSpec(**TINY, batch_norm=True, epochs=2)
    return run_divergence(spec, alphas=[0.5, 1], precisions=["float32", "bfloat16"])


@needs_data
def test_control_stays_exactly_zero_and_every_pair_starts_identical(result):
    assert result.epochs == [0, 1, 2]
    for p in ("float32", "bfloat16"):
        assert result.control_l1[p] == [0.0, 0.0, 0.0]
        for key in ("0.5", "1"):
            assert len(result.l1[p][key]) == 3
            assert result.l1[p][key][0] == 0.0
    assert result.n_params == (784 * 16 + 16) + 2 * 16 + (16 * 10 + 10)


@needs_data
def test_kinks_make_the_weights_diverge_in_bfloat16(result):
    hits = result.kink_hits()["bfloat16"]
    assert hits["reference"] > 0 and hits["1"] > 0
    assert result.l1["bfloat16"]["1"][-1] > 0
    # The reference's own size, to read the L1 against, is that of real weights.
    assert all(n > 0 for n in result.reference_l1_norm["bfloat16"])


@needs_data
def test_l1_agrees_with_the_engines_fingerprints(result):
    for p in result.precisions:
        runs = [r for r in result.runs if r.precision == p]
        ref = next(r for r in runs if r.role == "reference")
        for run in (r for r in runs if r.role == "alpha"):
            last = result.l1[p][alpha_key(run.relu_prime_zero)][-1]
            if last > 0:
                assert run.params_sha256 != ref.params_sha256
            if run.params_sha256 == ref.params_sha256:
                assert last == 0.0
            if run.kink_hits == 0 and ref.kink_hits == 0:
                # No kink hit: ReLU'(0) was never used, so nothing can differ.
                assert result.l1[p][alpha_key(run.relu_prime_zero)] == [0.0, 0.0, 0.0]


@needs_data
def test_to_dict_is_json_with_a_precision_level_when_several(result):
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(d["l1"]) == {"0.5", "1"}
    assert d["l1"]["1"]["bfloat16"] == result.l1["bfloat16"]["1"]
    assert d["control_l1"]["float32"] == [0.0, 0.0, 0.0]
    assert d["l1_by_precision"]["bfloat16"]["0.5"] == result.l1["bfloat16"]["0.5"]
    assert d["kink_hits"]["bfloat16"]["control"] == result.kink_hits()["bfloat16"]["control"]
    assert len(d["runs"]) == 2 * 4 and d["settings"]["batch_norm"] is True
    # Each precision's reference run carries its platform record, read inside its flags.
    assert d["platform"] == d["platform_by_precision"]["float32"]
    for p in ("float32", "bfloat16"):
        record = d["platform_by_precision"][p]
        assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert record["flags"]["cuda_matmul_allow_tf32"] is False
        assert record["flags"]["deterministic_algorithms"] is True


# --- the plot -------------------------------------------------------------------------
def _fake_result(precisions=("float32",)) -> DivergenceResult:
    spec = TrainSpec(**TINY, epochs=2)
    l1 = {p: {"0.5": [0.0, 0.123456789, 4.5], "1": [0.0, 0.0, None]} for p in precisions}
    return DivergenceResult(
        spec=spec, alphas=(0.5, 1.0), precisions=tuple(precisions), epochs=[0, 1, 2], l1=l1,
        control_l1={p: [0.0, 0.0, 0.0] for p in precisions},
        reference_l1_norm={p: [10.0, 11.0, 12.0] for p in precisions}, n_params=42,
    )


def test_plot_is_self_contained_log_scaled_html_with_the_data(tmp_path):
    path = plot_divergence(_fake_result(("float32", "bfloat16")), tmp_path / "sub" / "d.html")
    html = path.read_text(encoding="utf-8")
    assert "<html" in html[:200] and html.rstrip().endswith("</html>")
    # plotly.js inlined: no script is fetched from anywhere (the bundle itself mentions URLs
    # of optional map assets, which a line plot never loads).
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert "Plotly.newPlot" in html and len(html) > 1_000_000
    assert '"type":"log"' in html.replace(" ", "")
    data = re.search(r'<script type="application/json" id="divergence-data">(.*?)</script>',
                     html, re.S)
    payload = json.loads(data.group(1))
    assert payload["l1"]["0.5"]["bfloat16"] == [0.0, 0.123456789, 4.5]
    assert payload["control_l1"]["float32"] == [0.0, 0.0, 0.0]
    assert "alpha=0.5 bfloat16" in html and "control (0) float32" in html


# --- the CLI handler ------------------------------------------------------------------
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hpo")
    diverge_cmd.Diverge().register(parser.add_subparsers(dest="command"), "diverge")
    return parser.parse_args(argv)


def test_cli_rejects_bad_alphas_before_training(tmp_path):
    args = _parse(["diverge", "--alphas", "0.5", "nan", "--output", str(tmp_path)])
    with pytest.raises(ConfigError, match="nan"):
        args.handler(args)
    assert not list(tmp_path.iterdir())


@needs_data
def test_cli_prints_one_json_object_and_writes_the_plot(tmp_path, capsys):
    torch.set_num_threads(1)
    argv = ["diverge", "--model", "fc", "--depth", "1", "--width", "16", "--dataset", "mnist",
            "--precision", "bfloat16", "--batch-norm", "--epochs", "1", "--alphas", "0.5", "1",
            "--train-subset", "512", "--val-size", "256", "--batch-size", "64", "--seed", "0",
            "--output", str(tmp_path / "out"), "--json"]
    args = _parse(argv)
    assert args.handler(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["l1"]) == {"0.5", "1"}
    assert all(len(v) == 2 and v[0] == 0.0 for v in payload["l1"].values())
    assert payload["control_l1"] == [0.0, 0.0]
    assert set(payload["kink_hits"]["bfloat16"]) == {"reference", "control", "0.5", "1"}
    assert payload["settings"]["depth"] == 1 and payload["settings"]["precision"] == "bfloat16"
    assert "relu_prime_zero" not in payload["settings"]
    assert "width_mult" not in payload["settings"] and payload["settings"]["channels"] == 1
    assert payload["notes"] == []
    assert payload["platform"]["num_threads"] == 1
    assert payload["platform_by_precision"]["bfloat16"] == payload["platform"]
    assert os.path.isfile(payload["plot"]) and payload["plot"].endswith(".html")
    with open(payload["json"], encoding="utf-8") as f:
        assert json.load(f)["l1"] == payload["l1"]
