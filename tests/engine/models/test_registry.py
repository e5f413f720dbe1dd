from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hpo.engine.models import registry
from hpo.engine.spec import MODELS, TrainSpec
from hpo.errors import ConfigError


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    """A module ``hpo_usermod_<n>`` written to tmp_path and put on sys.path."""
    name = f"hpo_usermod_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent('''
        def plain(): return "plain"
        def some(num_classes, image_size=3): return (num_classes, image_size)
        def kw_only(*, in_channels): return in_channels
        def everything(**kwargs): return kwargs
        def boom(num_classes): raise ValueError("bad\\nsize")
        class Holder:
            @staticmethod
            def build(): return "nested"
        not_callable = 3
    '''))
    (tmp_path / f"{name}_broken.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for mod in (name, f"{name}_broken"):
        sys.modules.pop(mod, None)


def test_builtins_are_the_help_list():
    assert MODELS == registry.BUILTIN_MODELS
    assert "resnet18_cifar" in MODELS


def test_torchvision_names_are_accepted():
    for name in ("mnasnet0_5", "squeezenet1_1", "densenet121", "vit_b_16"):
        assert TrainSpec(model=name).model == name
        assert registry.model_kind(name) == "torchvision"
    assert registry.model_kind("vgg11") == "builtin"  # the built-in wins


def test_unknown_name_lists_close_matches_and_how_to_list_all():
    with pytest.raises(ConfigError) as info:
        TrainSpec(model="mnasnet05")
    message = str(info.value)
    assert "Unknown model 'mnasnet05': did you mean 'mnasnet0_5'" in message
    assert "list_models(module=torchvision.models)" in message
    assert "package.module:factory" in message and "\n" not in message


def test_import_path_is_imported_and_checked(usermod):
    TrainSpec(model=f"{usermod}:plain")
    TrainSpec(model=f"{usermod}:Holder.build")
    assert registry.load_factory(f"{usermod}:Holder.build")() == "nested"


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("nope", "has no attribute 'nope'; check the name after the colon"),
        ("not_callable", "'not_callable' is a int, not callable"),
    ],
)
def test_import_path_attribute_errors(usermod, attr, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainSpec(model=f"{usermod}:{attr}")


def test_missing_module_and_missing_dependency_are_told_apart(usermod):
    with pytest.raises(ConfigError, match=r"module 'no_such_pkg\.mod' is not importable here "
                       r"\(no module named 'no_such_pkg'\); install its package or add its "
                       "folder to PYTHONPATH on every machine"):
        TrainSpec(model="no_such_pkg.mod:build")
    with pytest.raises(ConfigError, match=r"importing module '.*_broken' failed: No module "
                       "named 'missing_dependency_xyz'"):
        TrainSpec(model=f"{usermod}_broken:build")


@pytest.mark.parametrize("path", ["mod:", ":f", "a b:f", "mod:f:g", "mod.:f"])
def test_malformed_import_path(path):
    with pytest.raises(ConfigError, match="write it as 'package.module:factory'"):
        TrainSpec(model=path)


def test_factory_gets_the_arguments_it_accepts(usermod):
    values = {"num_classes": 10, "in_channels": 1, "image_size": 28}

    def call(attr):
        path = f"{usermod}:{attr}"
        return registry.call_factory(path, registry.load_factory(path), values)

    assert call("plain") == ("plain", ())
    assert call("some") == ((10, 28), ("num_classes", "image_size"))
    assert call("kw_only") == (1, ("in_channels",))
    assert call("everything") == (values, tuple(values))
    with pytest.raises(ConfigError) as info:
        call("boom")
    assert str(info.value) == (
        f"Model '{usermod}:boom': the factory raised ValueError: bad size when called as "
        "boom(num_classes=10); fix the factory or the settings it receives."
    )


# --- the table ------------------------------------------------------------------------
def test_one_entry_holds_a_models_facts():
    assert registry.list_models() == list(MODELS)
    fc, vgg, resnet = (registry.get_model_entry(n) for n in ("fc", "vgg11", "resnet18"))
    assert dict(fc.reads) == {"depth": 2, "width": 64, "batch_norm": False}
    assert (fc.activations, fc.gray_channels) == ("injected", 1)
    assert (dict(vgg.reads), vgg.min_image_size, vgg.activations) == (
        {"batch_norm": False}, 32, "injected")
    assert (dict(resnet.reads), resnet.min_image_size, resnet.activations) == ({}, 28, "replaced")
    assert dict(registry.get_model_entry("mobilenet_v3_large").reads) == {"width_mult": 1.0}
    tv = registry.get_model_entry("mnasnet0_5")
    assert (tv.kind, dict(tv.reads), tv.activations) == ("torchvision", {}, "replaced")
    assert registry.readers_of("batch_norm") == ["fc", "resnet18_cifar", "vgg11"]


def test_the_table_imports_no_torch():
    code = ("import sys; import hpo.engine.models.registry as r; import hpo.engine.spec; "
            "r.get_model_entry('vgg11'); assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registering_a_builtin_is_one_entry(monkeypatch):
    monkeypatch.setattr(registry, "_BUILTINS", dict(registry.BUILTINS))
    registry.register_model(registry.ModelEntry(
        "tiny", "builtin", "hpo.engine.models.build:fc", {"depth": 1, "width": 4},
        activations="injected", gray_channels=1,
    ))
    spec = TrainSpec(model="tiny")
    assert (spec.depth, spec.width, spec.batch_norm) == (1, 4, None)
    with pytest.raises(ConfigError, match="batch_norm=True is not read by model 'tiny'"):
        TrainSpec(model="tiny", batch_norm=True)
    from hpo.engine.models.build import build_model

    sizes = [m.out_features for m in build_model(spec).model if hasattr(m, "out_features")]
    assert sizes == [4, 10]
    with pytest.raises(ValueError, match="unknown model settings"):
        registry.register_model(registry.ModelEntry("bad", "builtin", "m:f", {"heads": 2}))


def test_close_model_names_are_suggested_once_each():
    with pytest.raises(ConfigError) as info:
        TrainSpec(model="resnet")
    hint = str(info.value).split("did you mean ")[1].split("?")[0]
    names = [n.strip("' ") for n in hint.split(",")]
    assert "resnet50" in names and len(names) == len(set(names))


def test_a_dot_written_for_the_colon_is_pointed_out():
    with pytest.raises(ConfigError, match=r"Unknown model 'mynet\.build': did you mean "
                       r"'mynet:build' \(an import path puts a colon before the factory\)\?"):
        TrainSpec(model="mynet.build")
    with pytest.raises(ConfigError, match=r"did you mean 'a\.b:c'"):
        TrainSpec(model="a.b.c")


def test_an_import_path_reads_the_settings_its_factory_accepts(tmp_path, monkeypatch):
    name = f"hpo_readsmod_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent('''
        from torch import nn
        def net(num_classes, in_channels, image_size, width=12, depth=None):
            depth = depth or 1
            layers = [nn.Flatten(), nn.Linear(in_channels * image_size ** 2, width), nn.ReLU()]
            layers += [nn.Linear(width, width), nn.ReLU()] * (depth - 1)
            return nn.Sequential(*layers, nn.Linear(width, num_classes))
        def anything(**kwargs):
            return kwargs
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = f"{name}:net"
    entry = registry.get_model_entry(path)
    assert (entry.kind, dict(entry.reads)) == ("import", {"depth": None, "width": 12})
    spec = TrainSpec(model=path)
    assert spec.to_dict()["width"] == 12 and "depth" not in spec.to_dict()
    with pytest.raises(ConfigError, match=rf"width_mult=0.5 is not read by model '{path}' "
                       r"\(it reads: depth, width\)"):
        TrainSpec(model=path, width_mult=0.5)
    from hpo.engine.models.build import build_model

    model = build_model(TrainSpec(model=path, width=5, depth=2)).model
    assert [m.out_features for m in model.modules() if hasattr(m, "out_features")] == [5, 5, 10]
    assert set(registry.get_model_entry(f"{name}:anything").reads) == set(
        registry.MODEL_SETTINGS)
    sys.modules.pop(name, None)
