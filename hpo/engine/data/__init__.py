"""Datasets: the registry, files and checksums, one reader per format, and a run's splits
and batches.

:mod:`.registry` (name -> channels, size, classes), :mod:`.fetch` (lookup, MD5, download),
readers :mod:`.idx` (MNIST), :mod:`.archives` (CIFAR-10, SVHN), :mod:`.imagefolder` and
:mod:`.streamed` (image folders); :mod:`.loading` (any name -> splits), :mod:`.splits`,
:mod:`.tensors`, :mod:`.batches`, :mod:`.augment`.
"""

__all__ = [
    "archives", "augment", "batches", "fetch", "idx", "imagefolder", "loading", "registry",
    "splits", "streamed", "tensors",
]
