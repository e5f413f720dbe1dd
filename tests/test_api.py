"""The Python API (``import hpo``): the README's "From Python" example as written, the names it
offers, a study given as a dict, and the CLI handlers calling the same functions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import hpo
from hpo.cli import main
from hpo.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("HPO_DATA_DIR")
needs_mnist = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "MNIST").exists(), reason="needs the MNIST files (HPO_DATA_DIR)"
)
DOC = {
    "name": "api-dict",
    "n_trials": 3,
    "sampler": {"name": "random", "seed": 0},
    "train": {"model": "fc", "depth": 1, "width": 16, "train_subset": 500, "val_size": 100},
    "search_space": {"relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0}},
    "baseline": {"seeds": 2},
}


def readme_example() -> str:
    """The first ```python block of the README's "## From Python" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## From Python\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README has no '## From Python' section"
    block = re.search(r"^```python\n(.*?)^```$", section.group(1), re.S | re.M)
    assert block, "the From Python section has no ```python block"
    return block.group(1)


@needs_mnist
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys) -> None:
    db = tmp_path / "api.db"
    monkeypatch.setenv("HPO_STORAGE", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)  # the workers' logs/ go here
    namespace: dict = {}
    exec(compile(readme_example(), "README.md#from-python", "exec"), namespace)  # noqa: S102

    run, result, trials = namespace["run"], namespace["result"], namespace["trials"]
    assert run.ok and run.exit_code == 0 and run.problems() == []
    assert run.final.finished == 4 and run.config.storage == f"sqlite:///{db}"
    assert sorted(p.name for p in (tmp_path / "logs" / "from-python").iterdir()) == [
        "worker-0.log", "worker-1.log"]
    assert capsys.readouterr().out.splitlines()[0] == "0 4"
    # 2 tuned trials and their 2 twins, real accuracies on MNIST
    assert len(trials) == 4 and set(trials["state"]) == {"COMPLETE"}
    assert trials["value"].between(0.2, 1.0).all()  # 2000 images, 1 epoch: far above 0.1
    assert sorted(trials["params_relu_prime_zero"] == 0.0) == [False, False, True, True]
    table = result.table
    assert len(table) == 1 and table.loc[0, "n_pairs"] == 2
    assert table.loc[0, "precision"] == "float32" and result.files == []
    assert result.published is None
    # Run again: the study is spent, nothing new runs (as `hpo run` twice).
    again = hpo.run_study(namespace["config"], workers=1)
    assert again.ok and len(hpo.trials_dataframe("from-python")) == 4


