"""What one training run is: a frozen, validated description and its result.

The engine knows nothing of Optuna, YAML or the CLI: those turn their inputs into a
:class:`TrainSpec` and read a :class:`TrainResult`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from hpo.engine.data.registry import DATASETS, DatasetInfo, dataset_info
from hpo.engine.models.registry import BUILTIN_MODELS, check_model_name
from hpo.errors import ConfigError

__all__ = [
    "AUGMENTATIONS",
    "CHANNELS_LAST",
    "DATASETS",
    "DEVICES",
    "LR_SCHEDULES",
    "MODELS",
    "OPTIMIZERS",
    "PRECISIONS",
    "REDUCED_PRECISION_REDUCTION",
    "TF32_NEEDS_CUDA",
    "TrainResult",
    "TrainSpec",
]

# The built-ins (for help texts). ``TrainSpec.model`` also accepts any torchvision
# classification model name and an import path ``package.module:factory``
# (:mod:`hpo.engine.models.registry`).
MODELS = BUILTIN_MODELS
# Pure precisions train the whole model (and the optimizer state) in that dtype, as in the
# paper. The amp_* modes keep float32 parameters and run forward/backward under autocast.
# tf32 (CUDA only): float32 parameters, TF32 matmuls and convolutions; every other precision
# runs with TF32 off (hpo.engine.numerics.flags).
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
ACTIVATION_NAMES = ("relu", "relu6", "leaky_relu")
KINK_GRAD_MODES = ("multiply", "set")
# The training protocol (train.py): schedules stepped once per epoch, batched augmentation.
LR_SCHEDULES = ("none", "cosine", "step")
AUGMENTATIONS = ("none", "crop_flip")
CHANNELS_LAST = ("auto", "true", "false")

# Settings that only some models read: anything else set away from its default is an error.
MODEL_ONLY = {
    "depth": ("fc",),
    "width": ("fc",),
    "width_mult": ("mobilenet_v3_small", "mobilenet_v3_large"),
    "batch_norm": ("fc", "vgg11", "resnet18_cifar"),
}
# torchvision's ImageNet designs: too many downsamplings for smaller images.
_MIN_28 = ("mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50")


@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides the outcome of one training run.

    Two specs that differ only in the activation derivatives give runs with the same
    initial weights and the same batch order.
    """

    model: str = "fc"  # a built-in (MODELS), a torchvision name, or "package.module:factory"
    dataset: str = "mnist"
    # fully connected net: number of hidden layers and their width
    depth: int = 2
    width: int = 64
    batch_norm: bool = False
    # Recompute batch-norm statistics from training batches before each evaluation.
    bn_recalibration: bool = True
    width_mult: float = 1.0  # MobileNetV3 only
    activation: str = "relu"
    relu_prime_zero: float | None = None  # None: PyTorch's value (LeakyReLU: negative_slope)
    relu6_prime_six: float | None = None  # None: PyTorch's value, 0
    negative_slope: float = 0.01
    kink_grad: str = "multiply"
    channels: int | None = None  # None: the dataset's; gray datasets: 1 for fc, 3 for CNNs
    image_size: int | None = None  # None: the dataset's (image folders: 32); vgg11: >= 32
    normalize: bool = True
    batch_size: int = 128
    train_subset: int | None = None  # None: the whole training split
    val_size: int = 10000
    split_seed: int = 0
    precision: str = "float32"
    # cuBLAS float16/bfloat16 GEMMs: reduce in reduced precision (on/off) or PyTorch's default
    reduced_precision_reduction: str = "default"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD only
    adam_eps: float | None = None  # None: 1e-8, or float16's smallest normal in float16
    weight_decay: float = 0.0
    # --- training protocol (the paper's "SGD": momentum 0.9, weight_decay 5e-4) ---
    nesterov: bool = False  # SGD with momentum only
    lr_schedule: str = "none"  # per epoch: cosine over `epochs`, or step
    lr_step_epochs: int | None = None  # step: multiply lr by lr_gamma every this many epochs
    lr_gamma: float = 0.1  # step only
    augment: str = "none"  # crop_flip: random crop (padding 4) and horizontal flip
    channels_last: str = "auto"  # auto: on CUDA for conv nets
    epochs: int = 1
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.channels_last, bool):  # YAML's true/false
            object.__setattr__(self, "channels_last", str(self.channels_last).lower())
        self.validate()

    # ------------------------------------------------------------------------------
    @property
    def resolved_channels(self) -> int:
        if self.channels is not None:
            return self.channels
        if dataset_info(self.dataset).channels == 3:
            return 3
        return 1 if self.model == "fc" else 3

    @property
    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        native = dataset_info(self.dataset).image_size or _IMAGEFOLDER_SIZE
        return max(native, 32) if self.model == "vgg11" else native

    def replace(self, **changes: Any) -> TrainSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSpec:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"Unknown training setting(s) {unknown}. Valid settings are "
                f"{sorted(cls.field_names())}."
            )
        return cls(**values)

    # ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad value, what is allowed, and the fix."""
        check_model_name(self.model)
        info = dataset_info(self.dataset)
        _choice("activation", self.activation, ACTIVATION_NAMES)
        _choice("kink_grad", self.kink_grad, KINK_GRAD_MODES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("device", self.device, DEVICES)
        _choice(
            "reduced_precision_reduction", self.reduced_precision_reduction,
            REDUCED_PRECISION_REDUCTION,
        )
        if self.precision == "tf32" and self.device == "cpu":
            # device auto is checked where it is resolved (train, probe, each worker)
            raise ConfigError(f"{TF32_NEEDS_CUDA}, or set device: cuda (or auto).")
        self._validate_protocol()
        _int("depth", self.depth, 1)
        _int("width", self.width, 1)
        _int("batch_size", self.batch_size, 1)
        _int("val_size", self.val_size, 1)
        _int("epochs", self.epochs, 1)
        _int("seed", self.seed, 0)
        _int("split_seed", self.split_seed, 0)
        _bool("batch_norm", self.batch_norm)
        _bool("normalize", self.normalize)
        _bool("bn_recalibration", self.bn_recalibration)
        if self.train_subset is not None:
            _int("train_subset", self.train_subset, 1)
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"Invalid channels {self.channels!r}. Allowed: 1 or 3.")
        if self.channels == 1 and info.channels == 3 and info.image_size is not None:
            raise ConfigError(
                f"channels=1 does not fit dataset {self.dataset!r}, whose images have 3 "
                "channels; remove channels (or use an imagefolder: dataset, decoded to gray)."
            )
        _fits_dataset(info, self.val_size, self.train_subset)
        if self.image_size is not None:
            _int("image_size", self.image_size, 8)
        _real("lr", self.lr, positive=True)
        _real("width_mult", self.width_mult, positive=True)
        _real("momentum", self.momentum)
        _real("weight_decay", self.weight_decay)
        _real("negative_slope", self.negative_slope)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"Invalid momentum {self.momentum!r}: it must be in [0, 1).")
        if self.weight_decay < 0:
            raise ConfigError(f"Invalid weight_decay {self.weight_decay!r}: it must be >= 0.")
        if self.adam_eps is not None:
            _real("adam_eps", self.adam_eps, positive=True)
        for name in ("relu_prime_zero", "relu6_prime_six"):
            value = getattr(self, name)
            if value is not None:
                _real(name, value)
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
        defaults = _DEFAULTS
        for name, models in MODEL_ONLY.items():
            if self.model not in models and getattr(self, name) != defaults[name]:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} does not apply to model {self.model!r} "
                    f"(only to {list(models)}); remove it."
                )
        if self.model == "vgg11" and self.resolved_image_size < 32:
            raise ConfigError(
                f"image_size={self.resolved_image_size} is too small for vgg11, whose five "
                "max-pools need at least 32 pixels; set image_size: 32 or more."
            )
        if self.model in _MIN_28 and self.resolved_image_size < 28:
            raise ConfigError(
                f"image_size={self.resolved_image_size} is too small for {self.model}; "
                "use 28 or more."
            )


    def _validate_protocol(self) -> None:
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("augment", self.augment, AUGMENTATIONS)
        _choice("channels_last", self.channels_last, CHANNELS_LAST)
        _bool("nesterov", self.nesterov)
        _real("lr_gamma", self.lr_gamma, positive=True)
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
            _int("lr_step_epochs", self.lr_step_epochs, 1)
        elif self.lr_step_epochs is not None or self.lr_gamma != 0.1:
            raise ConfigError(
                f"lr_step_epochs/lr_gamma only apply to lr_schedule 'step', not "
                f"{self.lr_schedule!r}; remove them or set lr_schedule: step."
            )


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainSpec)}
_IMAGEFOLDER_SIZE = 32  # default image_size of image folders, which have no native size


