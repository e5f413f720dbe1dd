"""The one serialiser of study configs: the records stored by earlier versions (the golden
file ``data/stored_records.json``, written by the field-by-field ``to_dict`` this replaced)
read back to the configs they came from, and are written again byte for byte."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from hpo.config.records import from_record, stored, to_record
from hpo.config.reproduce import section3
from hpo.config.study import CONFIG_FORMAT, StudyConfig, load_study_config
from hpo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((Path(__file__).parent / "data" / "stored_records.json").read_text())
# the golden file's section3 cases: the plan options each was written with
SECTION3 = {
    "section3 {'quick': True}": {"quick": True},
    "section3 {'inits': 50, 'train_subset': 1000, 'precisions': ('float32',)}": {
        "inits": 50, "train_subset": 1000, "precisions": ("float32",)
    },
}


def _config(case: str, entry: dict[str, Any], tmp_path: Path) -> StudyConfig:
    if case in SECTION3:
        return section3.section3_config(section3.plan(**SECTION3[case]), "sqlite:///x.db")
    if entry["yaml"] is None:
        return load_study_config(ROOT / case)
    path = tmp_path / case
    path.write_text(entry["yaml"])
    return load_study_config(path)


def _dumped(record: dict[str, Any], source: str | None = None) -> str:
    if source is not None:
        record = {**record, "source": source}
    return json.dumps(record)  # key order kept: byte for byte


def test_every_shipped_study_file_is_in_the_golden_file() -> None:
    shipped = {f"study_configs/{p.name}" for p in (ROOT / "study_configs").glob("*.yaml")}
    assert shipped <= set(GOLDEN), sorted(shipped - set(GOLDEN))
    assert {k for k in GOLDEN if k.startswith("section3")} == set(SECTION3)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_stored_records_are_written_and_read_as_before(case, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    entry = GOLDEN[case]
    cfg = _config(case, entry, tmp_path)
    record = json.loads(json.dumps(cfg.to_dict()))
    golden = entry["record"]
    # the same keys, values and order as the earlier versions wrote (the path aside)
    assert _dumped(record, "-") == _dumped(golden, "-")
    # round trip: load -> to_dict -> from_dict gives the same config
    assert StudyConfig.from_dict(record) == cfg
    # and an old record reads as the config loaded now
    assert StudyConfig.from_dict({**golden, "source": cfg.source}) == cfg


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "study_configs").glob("*.yaml")))
def test_a_dict_loads_as_its_yaml_file(name, monkeypatch) -> None:
    import yaml

    monkeypatch.chdir(ROOT)
    path = f"study_configs/{name}"
    from_file = load_study_config(path)
    from_dict = load_study_config(yaml.safe_load((ROOT / path).read_text()))
    assert from_dict.source == "<dict>"
    assert dataclasses.replace(from_dict, source=path) == from_file


@pytest.mark.parametrize("bad", [3, None, ["study_configs/quickstart.yaml"], b"x.yaml"])
def test_neither_a_path_nor_a_dict_is_one_config_error(bad) -> None:
    with pytest.raises(ConfigError) as info:
        load_study_config(bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"got {type(bad).__name__}" in msg and "path" in msg and "dict" in msg


def test_a_bad_dict_names_the_key_under_dict() -> None:
    with pytest.raises(ConfigError, match=r"^<dict>: train\.lrr: unknown key .*'lr'"):
        load_study_config({"name": "x", "train": {"lrr": 0.1}})


@pytest.mark.parametrize(
    "change",
    [
        {"format": 2},
        {"heartbeat": {"interval": 1, "grace": 2, "max_retry": 0, "extra": 1}},
        {"surprise": 1},
        {"search_space": {"lr": {"name": "FloatDistribution"}}},
        {"sampler": "tpe"},
        {"baseline": {"seeds": 3, "params": {}}},
    ],
)
def test_a_corrupt_record_is_one_config_error(change, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    record = {**load_study_config("study_configs/quickstart.yaml").to_dict(), **change}
    with pytest.raises(ConfigError, match="^stored study config"):
        StudyConfig.from_dict(record)


def test_a_missing_required_key_is_corrupt(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    record = load_study_config("study_configs/quickstart.yaml").to_dict()
    del record["train"]
    with pytest.raises(ConfigError, match="incomplete or corrupt.*'train'"):
        StudyConfig.from_dict(record)


# -- the serialiser on its own: a new field is declared once --------------------------------
@dataclasses.dataclass(frozen=True)
class _Inner:
    pair: tuple[float, float] = (0.0, 1.0)
    note: str = stored("", omit=lambda i: i.note == "")


@dataclasses.dataclass(frozen=True)
class _Outer:
    name: str
    inner: _Inner | None = None
    table: dict[str, tuple[int, ...]] = stored(default_factory=dict, key="rows")
    seeds: tuple[int, ...] = stored((0,), absent=())


def test_a_new_field_is_written_and_read_from_its_declaration_alone() -> None:
    obj = _Outer("a", _Inner((0.5, 2.0), "n"), {"x": (1, 2)}, (3,))
    record = to_record(obj)
    assert record == {
        "name": "a",
        "inner": {"pair": [0.5, 2.0], "note": "n"},
        "rows": {"x": [1, 2]},
        "seeds": [3],
    }
    assert from_record(_Outer, json.loads(json.dumps(record))) == obj
    assert to_record(_Inner()) == {"pair": [0.0, 1.0]}  # omitted while unset
    assert from_record(_Outer, {"name": "b"}) == _Outer("b", None, {}, ())  # absent: ()
    with pytest.raises(KeyError):
        from_record(_Outer, {"name": "b", "table": {}})  # stored as rows, not table
    with pytest.raises(KeyError):
        from_record(_Outer, {})


def test_the_format_is_written_first() -> None:
    cfg = section3.section3_config(section3.plan(quick=True), "sqlite:///x.db")
    assert next(iter(cfg.to_dict().items())) == ("format", CONFIG_FORMAT)


def test_an_old_record_with_an_unread_default_setting_still_loads(monkeypatch, caplog) -> None:
    """Before unread settings were refused, ``model: resnet18`` with ``width: 64`` (the
    default, so accepted then) was stored; it never applied: the study still loads, without
    it, and says so."""
    monkeypatch.chdir(ROOT)
    record = json.loads(json.dumps(GOLDEN["study_configs/quickstart.yaml"]["record"]))
    record["train"] = {**record["train"], "model": "resnet18", "width": 64, "depth": 2}
    record["search_space"] = {
        k: v for k, v in record["search_space"].items() if k not in ("width", "depth")
    }
    with caplog.at_level("WARNING"):
        cfg = StudyConfig.from_dict(record)
    assert "width" not in cfg.fixed and "depth" not in cfg.fixed
    assert cfg.fixed["model"] == "resnet18"
    assert "depth, width are not read by model 'resnet18'" in caplog.text
    # a value away from the default was never accepted: it is not silently dropped
    record["train"]["width"] = 32
    assert StudyConfig.from_dict(record).fixed["width"] == 32  # kept: train_spec refuses it
    with pytest.raises(ConfigError, match="width=32 is not read by model 'resnet18'"):
        StudyConfig.from_dict(record).train_spec({})
