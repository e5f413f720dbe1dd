"""``hpo dashboard`` in a real browser: headless Chromium, driven by Playwright, reads a study.

The study's trials are run by the real worker with a fake training function (no data, no
torch work), so the user attributes are exactly those the objective records. Then
``python -m hpo compare CONFIG`` draws its charts on the study page, saves its verdicts as the
study's note and its HTML report as a study artifact, and the dashboard runs as
``python -m hpo dashboard CONFIG`` on a free port bound to 127.0.0.1, serving the same
artifact folder; a second ``hpo compare`` leaves as many charts and artifacts.

Needs Playwright (``pip install -e ".[test]"``) and Debian's Chromium at /usr/bin/chromium
(Playwright's own browser download is not used). Skipped when either is missing, unless the
environment variable CI is set: then it fails, so CI can never pass without running it.
Screenshots of the study page and the trial page are saved in the test's tmp dir and copied
to ``$HPO_SCREENSHOT_DIR`` when that is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from hpo.analysis.publish import IMPORTANCE_PANEL_LINE
from hpo.analysis.report import GRAPH_IDS
from hpo.config.study import load_study_config
from hpo.engine.result import TrainResult
from hpo.storage.rdb import make_storage
from hpo.study.create import create_study
from hpo.worker.pool import open_worker

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# No network, no first-run or update traffic: the browser only talks to the dashboard.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
UI_TIMEOUT_MS = 20_000  # generous: the machine's CPUs are shared

NAME = "browser-demo"
STUDY = """\
name: {name}
storage: {storage}
n_trials: 2
sampler: {{name: random, seed: 0}}
pruner: {{name: none}}
train:
  model: fc
  depth: 1
  width: 16
  train_subset: 500
  val_size: 500
  epochs: 2
search_space:
  relu_prime_zero: {{type: float, low: 0.0, high: 1.0}}
baseline:
  seeds: 1