def _fits_dataset(info: DatasetInfo, val_size: int, train_subset: int | None) -> None:
    """Reject a validation or training set larger than a dataset of known size (image
    folders are checked when they are read)."""
    n = info.train_size
    if n is None:
        return
    if val_size >= n:
        raise ConfigError(
            f"val_size={val_size} does not fit the {n} training images of {info.name!r}; "
            f"allowed 1 to {n - 1}; lower val_size."
        )
    if train_subset is not None and train_subset > n - val_size:
        raise ConfigError(
            f"train_subset={train_subset} with val_size={val_size} needs more than the {n} "
            f"training images of {info.name!r}; allowed train_subset: 1 to {n - val_size} "
            "(or lower val_size)."
        )


@dataclass
class TrainResult:
    """What a run reports. ``val_accuracy`` has one value per completed epoch."""

    val_accuracy: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_accuracy: float | None = None
    kink_hits: int = 0
    kink_hits_per_epoch: list[int] = field(default_factory=list)
    kink_hits_per_layer: dict[str, list[int]] = field(default_factory=dict)
    configured_activations: int = 0
    diverged: bool = False
    divergence_reason: str | None = None
    epochs_completed: int = 0
    params_sha256: str = ""
    device: str = "cpu"
    precision: str = "float32"
    optimizer_eps: float | None = None
    torch_version: str = ""
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    samples_per_second: float = 0.0
    train_samples: int = 0
    threads: int = 0  # torch CPU threads: some CPU kernels' bits depend on it
    # hpo.engine.numerics.platform.platform_record, read inside the run's numerics flags
    platform: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"Unknown {name} {value!r}. Valid values are {list(allowed)}.")


def _int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"Invalid {name} {value!r}: it must be an integer >= {minimum}.")
    if value < minimum:
        raise ConfigError(f"Invalid {name} {value!r}: it must be an integer >= {minimum}.")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"Invalid {name} {value!r}: it must be true or false.")


def _real(name: str, value: Any, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else True)
    if not ok:
        need = "a finite number > 0" if positive else "a finite number"
        raise ConfigError(f"Invalid {name} {value!r}: it must be {need}.")
