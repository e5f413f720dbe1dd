"""What one training run is: a frozen, validated description and its result.

The engine knows nothing of Optuna, YAML or the CLI: those turn their inputs into a
:class:`TrainSpec` and read a :class:`TrainResult`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any

from hpo.engine.checks import (
    check_bool,
    check_bounds,
    check_choice,
    check_fits_dataset,
    check_int,
    check_real,
    derivative_note,
)
from hpo.engine.data.registry import DATASETS, dataset_info
from hpo.engine.models.registry import (
    BUILTIN_MODELS,
    BUILTINS,
    MODEL_SETTINGS,
    ModelEntry,
    get_model_entry,
)
from hpo.errors import ConfigError

__all__ = [
    "ACTIVATION_NAMES",
    "AUGMENTATIONS",
    "CHANNELS_LAST",
    "DATASETS",
    "DEVICES",
    "KINK_GRAD_MODES",
    "LR_SCHEDULES",
    "MODELS",
    "OPTIMIZERS",
    "PRECISIONS",
    "REDUCED_PRECISION_REDUCTION",
    "TF32_NEEDS_CUDA",
    "FIELDS",
    "TrainSpec",
]

# The built-ins (for help texts). ``TrainSpec.model`` also accepts any torchvision
# classification model name and an import path ``package.module:factory``
# (:mod:`hpo.engine.models.registry`).
MODELS = BUILTIN_MODELS
# Pure precisions train the whole model (and the optimizer state) in that dtype, as in the
# paper. The amp_* modes keep float32 parameters and run forward/backward under autocast.
# tf32 (CUDA only): float32 parameters, TF32 matmuls and convolutions; every other precision
# runs with TF32 off (hpo.engine.numerics.flags). hpo.engine.numerics.precision derives its
# table from this tuple.
PRECISIONS = (
    "float16", "bfloat16", "float32", "tf32", "float64", "amp_float16", "amp_bfloat16",
)
# cuBLAS's float16/bfloat16 reduced-precision reductions: default leaves PyTorch's setting.
REDUCED_PRECISION_REDUCTION = ("default", "on", "off")
TF32_NEEDS_CUDA = (
    "precision 'tf32' needs a CUDA device (TF32 is an NVIDIA tensor-core format); "
    "on a CPU use float32"
)
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")
# hpo.engine.models.activations.ACTIVATIONS is built from this tuple.
ACTIVATION_NAMES = ("relu", "relu6", "leaky_relu")
KINK_GRAD_MODES = ("multiply", "set")
# The training protocol (train.py): schedules stepped once per epoch, batched augmentation.
LR_SCHEDULES = ("none", "cosine", "step")
AUGMENTATIONS = ("none", "crop_flip")
CHANNELS_LAST = ("auto", "true", "false")


def _setting(
    default: Any, help: str, *, choices: tuple[Any, ...] | None = None,
    minimum: float | None = None, below: float | None = None, positive: bool = False,
    training: bool = False,
) -> Any:
    """A TrainSpec field with its help, choices and bounds (read by ``validate`` and by the
    CLI's flags). ``training``: only matters when parameters are updated (not to a probe)."""
    return field(default=default, metadata={
        "help": help, "choices": choices, "minimum": minimum, "below": below,
        "positive": positive, "training": training,
    })


def _size_floors() -> str:
    """``"mobilenet_v3_small, ...: at least 28; vgg11: at least 32"`` from the model table."""
    floors: dict[int, list[str]] = {}
    for name, entry in BUILTINS.items():
        if entry.min_image_size > 8:
            floors.setdefault(entry.min_image_size, []).append(name)
    return "; ".join(f"{', '.join(n)}: at least {size}" for size, n in sorted(floors.items()))


_GRAY_1 = ", ".join(n for n, e in BUILTINS.items() if e.gray_channels == 1)
_MODEL_HELP = (
    "the network: a built-in (" + ", ".join(BUILTIN_MODELS) + "), any torchvision "
    "classification model name (e.g. mnasnet0_5), or your own network as package.module:factory"
)


@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides the outcome of one training run.

    Two specs that differ only in the activation derivatives give runs with the same
    initial weights and the same batch order. Model settings (depth, width, batch_norm,
    width_mult) are ``None`` when not given; a model that reads one gets its registry
    default, and giving one the model does not read is an error.
    """

    model: str = _setting("fc", _MODEL_HELP)
    dataset: str = _setting(
        "mnist", "mnist, fashion_mnist, cifar10, svhn, svhn_extra (SVHN's extra split) or "
        "imagefolder:PATH (PATH/train/<class>/, PATH/test/<class>/, optional PATH/val/)")
    depth: int | None = _setting(None, "number of hidden layers", minimum=1)
    width: int | None = _setting(None, "units per hidden layer", minimum=1)
    batch_norm: bool | None = _setting(
        None, "batch normalisation after each linear/conv layer")
    bn_recalibration: bool = _setting(
        True, "recompute batch-norm statistics from 32 training batches before each "
        "evaluation (short runs leave momentum averages far behind the weights)", training=True)
    width_mult: float | None = _setting(None, "width multiplier", positive=True)
    activation: str = _setting(
        "relu", "ReLU-family activation used everywhere in the model", choices=ACTIVATION_NAMES)
    relu_prime_zero: float | None = _setting(
        None, "derivative at 0 (default: PyTorch's, 0; leaky_relu: its slope)")
    relu6_prime_six: float | None = _setting(
        None, "relu6: derivative at 6 (default: PyTorch's, 0)")
    negative_slope: float = _setting(0.01, "leaky_relu: negative slope")
    kink_grad: str = _setting(
        "multiply", "'multiply' (chain rule) or 'set' (the paper's code: gradient := value)",
        choices=KINK_GRAD_MODES)
    channels: int | None = _setting(
        None, f"input channels, 1 or 3 (default: the dataset's; gray datasets: 1 for "
        f"{_GRAY_1}, 3 for the others)", choices=(1, 3))
    image_size: int | None = _setting(
        None, "resize images to this size (default: the dataset's, 28 or 32; image folders: "
        f"32; {_size_floors()})", minimum=8)
    normalize: bool = _setting(True, "standardise pixels with the dataset's mean and std")
    batch_size: int = _setting(128, "mini-batch size", minimum=1)
    train_subset: int | None = _setting(
        None, "number of training samples (the sample size; default: all)", minimum=1)
    val_size: int = _setting(10000, "validation samples split off the official training set",
                             minimum=1)
    split_seed: int = _setting(0, "seed of the train/validation split", minimum=0)
    precision: str = _setting(
        "float32", "dtype of the whole model; amp_* = float32 weights under autocast; tf32 "
        "(CUDA only) = float32 weights, TF32 matmuls and convolutions (every other precision "
        "runs with TF32 off)", choices=PRECISIONS)
    reduced_precision_reduction: str = _setting(
        "default", "CUDA float16/bfloat16 GEMMs: reduce in reduced precision (on), never "
        "(off), or PyTorch's setting (default; recorded in the result's platform)",
        choices=REDUCED_PRECISION_REDUCTION)
    optimizer: str = _setting("adam", "optimizer", choices=OPTIMIZERS, training=True)
    lr: float = _setting(1e-3, "learning rate", positive=True, training=True)
    momentum: float = _setting(0.0, "sgd: momentum", minimum=0, below=1, training=True)
    adam_eps: float | None = _setting(
        None, "adam: epsilon (default 1e-8; float16: its smallest normal, 6.1e-5)",
        positive=True, training=True)
    weight_decay: float = _setting(0.0, "weight decay", minimum=0, training=True)
    # --- training protocol (the paper's "SGD": momentum 0.9, weight_decay 5e-4) ---
    nesterov: bool = _setting(False, "sgd with momentum: Nesterov momentum", training=True)
    lr_schedule: str = _setting(
        "none", "learning-rate schedule, stepped once per epoch: none, cosine (from lr to 0 "
        "over the run's epochs) or step (lr * lr_gamma every lr_step_epochs)",
        choices=LR_SCHEDULES, training=True)
    lr_step_epochs: int | None = _setting(
        None, "lr_schedule step: epochs between two decays", minimum=1, training=True)
    lr_gamma: float = _setting(0.1, "lr_schedule step: decay factor", positive=True,
                               training=True)
    augment: str = _setting(
        "none", "training augmentation: none, or crop_flip (random 4-pixel-padded crop and "
        "horizontal flip, batched on the data's device, seeded by seed)",
        choices=AUGMENTATIONS, training=True)
    channels_last: str = _setting(
        "auto", "channels_last memory format: auto (CUDA and a conv net), true, false",
        choices=CHANNELS_LAST, training=True)
    shuffle: bool = _setting(
        True, "draw a new batch order every epoch (seeded by seed); false: the training "
        "split's own order, the same every epoch (a DataLoader without shuffle)", training=True)
    epochs: int = _setting(1, "training epochs", minimum=1, training=True)
    seed: int = _setting(0, "seed of the initial weights and the batch order", minimum=0)
    device: str = _setting("cpu", "cpu, cuda or auto", choices=DEVICES)

    def __post_init__(self) -> None:
        if isinstance(self.channels_last, bool):  # YAML's true/false
            object.__setattr__(self, "channels_last", str(self.channels_last).lower())
        self.validate()
        entry = self.model_entry
        given = frozenset(s for s in MODEL_SETTINGS if getattr(self, s) is not None)
        object.__setattr__(self, "_given", given)
        for name, default in entry.reads.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    # ------------------------------------------------------------------------------
    @property
    def model_entry(self) -> ModelEntry:
        """The registry's entry for ``model``."""
        return get_model_entry(self.model)

    @property
    def resolved_channels(self) -> int:
        if self.channels is not None:
            return self.channels
        if dataset_info(self.dataset).channels == 3:
            return 3
        return self.model_entry.gray_channels

    @property
    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        native = dataset_info(self.dataset).image_size or _IMAGEFOLDER_SIZE
        return max(native, self.model_entry.min_image_size)

    def model_settings(self) -> dict[str, Any]:
        """The model settings that apply to this model, as its builder receives them."""
        return {s: getattr(self, s) for s in self.model_entry.reads
                if getattr(self, s) is not None}

    def replace(self, **changes: Any) -> TrainSpec:
        """A copy with some fields changed (validated again). Model settings that were
        resolved, not given, are resolved again for the new model."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in set(MODEL_SETTINGS) - self._given:
            values.pop(name)
        return TrainSpec(**{**values, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The settings that applied: no model setting the model does not read, and the
        channels used (``channels`` resolved)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in MODEL_SETTINGS:
            if out[name] is None:
                del out[name]
        out["channels"] = self.resolved_channels
        return out

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default; a model setting's is the value a model reading it uses."""
        out = {f.name: f.default for f in dataclasses.fields(cls)}
        out.update(MODEL_SETTINGS)
        return out

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSpec:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            close = [m for u in unknown for m in difflib.get_close_matches(
                u, cls.field_names(), n=1)]
            hint = f" Did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
            raise ConfigError(
                f"Unknown training setting(s) {unknown}.{hint} Valid settings are "
                f"{sorted(cls.field_names())}."
            )
        return cls(**values)

    def notes(self) -> list[str]:
        """One line per derivative outside the activation's subdifferential (allowed)."""
        pairs = [("relu_prime_zero", self.relu_prime_zero),
                 ("relu6_prime_six", self.relu6_prime_six)]
        found = (derivative_note(n, v, self.activation, self.negative_slope) for n, v in pairs)
        return [n for n in found if n]

    # ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad value, what is allowed, and the fix."""
        entry = get_model_entry(self.model)
        info = dataset_info(self.dataset)
        _check_fields(self)
        if self.precision == "tf32" and self.device == "cpu":
            # device auto is checked where it is resolved (train, probe, each worker)
            raise ConfigError(f"{TF32_NEEDS_CUDA}, or set device: cuda (or auto).")
        self._validate_protocol()
        if self.channels == 1 and info.channels == 3 and info.image_size is not None:
            raise ConfigError(
                f"channels=1 does not fit dataset {self.dataset!r}, whose images have 3 "
                "channels; remove channels (or use an imagefolder: dataset, decoded to gray)."
            )
        check_fits_dataset(info, self.val_size, self.train_subset)
        self._validate_pairs()
        _check_model_settings(self, entry)
        size = self.resolved_image_size
        if size < entry.min_image_size:
            raise ConfigError(
                f"image_size={size} is too small for {self.model} ({entry.size_reason}); "
                f"set image_size: {entry.min_image_size} or more."
            )

    def _validate_pairs(self) -> None:
        """Settings that only apply with one activation or optimizer."""
        if self.relu6_prime_six is not None and self.activation != "relu6":
            raise ConfigError(
                f"relu6_prime_six={self.relu6_prime_six} only applies to activation 'relu6', "
                f"not {self.activation!r}; remove it or set activation: relu6."
            )
        if self.negative_slope != 0.01 and self.activation != "leaky_relu":
            raise ConfigError(
                f"negative_slope={self.negative_slope} only applies to activation "
                f"'leaky_relu', not {self.activation!r}; remove it or set activation: leaky_relu."
            )
        if self.momentum != 0.0 and self.optimizer != "sgd":
            raise ConfigError(
                f"momentum={self.momentum} only applies to optimizer 'sgd', not "
                f"{self.optimizer!r}; remove it or set optimizer: sgd."
            )
        if self.adam_eps is not None and self.optimizer != "adam":
            raise ConfigError(
                f"adam_eps={self.adam_eps} only applies to optimizer 'adam'; remove it."
            )

    def _validate_protocol(self) -> None:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError(
                "nesterov=true needs optimizer 'sgd' with momentum > 0; set optimizer: sgd "
                "and momentum (e.g. 0.9), or remove nesterov."
            )
        if self.lr_schedule == "step":
            if self.lr_step_epochs is None:
                raise ConfigError(
                    "lr_schedule 'step' needs lr_step_epochs (e.g. 30: lr * lr_gamma every "
                    "30 epochs); set it or use lr_schedule: cosine."
                )
        elif self.lr_step_epochs is not None or self.lr_gamma != 0.1:
            raise ConfigError(
                f"lr_step_epochs/lr_gamma only apply to lr_schedule 'step', not "
                f"{self.lr_schedule!r}; remove them or set lr_schedule: step."
            )


def _check_model_settings(spec: TrainSpec, entry: ModelEntry) -> None:
    """A model setting given to a model that does not read it is an error."""
    for name in MODEL_SETTINGS:
        value = getattr(spec, name)
        if value is None or name in entry.reads:
            continue
        reads = f"reads: {', '.join(entry.reads)}" if entry.reads else (
            f"reads none of {', '.join(MODEL_SETTINGS)}")
        raise ConfigError(
            f"{name}={value!r} is not read by model {spec.model!r} (it {reads}); "
            f"remove {name}."
        )


_IMAGEFOLDER_SIZE = 32  # default image_size of image folders, which have no native size


@dataclass(frozen=True)
class _Field:
    """One row of the field table: a TrainSpec field's type and its metadata."""

    name: str
    kind: type  # bool, int, float or str
    optional: bool  # None allowed (not given)
    meta: typing.Mapping[str, Any]


def _field_table() -> tuple[_Field, ...]:
    hints = typing.get_type_hints(TrainSpec)
    rows = []
    for f in dataclasses.fields(TrainSpec):
        args = typing.get_args(hints[f.name])
        kind = next((a for a in args if a is not type(None)), hints[f.name])
        rows.append(_Field(f.name, kind, type(None) in args, f.metadata))
    return tuple(rows)


FIELDS = _field_table()


def _check_fields(spec: TrainSpec) -> None:
    """Type, choices and bounds of every field, from the field table."""
    for row in FIELDS:
        value = getattr(spec, row.name)
        if value is None and row.optional:
            continue
        meta = row.meta
        if meta["choices"] is not None:
            check_choice(row.name, value, meta["choices"])
        elif row.kind is bool:
            check_bool(row.name, value)
        elif row.kind is int:
            check_int(row.name, value, meta["minimum"])
        elif row.kind is float:
            check_real(row.name, value, positive=meta["positive"])
            check_bounds(row.name, value, meta["minimum"], meta["below"])