def test_import_hpo_loads_neither_torch_nor_optuna() -> None:
    code = ("import sys, hpo; print(sorted(m for m in ('torch', 'optuna', 'pandas', "
            "'sqlalchemy') if m in sys.modules)); print(len(hpo.__all__))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.split("\n")[0] == "[]"
    assert int(out.stdout.split("\n")[1]) == len(hpo.__all__)


def test_every_public_name_is_a_lower_layer_object() -> None:
    assert len(set(hpo.__all__)) == len(hpo.__all__)
    for name in hpo.__all__:
        value = getattr(hpo, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        assert value.__module__.startswith("hpo."), name
        assert not value.__module__.startswith("hpo.cli"), name  # the CLI calls the API
        assert value.__doc__, name
    assert set(hpo.__all__) <= set(dir(hpo))
    with pytest.raises(AttributeError, match="no attribute 'run_studdy'"):
        hpo.run_studdy  # noqa: B018


def test_a_dict_is_checked_and_loaded_as_its_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(DOC))
    from_file = hpo.load_study_config(path).to_dict()
    from_dict = hpo.load_study_config(DOC).to_dict()
    assert from_dict.pop("source") == "<dict>" and from_file.pop("source") == str(path)
    assert from_dict == from_file

    bad = {**DOC, "train": {**DOC["train"], "widht": 16}}
    with pytest.raises(ConfigError) as err:
        hpo.load_study_config(bad)
    text = str(err.value)
    assert text.startswith("<dict>: train.widht: unknown key") and "\n" not in text
    assert err.value.exit_code == 2 and "hpo-study-" not in text  # no temporary path

    class Number(float):  # a float subclass (e.g. numpy.float64) is a float
        pass

    lr = hpo.load_study_config({**DOC, "train": {**DOC["train"], "lr": Number(0.5)}})
    assert lr.fixed["lr"] == 0.5 and type(lr.fixed["lr"]) is float
    with pytest.raises(ConfigError, match=r"<dict>: train\.lr: not plain data .*object"):
        hpo.load_study_config({**DOC, "train": {**DOC["train"], "lr": object()}})


def test_storage_precedence_and_n_trials_override(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    filed = {**DOC, "storage": "sqlite:///file.db"}
    assert hpo.load_study_config(DOC).storage == f"sqlite:///{tmp_path}/storage/hpo.db"
    assert hpo.load_study_config(filed).storage == "sqlite:///file.db"
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///env.db")
    assert hpo.load_study_config(filed).storage == "sqlite:///env.db"
    cfg = hpo.load_study_config(filed, storage="sqlite:///flag.db", n_trials=7)
    assert (cfg.storage, cfg.n_trials, cfg.total_budget) == ("sqlite:///flag.db", 7, 9)
    for n in (-1, 1.5, True):
        with pytest.raises(UsageError, match=rf"n_trials {n!r} is not allowed: an integer"):
            hpo.load_study_config(DOC, n_trials=n)


def test_a_password_in_a_dict_storage_is_warned_about(monkeypatch, caplog) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    url = "postgresql://me:s3cret@127.0.0.1:1/none"
    hpo.load_study_config({**DOC, "storage": url})
    assert "<dict>: the storage URL holds a password" in caplog.text
    assert "s3cret" not in caplog.text


def test_run_study_refuses_bad_workers_before_writing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for workers in (0, -2, 1.5):
        with pytest.raises(UsageError, match=rf"workers {workers!r} is not allowed"):
            hpo.run_study(DOC, workers=workers, storage=f"sqlite:///{tmp_path}/x.db")
    assert list(tmp_path.iterdir()) == []


def test_the_cli_handlers_make_one_call_of_the_api(tmp_path, monkeypatch) -> None:
    """``hpo run`` and ``hpo status`` hand their parsed flags to the API's functions."""
    import hpo.worker.local as local
    from hpo.worker.pool import LocalRun
    from hpo.worker.progress import StudySnapshot

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(DOC))
    snap = StudySnapshot(name="api-dict", direction="maximize", budget=5,
                         counts={"COMPLETE": 5}, discarded=0)
    calls = []

    def fake_run(config, **kwargs):
        calls.append((config, kwargs))
        kwargs["announce"]("study api-dict in somewhere: budget 5 trials")
        return local.StudyRun(local.load_config(config), None, Path("logs"),
                              LocalRun(exit_codes=[0, 3], logs=[Path("a"), Path("b")],
                                       final=snap))

    monkeypatch.setattr(local, "run_study", fake_run)
    code = main(["run", str(tmp_path / "s.yaml"), "--workers", "2", "--n-trials", "1",
                 "--storage", "sqlite:///x.db", "--log-dir", "L", "--poll-interval", "0.5"])
    assert code == 1  # worker 1 exited with 3
    (config, kwargs), = calls
    assert config == str(tmp_path / "s.yaml")
    assert {k: kwargs[k] for k in ("workers", "n_trials", "storage", "log_dir",
                                   "poll_interval")} == {
        "workers": 2, "n_trials": 1, "storage": "sqlite:///x.db", "log_dir": "L",
        "poll_interval": 0.5}

    seen = []
    monkeypatch.setattr(local, "status", lambda ref: seen.append(ref) or snap)
    assert main(["status", str(tmp_path / "s.yaml"), "--storage", "sqlite:///y.db"]) == 0
    assert seen == [local.StudyRef("api-dict", "sqlite:///y.db")]
