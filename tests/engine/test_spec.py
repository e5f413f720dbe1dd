"""TrainSpec's field table, model settings that are given or not, and the derivative notes."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from hpo.engine.models import registry
from hpo.engine.models.activations import ACTIVATIONS
from hpo.engine.numerics import precision
from hpo.engine.spec import (
    ACTIVATION_NAMES,
    FIELDS,
    PRECISIONS,
    TrainSpec,
    derivative_note,
)
from hpo.errors import ConfigError


def test_every_field_carries_its_help_and_the_lists_are_tied():
    assert [r.name for r in FIELDS] == list(TrainSpec.field_names())
    assert all(r.meta["help"] for r in FIELDS)
    by_name = {r.name: r for r in FIELDS}
    assert by_name["precision"].meta["choices"] == PRECISIONS
    assert by_name["activation"].meta["choices"] == ACTIVATION_NAMES
    # the torch modules' tables are keyed by the spec's names, in its order
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    assert tuple(precision._PRECISIONS) == PRECISIONS
    assert all(precision.resolve_precision(p).name == p for p in PRECISIONS)


def test_validate_reads_the_table_and_stays_short():
    assert len(inspect.getsource(TrainSpec.validate).splitlines()) <= 80
    for name, bad, text in [("batch_size", 0, "integer >= 1"), ("lr", 0.0, "> 0"),
                            ("momentum", 1.0, "in [0, 1)"), ("weight_decay", -1.0, ">= 0"),
                            ("seed", -1, "integer >= 0"), ("channels", 2, "Allowed: 1 or 3"),
                            ("image_size", 4, "integer >= 8"), ("normalize", 1, "true or false")]:
        with pytest.raises(ConfigError, match=f"{name} {bad!r}.*{text}".replace("[", r"\[")
                           .replace("(", r"\(").replace(")", r"\)")):
            TrainSpec(**{name: bad})


def test_a_close_choice_is_suggested():
    with pytest.raises(ConfigError, match=r"Unknown precision 'fp16'. Did you mean 'float16'\?"):
        TrainSpec(precision="fp16")
    with pytest.raises(ConfigError, match=r"Did you mean width\?"):
        TrainSpec.from_dict({"widht": 3})


@pytest.mark.parametrize("model, setting, value", [
    ("resnet18", "width", 64), ("resnet18", "depth", 2), ("resnet18", "batch_norm", False),
    ("fc", "width_mult", 1.0), ("vgg11", "width", 64), ("mobilenet_v3_small", "batch_norm", True),
])
def test_a_setting_the_model_does_not_read_is_an_error_even_at_its_default(model, setting, value):
    with pytest.raises(ConfigError) as info:
        TrainSpec(model=model, **{setting: value})
    message = str(info.value)
    assert message.startswith(f"{setting}={value!r} is not read by model {model!r} (it ")
    reads = list(registry.get_model_entry(model).reads)
    assert (f"it reads: {', '.join(reads)}" if reads else "reads none of") in message
    assert message.endswith(f"remove {setting}.") and "\n" not in message


def test_model_settings_resolve_per_model_and_only_applied_ones_are_recorded():
    fc = TrainSpec()
    assert (fc.depth, fc.width, fc.batch_norm, fc.width_mult) == (2, 64, False, None)
    assert fc == TrainSpec(depth=2, width=64, batch_norm=False)  # same run, same spec
    d = fc.to_dict()
    assert (d["depth"], d["width"], d["batch_norm"], d["channels"]) == (2, 64, False, 1)
    assert "width_mult" not in d
    resnet = TrainSpec(model="resnet18").to_dict()
    assert not {"depth", "width", "batch_norm", "width_mult"} & set(resnet)
    assert resnet["channels"] == 3  # the channels used on gray MNIST, not null
    assert TrainSpec(model="mobilenet_v3_small").to_dict()["width_mult"] == 1.0
    assert TrainSpec(**d).to_dict() == d  # the record round-trips


def test_replace_resolves_again_for_a_new_model_but_keeps_what_was_given():
    assert TrainSpec().replace(model="resnet18").depth is None
    assert TrainSpec(model="vgg11").replace(model="fc").width == 64
    with pytest.raises(ConfigError, match="width=32 is not read by model 'resnet18'"):
        TrainSpec(width=32).replace(model="resnet18")
    assert TrainSpec(width=32).replace(seed=3).width == 32


def test_defaults_give_every_field_a_value():
    defaults = TrainSpec.defaults()
    assert set(defaults) == set(TrainSpec.field_names())
    assert (defaults["depth"], defaults["width"], defaults["width_mult"]) == (2, 64, 1.0)
    assert {f.name: f.default for f in dataclasses.fields(TrainSpec)}["width"] is None


def test_image_size_floor_and_default_come_from_the_model_entry():
    assert TrainSpec(model="vgg11").resolved_image_size == 32  # MNIST's 28 raised
    assert TrainSpec(model="resnet18").resolved_image_size == 28
    with pytest.raises(ConfigError, match=r"image_size=28 is too small for vgg11 \(its five "
                       r"max-pools need at least 32 pixels\); set image_size: 32 or more"):
        TrainSpec(model="vgg11", image_size=28)
    with pytest.raises(ConfigError, match="image_size=16 is too small for resnet50"):
        TrainSpec(model="resnet50", image_size=16)


def test_any_finite_derivative_is_accepted_and_outside_0_1_is_noted():
    for value in (-0.5, 2.0, 8.0, 50.0):
        spec = TrainSpec(relu_prime_zero=value)
        (note,) = spec.notes()
        assert note.startswith(f"relu_prime_zero={value:g} is outside [0, 1]")
        assert "not a subgradient of relu at 0" in note
    assert TrainSpec(relu_prime_zero=0.5).notes() == []
    relu6 = TrainSpec(activation="relu6", relu6_prime_six=6.0)
    assert "not a subgradient of relu6 at 6" in relu6.notes()[0]
    assert derivative_note("relu_prime_zero", 0.5, "leaky_relu", 0.01) is None
    with pytest.raises(ConfigError, match="finite number"):
        TrainSpec(relu_prime_zero=float("inf"))
