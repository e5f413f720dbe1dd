"""Malformed input through the real CLI: one readable line, the right exit code, no writes.

Every case runs ``python -m hpo ...`` as a subprocess in its own temporary folder and checks
that stderr holds exactly one line (no traceback) quoting the bad key or value and saying
how to fix it; that the exit code is 2 for a bad config file or bad flags and 1 for a
runtime failure (storage unreachable, study not found, dataset missing); and that no study
and no trial was written. The cases run in parallel threads (each is a short subprocess).

Downloads are made impossible without relying on this machine being offline: the dataset
cache is an empty folder and HTTP(S) goes through a proxy at a closed local port, which
fails at once.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import socket
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("HPO_TEST_POSTGRES_URL")
DB = "sqlite:///{tmp}/s.db"  # the storage every case passes (or should have written to)
NO_PROXY_VARS = ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY")

BASE = {
    "name": "bad",
    "n_trials": 2,
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
    "train": {"model": "fc", "depth": 1, "width": 8, "train_subset": 100, "val_size": 100},
    "search_space": {"relu_prime_zero": {"type": "float", "low": 0.0, "high": 1.0}},
}


def config(**changes: object) -> str:
    """BASE as YAML with dotted keys replaced (``train__width=0`` sets train.width)."""
    d = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = d
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return yaml.safe_dump(d, sort_keys=False)


GOOD = config()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Case:
    """One malformed input.

    ``args`` follow ``python -m hpo`` with ``{tmp}`` (the case's folder), ``{cfg}`` (its
    study.yaml, written from ``yaml`` when given) and ``{db}`` (sqlite storage in it).
    ``expect``: substrings of the one stderr line (the bad key or value, and the fix).
    ``setup``: ``existing`` creates study "exists" (no trials) in ``{db}`` first;
    ``storage_file`` puts a regular file named ``storage`` where the project's ``storage/``
    folder goes; ``clamp_model`` writes ``{tmp}/clampnet.py``, a model hiding a ReLU in
    ``clamp(min=0)``; ``corrupt_data`` writes a data folder ``{tmp}/data`` whose MNIST files
    and CIFAR-10 archive are fake; ``image_folder_*`` write a bad image folder ``{tmp}/imgs``.
    """

    id: str
    args: tuple[str, ...]
    code: int
    expect: tuple[str, ...]
    yaml: str | bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup: str | None = None


def create(yaml_text: str | bytes, *expect: str, id: str, code: int = 2) -> Case:
    return Case(id, ("create", "{cfg}", "--storage", DB), code, expect, yaml_text)


CASES = [
    # --- the study file: YAML syntax ---------------------------------------------------
    create("name: bad\ntrain: {model: fc\n", "line 3, column 1", "invalid YAML",
           "fix: correct the YAML syntax", id="yaml-unclosed-brace"),
    create("name: bad\nname: other\ntrain: {}\n", "duplicate key 'name'", "line 2",
           id="yaml-duplicate-key"),
    create("name: bad\ntrain:\n\tmodel: fc\n", "line 3", "invalid YAML", id="yaml-tab-indent"),
    create("- name: bad\n- train: {}\n", "(top level)", "expected a mapping",
           "fix: indent the keys", id="yaml-list-at-top"),
    create("", "(top level)", "expected a mapping", "(got None)", id="yaml-empty-file"),
    create(b"name: bad\x00\xff\xfe\n", "cannot read the file", "fix:", id="yaml-binary-file"),
    Case("config-missing", ("create", "{tmp}/nosuch.yaml", "--storage", DB), 2,
         ("nosuch.yaml: file not found", "fix: check the path")),
    Case("config-is-folder", ("create", "{tmp}", "--storage", DB), 2,
         ("is a folder, not a file", "fix:")),
    # --- the study file: keys, types, ranges ----------------------------------------------
    create(config(nmae="x"), "nmae: unknown key", "(got 'nmae'; did you mean 'name'?)",
           "fix: remove it or correct its spelling", id="unknown-top-key"),
    create(config(train__widht=64), "train.widht: unknown key",
           "(got 'widht'; did you mean 'width'?)", id="unknown-train-key"),
    create(config(smapler="random"), "smapler: unknown key", "did you mean 'sampler'?",
           "allowed: name, direction", id="unknown-top-key-close-match"),
    create(config(sampler={"name": "rnadom"}), "sampler.name: unknown value",
           "(got 'rnadom'; did you mean 'random'?)", id="sampler-close-match"),
    create(config(train__optimizer="adm"), "train.optimizer", "Did you mean 'adam'?",
           id="optimizer-close-match"),
    create(config(search_space__precision={"type": "categorical",
                                           "choices": ["float32", "fp16"]}),
           "search_space.precision.choices[1]", "'fp16'", "Did you mean 'float16'?",
           id="precision-choice-close-match"),
    create(config(search_space__lrr={"type": "float", "low": 0.01, "high": 0.1}),
           "search_space.lrr: not a training setting", "did you mean 'lr'?",
           id="searched-name-close-match"),
    create(GOOD.replace("name: bad\n", ""), "name: required key is missing", "fix: add name:",
           id="missing-name"),
    create(config(n_trials="ten"), "n_trials: invalid value", "(got 'ten')",
           "an integer >= 0", id="n-trials-string"),
    create(config(train__width="64"), "train.width", "(got '64')", "fix:",
           id="width-string"),
    create(config(train__width=0), "train.width", "(got 0)", "integer >= 1",
           id="width-zero"),
    create(config(timeout=-5), "timeout: must be positive", "(got -5)", id="timeout-negative"),
    create(GOOD.replace("high: 1.0", "high: .nan"), "search_space.relu_prime_zero.high",
           "not finite", "(got nan)", id="nan-search-bound"),
    create(config(train__lr=float("nan")), "train.lr", "(got nan)", "fix:", id="nan-lr"),
    create(config(heartbeat={"interval": 10, "grace": 5}), "heartbeat.grace", "(got 5)",
           "fix: set grace to 2-3 times the interval", id="grace-below-interval"),
    create(config(search_space__relu_prime_zero={"type": "float", "low": 2.0, "high": 1.0}),
           "search_space.relu_prime_zero.low", "(got 2.0)", "fix: swap them",
           id="low-above-high"),
    # --- the study file: unknown names ----------------------------------------------------
    create(config(train__model="resnet9"), "train.model", "'resnet9'", "resnet18",
           id="unknown-model"),
    create(config(train__model="hpo.engine.models.build:nope"), "train.model",
           "module 'hpo.engine.models.build' has no attribute 'nope'",
           "check the name after the colon",
           id="model-attribute-missing"),
    create(config(train={"model": "hpo.engine.models.registry:torchvision_models",
                         "train_subset": 100, "val_size": 100}), "train.model",
           "the factory returned tuple", "not a torch.nn.Module", id="model-not-a-module"),
    create(config(train__dataset="cifar100"), "train.dataset", "'cifar100'", "fashion_mnist",
           "imagefolder:PATH", id="unknown-dataset"),
    create(config(train__precision="float8"), "train.precision", "'float8'", "bfloat16",
           id="unknown-precision"),
    create(config(search_space__precision={"type": "categorical",
                                           "choices": ["float32", "float8"]}),
           "search_space.precision.choices[1]", "'float8'", id="unknown-precision-searched"),
    create(config(sampler={"name": "bayes"}), "sampler.name", "(got 'bayes')", "tpe",
           "fix: pick one", id="unknown-sampler"),
    create(config(pruner={"name": "patient"}), "pruner.name", "(got 'patient')", "median",
           id="unknown-pruner"),
    create(config(sampler={"name": "tpe", "n_startup": 3}), "sampler.n_startup",
           "not an option of TPESampler", "fix: remove it", id="unknown-sampler-option"),
    # The file's storage: is checked when it is opened (no --storage here), before any write.
    Case("config-storage-bad-scheme", ("create", "{cfg}"), 2,
         ("storage", "unknown database kind", "'sqlit:///x.db'", "fix: correct the scheme"),
         config(storage="sqlit:///x.db")),
    create(config(storage=""), "storage", "not a URL", id="config-storage-empty"),
    # --- the study file: parameters that do not apply -------------------------------------
    create(config(train={"model": "mobilenet_v3_small", "train_subset": 100, "val_size": 100},
                  search_space__width={"type": "int", "low": 32, "high": 64}),
           "search_space.width", "is not read by model 'mobilenet_v3_small'",
           "it reads: width_mult", "fix:",
           id="width-for-mobilenet"),
    create(config(train={"model": "resnet18", "width": 64, "train_subset": 100,
                         "val_size": 100}),
           "train.width", "is not read by model 'resnet18'", "remove width",
           id="width-for-resnet18-in-train"),
    create(config(train={"model": "resnet18", "train_subset": 100, "val_size": 100},
                  search_space__width={"type": "int", "low": 16, "high": 64}),
           "search_space.width", "width=16 is not read by model 'resnet18'",
           "reads none of depth, width", id="width-searched-for-resnet18"),
    create(config(train={"train_subset": 100, "val_size": 100},
                  search_space__model={"type": "categorical", "choices": ["fc", "resnet18"]},
                  search_space__width={"type": "categorical", "choices": [16, 64]}),
           "search_space.width.choices[0]", "width=16 is not read by model 'resnet18'",
           "(got 16 with {'relu_prime_zero': 0.0, 'model': 'resnet18'})",
           id="width-searched-with-a-model-choice"),
    Case("run-width-for-resnet18", ("run", "{cfg}", "--storage", DB), 2,
         ("train.width", "width=64 is not read by model 'resnet18'", "remove width"),
         config(train={"model": "resnet18", "width": 64, "train_subset": 100,
                       "val_size": 100})),
    Case("run-width-searched-for-resnet18", ("run", "{cfg}", "--storage", DB), 2,
         ("search_space.width", "width=16 is not read by model 'resnet18'"),
         config(train={"model": "resnet18", "train_subset": 100, "val_size": 100},
                search_space__width={"type": "int", "low": 16, "high": 64})),
    Case("create-audit-failure", ("create", "{cfg}", "--storage", DB), 2,
         ("study.yaml: train.model: ", "clamp(min=0)", "clampnet:build"),
         config(train={"model": "clampnet:build", "train_subset": 100, "val_size": 100}),
         setup="clamp_model"),
    create(config(search_space__relu6_prime_six={"type": "float", "low": 0.0, "high": 1.0}),
           "search_space.relu6_prime_six", "only applies to activation 'relu6'",
           id="relu6-derivative-for-relu"),
    create(config(train__relu_prime_zero=0.5), "search_space.relu_prime_zero",
           "both fixed under train: and searched", id="fixed-and-searched"),
    # --- flags ----------------------------------------------------------------------------
    Case("no-command", (), 2, ("required: COMMAND", "see 'hpo --help'")),
    Case("unknown-flag", ("create", "{cfg}", "--bogus"), 2,
         ("unrecognized arguments: --bogus", "--help"), GOOD),
    Case("create-without-config", ("create",), 2, ("CONFIG", "hpo create --help")),
    Case("run-zero-workers", ("run", "{cfg}", "--workers", "0", "--storage", DB), 2,
         ("--workers", "'0' is not an integer >= 1"), GOOD),
    Case("run-workers-not-int", ("run", "{cfg}", "--workers", "two"), 2,
         ("'two' is not an integer",), GOOD),
    Case("create-negative-n-trials", ("create", "{cfg}", "--n-trials", "-1"), 2,
         ("'-1' is not an integer >= 0",), GOOD),
    Case("worker-without-study", ("worker",), 2, ("no study given", "fix: hpo worker")),
    Case("worker-config-and-study", ("worker", "{cfg}", "--study", "bad", "--storage", DB), 2,
         ("not both", "fix: drop one"), GOOD),
    Case("export-study-and-all", ("export", "bad", "--all", "--storage", DB), 2,
         ("give STUDY or --all, not both",)),
    Case("compare-zero-resamples", ("compare", "bad", "--resamples", "0"), 2,
         ("'0' is not an integer >= 1",)),
    Case("compare-artifacts-a-file", ("compare", "exists", "--storage", DB, "--artifacts",
                                      "{tmp}/s.db"), 2,
         ("artifact folder", "s.db' is a file, not a folder", "fix: pass --artifacts DIR"),
         setup="existing"),
    Case("dashboard-bad-port", ("dashboard", "--storage", DB, "--port", "70000"), 2,
         ("--port 70000", "1-65535", "fix: --port 8080")),
    Case("train-unknown-precision", ("train", "--precision", "float8"), 2,
         ("invalid choice: 'float8'", "bfloat16")),
    Case("train-width-zero", ("train", "--width", "0"), 2, ("width 0", "integer >= 1")),
    Case("train-unknown-model", ("train", "--model", "mnasnet05"), 2,
         ("Unknown model 'mnasnet05'", "did you mean 'mnasnet0_5'", "list_models(")),
    Case("train-model-module-missing", ("train", "--model", "no_such_module_hpo:build"), 2,
         ("module 'no_such_module_hpo' is not importable here", "PYTHONPATH")),
    Case("train-nan-lr", ("train", "--lr", "nan"), 2, ("lr nan",)),
    Case("train-width-for-mobilenet", ("train", "--model", "mobilenet_v3_small",
                                       "--width", "32"), 2,
         ("width=32 is not read by model 'mobilenet_v3_small'", "it reads: width_mult",
          "remove width")),
    Case("train-width-for-resnet18", ("train", "--model", "resnet18", "--width", "64"), 2,
         ("width=64 is not read by model 'resnet18'", "reads none of depth, width",
          "remove width")),
    Case("train-width-mult-for-fc", ("train", "--width-mult", "1.0"), 2,
         ("width_mult=1.0 is not read by model 'fc'", "it reads: depth, width, batch_norm")),
    Case("train-model-dot-for-colon", ("train", "--model", "mynet.build"), 2,
         ("Unknown model 'mynet.build'", "did you mean 'mynet:build'")),
    Case("probe-width-for-resnet18", ("probe", "--model", "resnet18", "--width", "64"), 2,
         ("width=64 is not read by model 'resnet18'", "remove width")),
    Case("diverge-width-for-resnet18", ("diverge", "--alphas", "1", "--model", "resnet18",
                                        "--width", "64", "--output", "{tmp}/out"), 2,
         ("width=64 is not read by model 'resnet18'", "remove width")),
    Case("reproduce-zero-inits", ("reproduce", "section3", "--inits", "0", "--storage", DB), 2,
         ("--inits 0", "integer >= 1", "fix: e.g. --inits 100")),
    Case("reproduce-inits-not-int", ("reproduce", "section3", "--inits", "ten"), 2,
         ("'ten' is not an integer",)),
    Case("reproduce-zero-workers", ("reproduce", "section3", "--workers", "0", "--storage", DB),
         2, ("--workers 0", "integer >= 1", "fix: e.g. --workers 2")),
    Case("reproduce-bfloat16", ("reproduce", "section3", "--precisions", "bfloat16",
                                "--storage", DB), 2,
         ("'bfloat16'", "float16", "float64", "fix:")),
    Case("reproduce-train-subset-zero", ("reproduce", "section3", "--train-subset", "0",
                                         "--storage", DB), 2,
         ("--train-subset 0", "1 to 60000", "fix:")),
    Case("reproduce-unknown-experiment", ("reproduce", "section9"), 2,
         ("'section9'", "section3")),
    Case("reproduce-storage-bad-scheme", ("reproduce", "section3", "--storage",
                                          "sqlit:///{tmp}/s.db"), 2,
         ("unknown database kind", "sqlit:///", "fix: correct the scheme")),
    # --- storage URLs ------------------------------------------------------------------------
    Case("storage-bad-scheme", ("create", "{cfg}", "--storage", "sqlit:///{tmp}/s.db"), 2,
         ("unknown database kind", "sqlit:///", "fix: correct the scheme"), GOOD),
    Case("storage-not-a-url", ("create", "{cfg}", "--storage", "just-a-file.db"), 2,
         ("not a database URL", "'just-a-file.db'", "fix:"), GOOD),
    Case("storage-env-bad-scheme", ("status", "bad"), 2, ("unknown database kind", "sqlit"),
         env={"HPO_STORAGE": "sqlit:///{tmp}/s.db"}),
    Case("storage-driver-missing", ("create", "{cfg}", "--storage", "mysql://u@127.0.0.1/db"),
         2, ("the database driver for 'mysql' is not installed", "no module 'MySQLdb'",
             "fix: install the Python package"), GOOD),
    # postgresql:// and postgres:// (as people write them) open with psycopg2: an
    # unreachable server is a runtime failure, not a missing driver.
    Case("storage-postgresql-unreachable", ("status", "bad", "--storage",
                                            "postgresql://u:s3cr3t@127.0.0.1:1/db"), 1,
         ("cannot open storage postgresql://u:***@127.0.0.1:1/db", "port 1 failed",
          "fix: check that the database")),
    Case("storage-postgres-alias-unreachable", ("create", "{cfg}", "--storage",
                                                "postgres://u:s3cr3t@127.0.0.1:1/db"), 1,
         ("cannot open storage postgres://u:***@127.0.0.1:1/db", "port 1 failed"), GOOD),
    Case("storage-postgres-env-unreachable", ("worker", "--study", "bad"), 1,
         ("cannot open storage postgres://u:***@127.0.0.1:1/db",),
         env={"HPO_STORAGE": "postgres://u:s3cr3t@127.0.0.1:1/db"}),
    *([] if importlib.util.find_spec("psycopg") else [
        Case("storage-postgres-psycopg3-driver", ("status", "bad", "--storage",
                                                  "postgresql+psycopg://u:s3cr3t@127.0.0.1:1/db"),
             2, ("no module 'psycopg'", "u:***@127.0.0.1:1/db",
                 "fix: write the URL as postgresql://... (psycopg2)"))]),
    Case("storage-misspelled-postgresql", ("status", "--storage",
                                           "postgresq://u:s3cr3t@127.0.0.1:1/db"), 2,
         ("unknown database kind 'postgresq'", "'postgresq://u:***@127.0.0.1:1/db'",
          "did you mean postgresql://?")),
    Case("storage-misspelled-sqlite", ("export", "--all", "--storage", "sqlite//x.db"), 2,
         ("not a database URL", "'sqlite//x.db'", "fix: write it as DIALECT[+DRIVER]://")),
    *([] if not PG else [
        Case("storage-postgres-wrong-database", ("status", "--storage", PG.rsplit("/", 1)[0]
                                                 .replace("postgresql+psycopg2://",
                                                          "postgres://")
                                                 + "/hpo_no_such_database"), 1,
             ("cannot open storage postgres://", 'database "hpo_no_such_database" does not '
              "exist", "fix:"))]),
    Case("storage-bad-port", ("create", "{cfg}", "--storage",
                              "postgresql+psycopg2://u:s3cr3t@127.0.0.1:notaport/db"), 2,
         ("not a database URL", "u:***@127.0.0.1:notaport/db", "fix:"), GOOD),
    Case("storage-postgres-unreachable", ("create", "{cfg}", "--storage",
                                          "postgresql+psycopg2://user:s3cr3t@127.0.0.1:1/db"), 1,
         ("cannot open storage", "user:***@127.0.0.1:1/db", "fix: check that the database"),
         GOOD),
    Case("storage-sqlite-unwritable", ("create", "{cfg}", "--storage",
                                       "sqlite:////proc/hpo-nope/s.db"), 1,
         ("cannot open SQLite storage", "/proc/hpo-nope/s.db", "fix: choose a writable path"),
         GOOD),
    # --- studies that do not exist ---------------------------------------------------------
    Case("export-no-storage-file", ("export", "nosuch"), 1,
         ("this project has no studies yet", "/storage/hpo.db does not exist",
          "fix: create the study", "pass --storage")),
    Case("export-unknown-study", ("export", "nosuch", "--storage", DB), 1,
         ("study 'nosuch' not found", "existing studies: ['exists']", "fix:"),
         setup="existing"),
    Case("status-unknown-study", ("status", "nosuch", "--storage", DB), 1,
         ("study 'nosuch' not found", "['exists']"), setup="existing"),
    Case("compare-unknown-study", ("compare", "nosuch", "--storage", DB), 1,
         ("study 'nosuch' not found", "['exists']"), setup="existing"),
    Case("compare-against-unknown", ("compare", "exists", "--against", "nosuch",
                                     "--storage", DB), 1,
         ("study 'nosuch' not found",), setup="existing"),
    Case("worker-unknown-study", ("worker", "--study", "nosuch", "--storage", DB), 1,
         ("study 'nosuch' not found", "['exists']"), setup="existing"),
    Case("worker-no-storage-file", ("worker", "--study", "nosuch"), 1,
         ("this project has no studies yet", "/storage/hpo.db does not exist")),
    Case("export-all-no-storage-file", ("export", "--all"), 1,
         ("this project has no studies yet", "no folder from here upward holds storage/")),
    Case("dashboard-no-storage-file", ("dashboard", "--port", str(_free_port())), 1,
         ("this project has no studies yet",)),
    Case("sqlite-no-such-file", ("status", "--storage", "sqlite:///{tmp}/nosuch.db"), 1,
         ("no study storage at sqlite:///", "nosuch.db", "does not exist")),
    # --- a storage/ folder that cannot be made: a regular file in its place (a read-only
    # folder, which root can still write, is tests/cli/test_study_cmds.py's mount test) ----
    Case("storage-folder-is-a-file", ("create", "{cfg}"), 1,
         ("storage/hpo.db' cannot be made", "storage' is a file, not a folder",
          "fix: move or rename that file"), GOOD, setup="storage_file"),
    Case("run-storage-folder-is-a-file", ("run", "{cfg}"), 1,
         ("is a file, not a folder",), GOOD, setup="storage_file"),
    # --- datasets ---------------------------------------------------------------------------
    Case("data-dir-missing", ("train", "--data-dir", "{tmp}/nodata", "--train-subset", "100"),
         1, ("nodata", "does not exist", "--data-dir")),
    Case("data-bad-checksum", ("train", "--data-dir", "{tmp}/data", "--train-subset", "100"),
         2, ("train-images-idx3-ubyte.gz: bad checksum", "delete it"), setup="corrupt_data"),
    Case("data-missing-offline", ("train", "--train-subset", "100"), 1,
         ("dataset 'mnist': missing", "download failed", "HPO_DATA_DIR")),
    Case("run-bad-checksum", ("run", "{cfg}", "--storage", DB, "--data-dir", "{tmp}/data"), 2,
         ("bad checksum",), GOOD, setup="corrupt_data"),
    Case("cifar-bad-checksum", ("train", "--dataset", "cifar10", "--data-dir", "{tmp}/data"), 2,
         ("cifar-10-python.tar.gz: bad checksum", "c58f30108f718f92721af3b95e74349a",
          "delete it"), setup="corrupt_data"),
    Case("svhn-missing-offline", ("train", "--dataset", "svhn_extra"), 1,
         ("dataset 'svhn_extra': missing extra_32x32.mat, test_32x32.mat", "download failed",
          "HPO_DATA_DIR")),
    Case("imagefolder-no-train", ("train", "--dataset", "imagefolder:{tmp}/imgs"), 2,
         ("imgs' has no train/ folder", "lay it out as PATH/train/<class>/<image>"),
         setup="image_folder_without_train"),
    Case("run-imagefolder-mismatch", ("run", "{cfg}", "--storage", DB), 2,
         ("test/ has different classes from train/", "missing ['b']"),
         config(train__dataset="imagefolder:imgs"), setup="image_folder_mismatch"),
    create(config(train__dataset="cifar10", train__train_subset=50000),
           "train.train_subset", "50000 training images of 'cifar10'", "1 to 49900",
           id="train-subset-beyond-cifar10"),
]


def _env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HPO_STORAGE", "HPO_DATA_DIR", *NO_PROXY_VARS)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["HPO_CACHE_DIR"] = str(tmp / "cache")  # empty: nothing cached
    # Any download fails at once: the proxy is a closed local port.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.update({k: v.format(tmp=tmp) for k, v in extra.items()})
    return env


def _setup(case: Case, tmp: Path) -> None:
    if case.yaml is not None:
        data = case.yaml if isinstance(case.yaml, bytes) else case.yaml.encode()
        (tmp / "study.yaml").write_bytes(data)
    if case.setup == "clamp_model":  # a user model whose forward hides a ReLU in a clamp
        (tmp / "clampnet.py").write_text(
            "import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n"
            "        self.fc = nn.Linear(784, 10)\n\n"
            "    def forward(self, x):\n        return self.fc(x.mean(1).flatten(1).clamp(min=0))\n"
            "\n\ndef build():\n    return Net()\n"
        )
    if case.setup == "storage_file":
        (tmp / "storage").write_text("not a folder\n")
    elif case.setup == "existing":
        from hpo.config.study import load_study_config
        from hpo.study.create import create_study

        path = tmp / "exists.yaml"
        path.write_text(config(name="exists"))
        create_study(load_study_config(path, storage_override=DB.format(tmp=tmp)),
                     DB.format(tmp=tmp))
    elif case.setup == "corrupt_data":
        # A wrong file under an official name (with a valid gzip, so only the checksum
        # can tell), next to the other names: nothing may be read or downloaded.
        raw = tmp / "data" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (raw / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8)))
        (tmp / "data" / "cifar-10-python.tar.gz").write_bytes(gzip.compress(bytes(64)))
    elif case.setup in ("image_folder_without_train", "image_folder_mismatch"):
        from torchvision.io import encode_png

        png = encode_png(torch.zeros(3, 8, 8, dtype=torch.uint8)).numpy().tobytes()
        classes = {"test": ["a"]} if case.setup == "image_folder_without_train" else {
            "train": ["a", "b"], "test": ["a"]}
        for split, names in classes.items():
            for name in names:
                (tmp / "imgs" / split / name).mkdir(parents=True)
                (tmp / "imgs" / split / name / "0.png").write_bytes(png)


def _studies(tmp: Path) -> dict[str, int]:
    """Study name -> number of trials, over every SQLite file the case could have made."""
    found: dict[str, int] = {}
    for db in [tmp / "s.db", *sorted((tmp / "storage").glob("*.db"))]:
        if not db.exists():
            continue
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
        try:
            for s in storage.get_all_studies():
                study_id = storage.get_study_id_from_name(s.study_name)
                found[f"{db.name}:{s.study_name}"] = len(storage.get_all_trials(study_id))
        finally:
            storage.engine.dispose()
    return found


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    before: dict[str, int]
    after: dict[str, int]


def _run(case: Case, base: Path) -> Outcome:
    tmp = base / f"{case.id}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    _setup(case, tmp)
    before = _studies(tmp)
    args = [a.format(tmp=tmp, cfg=tmp / "study.yaml", db=DB.format(tmp=tmp))
            for a in case.args]
    proc = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=tmp,
                          env=_env(tmp, case.env), capture_output=True, text=True, timeout=120)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, before, _studies(tmp))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("bad_input")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda c: (c.id, _run(c, base)), CASES)
        return dict(results)


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(case: Case, outcomes) -> None:
    out = outcomes[case.id]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    line = lines[0]
    assert line.startswith("hpo: error: "), line
    assert "s3cr3t" not in out.stdout + out.stderr  # a password is never shown
    for text in case.expect:
        assert text in line, (text, line)
    assert out.code == case.code, (out.code, line)
    # Nothing written: no new study, no new trial.
    assert out.after == out.before, (out.before, out.after)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(config(train__model="resnet9"))
    proc = subprocess.run([sys.executable, "-m", "hpo", "--debug", "create", "study.yaml"],
                          cwd=tmp_path, env=_env(tmp_path, {}), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError" in proc.stderr and "resnet9" in proc.stderr
    assert not (tmp_path / "storage").exists()


@pytest.mark.skipif(not PG, reason="HPO_TEST_POSTGRES_URL is not set")
def test_bad_input_writes_no_postgres_study(tmp_path: Path) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    (tmp_path / "bad.yaml").write_text(config(name=name, train__width=0))
    (tmp_path / "good.yaml").write_text(config(name=name))
    _setup(Case("pg", (), 0, (), setup="corrupt_data"), tmp_path)
    runs = {  # args -> exit code
        ("create", "bad.yaml"): 2,
        ("run", "good.yaml", "--data-dir", str(tmp_path / "data")): 2,  # bad checksum
        ("worker", "--study", name): 1,
        ("worker", "good.yaml"): 1,
        ("status", name): 1,
        ("export", name): 1,
        ("compare", name): 1,
    }
    env = _env(tmp_path, {"HPO_STORAGE": PG})
    for args, code in runs.items():
        proc = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert (proc.returncode, len(lines)) == (code, 1), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    names = [s.study_name for s in optuna.get_all_study_summaries(PG)]
    assert name not in names


def test_status_survives_a_closed_pipe(tmp_path: Path) -> None:
    """``hpo status | head -1``: the reader goes away; no BrokenPipeError traceback."""
    (tmp_path / "study.yaml").write_text(config())
    env = _env(tmp_path, {})
    assert subprocess.run([sys.executable, "-m", "hpo", "create", "study.yaml"], cwd=tmp_path,
                          env=env, capture_output=True, timeout=120).returncode == 0
    proc = subprocess.run(f"'{sys.executable}' -m hpo status bad | head -c 0", shell=True,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