"""
# (test_accuracy, kink_hits) of the runs in the order the single worker trains them:
# trial 0 is the baseline (ReLU'(0)=0), trials 1-2 are search trials (both paired with it:
# a fixed baseline with their seed). Each run has its own params_sha256.
RESULTS = [(0.9688, 40), (0.9731, 42), (0.9555, 19)]
VERDICT = "insufficient evidence: only 1 default runs (2 pairs)"


class FakeTrain:
    """Stands in for hpo.engine.train.train; returns the next of RESULTS."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spec, *, data_dir=None, on_epoch_end=None) -> TrainResult:
        test_accuracy, hits = RESULTS[self.calls]
        self.calls += 1
        return TrainResult(
            val_accuracy=[0.9, test_accuracy - 0.001], train_loss=[0.5, 0.3],
            test_accuracy=test_accuracy, kink_hits=hits,
            kink_hits_per_epoch=[hits // 2, hits - hits // 2], configured_activations=1,
            epochs_completed=2, params_sha256=f"{self.calls:02x}" * 32, device="cpu",
            precision=spec.precision, torch_version="fake", wall_time_s=0.5,
            samples_per_second=1000.0,
        )


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return 'Playwright is not installed (fix: pip install -e ".[test]")'
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (fix: apt-get install chromium)"
    return None


@pytest.fixture
def page(tmp_path):
    """A fresh page in headless Chromium; skipped (or failed under CI) without a browser."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the browser test may not be skipped")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture
def study_config(tmp_path) -> Path:
    """A study file whose 3 trials (1 baseline + 2 search) are finished."""
    config = tmp_path / "study.yaml"
    config.write_text(STUDY.format(name=NAME, storage=f"sqlite:///{tmp_path}/study.db"))
    cfg = load_study_config(config)
    create_study(cfg, make_storage(cfg.storage))
    fake = FakeTrain()
    stats = open_worker(NAME, cfg.storage, worker_index=0, train_fn=fake,
                        poll_interval=0.1).run(handle_signals=False)
    assert (stats.completed, fake.calls) == (len(RESULTS), len(RESULTS))
    return config


def _hpo(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "HPO_ARTIFACT_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "hpo", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _compare(config: Path, tmp_path: Path) -> str:
    """``hpo compare CONFIG``: charts, note and report artifact (artifacts/ beside study.db)."""
    done = _hpo("compare", str(config), "--output", str(tmp_path / "results"),
                "--resamples", "200", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"in {tmp_path / 'artifacts'}/" in done.stdout, done.stdout
    return done.stdout


@pytest.fixture
def compared(study_config, tmp_path) -> Path:
    """The study after one ``hpo compare``."""
    assert "(new) in" in _compare(study_config, tmp_path)
    return study_config


@pytest.fixture
def dashboard(compared, tmp_path):
    """``hpo dashboard CONFIG`` on a free port; yields its base URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}  # the file's storage
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    log = tmp_path / "dashboard.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpo", "dashboard", str(compared), "--host",
             "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        announced = proc.stdout.readline()
        assert f"{base}/" in announced, (announced, log.read_text())
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/api/meta", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# `page` first: without a browser the test skips before building the study.
def test_dashboard_shows_the_study_and_trial_attributes(
    page, dashboard, study_config, tmp_path
) -> None:
    from playwright.sync_api import expect

    def visible(locator) -> None:
        expect(locator).to_be_visible(timeout=UI_TIMEOUT_MS)

    # Study list: one card per study, a link holding the heading "<id>. <name>".
    page.goto(dashboard + "/")
    heading = page.get_by_role("heading", name=re.compile(rf"^\d+\. {re.escape(NAME)}$"))
    card = page.get_by_role("link").filter(has=heading)
    visible(card)
    visible(card.get_by_text("Direction: MAXIMIZE", exact=True))
    card.click()
    expect(page).to_have_url(re.compile(r"/dashboard/studies/\d+$"), timeout=UI_TIMEOUT_MS)
    visible(page.get_by_text(re.compile(rf"^{re.escape(NAME)} \(id=\d+\)$")))  # app bar
    study_id = int(page.url.rsplit("/", 1)[1])

    # hpo compare's charts are drawn on the study page under their ids: plotly rendered them.
    charts = page.locator('[id^="user-defined-plot:"]')
    expect(charts).to_have_count(len(GRAPH_IDS), timeout=UI_TIMEOUT_MS)
    paired = page.locator(f'[id="user-defined-plot:{GRAPH_IDS[0]}"]')
    visible(paired.locator(".main-svg").first)
    visible(paired.get_by_text("Paired difference, tuned minus default", exact=False).first)
    kinks = page.locator(f'[id="user-defined-plot:{GRAPH_IDS[1]}"]')
    visible(kinks.get_by_text("Kink hits per trial", exact=False).first)

    # The objective carries the metric's name, and hpo compare's report is a study artifact
    # that the dashboard serves byte for byte.
    visible(page.get_by_text("val_accuracy", exact=True).first)
    assert page.get_by_text("Objective 0").count() == 0
    visible(page.get_by_text("Study Artifacts", exact=True))
    visible(page.get_by_text(f"compare_{NAME}.html", exact=True))
    storage = make_storage(load_study_config(study_config).storage)
    study = optuna.load_study(study_name=NAME, storage=storage)
    (meta,) = optuna.artifacts.get_all_artifact_meta(study)
    served = page.request.get(f"{dashboard}/artifacts/{study_id}/{meta.artifact_id}")
    assert served.ok
    assert served.body() == (tmp_path / "results" / f"compare_{NAME}.html").read_bytes()

    # hpo compare's verdicts are the study's note, the verdict first.
    page.get_by_role("link", name="Note").click()
    visible(page.get_by_role("heading", name=f"hpo compare: {NAME}"))
    visible(page.get_by_text(re.compile(re.escape(VERDICT))).first)
    visible(page.get_by_text(re.compile(r"2 pairs, 0 bitwise identical \(same params_sha256\)")))
    visible(page.get_by_text(re.compile(re.escape(f"study artifact compare_{NAME}.html (id "
                                                  f"{meta.artifact_id})"))))
    visible(page.get_by_text(IMPORTANCE_PANEL_LINE.split(" (")[0], exact=False))

    # A second hpo compare replaces the charts, the note and the report: nothing piles up.
    assert f"{meta.artifact_id} (replaced) in" in _compare(study_config, tmp_path)
    assert optuna.artifacts.get_all_artifact_meta(study) == [meta]
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == [meta.artifact_id]
    page.get_by_role("link", name="History").click()
    page.reload()
    expect(charts).to_have_count(len(GRAPH_IDS), timeout=UI_TIMEOUT_MS)
    visible(paired.get_by_text("Paired difference, tuned minus default", exact=False).first)
    visible(page.get_by_text(f"compare_{NAME}.html", exact=True))
    assert page.get_by_text(f"compare_{NAME}.html", exact=True).count() == 1
    shot = tmp_path / "dashboard_study.png"
    page.screenshot(path=str(shot), full_page=True)

    # Trial list: the count above the list, one button per trial.
    page.get_by_role("link", name="Trials (List)").click()
    visible(page.get_by_text(f"{len(RESULTS)} Trials", exact=True))
    trials = page.get_by_role("button", name=re.compile(r"^Trial \d+"))
    expect(trials).to_have_count(len(RESULTS), timeout=UI_TIMEOUT_MS)

    # The first trial is selected: the baseline, with its recorded attributes.
    visible(page.get_by_role("heading", name=re.compile(r"^Trial 0 \(trial_id=\d+\)$")))
    for text in ("hpo_baseline True", "relu_prime_zero 0.0",
                 f"test_accuracy {RESULTS[0][0]}", f"kink_hits {RESULTS[0][1]}"):
        visible(page.get_by_text(text, exact=True))

    # A search trial: its own parameter and attributes.
    page.get_by_role("button", name=re.compile(r"^Trial 1\b")).click()
    visible(page.get_by_role("heading", name=re.compile(r"^Trial 1 \(trial_id=\d+\)$")))
    test_accuracy = page.get_by_text(f"test_accuracy {RESULTS[1][0]}", exact=True)
    for locator in (page.get_by_text("hpo_baseline False", exact=True),
                    page.get_by_text(re.compile(r"^relu_prime_zero 0\.\d+$")),
                    page.get_by_text(f"kink_hits {RESULTS[1][1]}", exact=True),
                    test_accuracy):
        visible(locator)
    assert page.get_by_text(f"test_accuracy {RESULTS[0][0]}", exact=True).count() == 0

    # The attribute box scrolls (150 px); bring test_accuracy to its bottom edge so the
    # screenshot shows it together with kink_hits a few lines above.
    test_accuracy.evaluate("e => e.scrollIntoView({block: 'nearest'})")
    trial_shot = tmp_path / "dashboard_trial.png"
    page.screenshot(path=str(trial_shot), full_page=True)
    for done in (shot, trial_shot):
        assert done.stat().st_size > 0
        if os.environ.get("HPO_SCREENSHOT_DIR"):
            target = Path(os.environ["HPO_SCREENSHOT_DIR"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(done, target / done.name)
