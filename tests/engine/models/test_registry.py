from __future__ import annotations

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
