"""The dataset registry: name -> what a run needs to know without loading any data.

One table of channels, image size, classes, official split sizes and normalisation
constants, read by the engine and by the config layer (which imports this module, so it
imports no torch). Names: ``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn``,
``svhn_extra`` and ``imagefolder:PATH``. See docs/design.md#the-dataset-registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpo.errors import ConfigError

__all__ = [
    "DATASET_INFO",
    "DATASETS",
    "IMAGEFOLDER_PREFIX",
    "DatasetInfo",
    "dataset_info",
    "imagefolder_path",
]

IMAGEFOLDER_PREFIX = "imagefolder:"


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset before reading it.

    Attributes:
        name: the name a study or ``--dataset`` uses.
        channels: channels of the stored images (1 gray, 3 RGB).
        image_size: native height and width; ``None`` for image folders (any size, resized
            to the run's ``image_size``).
        num_classes: ``None`` for image folders (one class per ``train/`` sub-folder).
        mean, std: per-channel pixel mean and std after scaling to [0, 1], used to
            standardise the input.
        train_size, test_size: images in the official training and test splits (``None``
            for image folders: unknown until read).
    """

    name: str
    channels: int
    image_size: int | None
    num_classes: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int | None = None
    test_size: int | None = None

    def mean_std(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The constants for images with ``channels`` channels: a 3-channel dataset decoded
        to gray (image folders with ``channels: 1``) uses the average of its three."""
        if channels == len(self.mean):
            return self.mean, self.std
        if channels == 1:
            return (sum(self.mean) / len(self.mean),), (sum(self.std) / len(self.std),)
        raise ValueError(f"{self.name} has no normalisation constants for {channels} channels")


# CIFAR-10 and SVHN: the statistics of their training splits, as commonly published (for
# CIFAR-10 the per-pixel std, not the per-image one sometimes quoted as 0.2023/0.1994/0.2010).
# svhn_extra uses the train split's constants: the two differ in the third decimal.
# Image folders use ImageNet's, torchvision's convention for natural images.
_CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_SVHN_MEAN_STD = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
_IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,), 60000, 10000),
    "fashion_mnist": DatasetInfo("fashion_mnist", 1, 28, 10, (0.2860,), (0.3530,), 60000, 10000),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, *_CIFAR10_MEAN_STD, 50000, 10000),
    "svhn": DatasetInfo("svhn", 3, 32, 10, *_SVHN_MEAN_STD, 73257, 26032),
    "svhn_extra": DatasetInfo("svhn_extra", 3, 32, 10, *_SVHN_MEAN_STD, 531131, 26032),
}
# The names with a fixed meaning (``imagefolder:PATH`` comes on top).
DATASETS = tuple(DATASET_INFO)


def imagefolder_path(name: str) -> str | None:
    """``PATH`` of ``imagefolder:PATH``, or ``None`` for any other name."""
    if isinstance(name, str) and name.startswith(IMAGEFOLDER_PREFIX):
        return name[len(IMAGEFOLDER_PREFIX):]
    return None


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (``imagefolder:PATH`` included).

    Raises:
        ConfigError: an unknown name, or ``imagefolder:`` without a path.
    """
    path = imagefolder_path(name)
    if path is not None:
        if not path.strip():
            raise ConfigError(
                f"Invalid dataset {name!r}: the image folder path is empty; write "
                "imagefolder:/path/to/folder (holding train/ and test/)."
            )
        return DatasetInfo(name, 3, None, None, *_IMAGENET_MEAN_STD)
    if not isinstance(name, str) or name not in DATASET_INFO:
        raise ConfigError(
            f"Unknown dataset {name!r}. Valid values are {list(DATASETS)} or "
            f"'{IMAGEFOLDER_PREFIX}PATH' (a folder with train/ and test/ class folders)."
        )
    return DATASET_INFO[name]
