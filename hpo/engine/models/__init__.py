"""Models: what a ``model:`` name means, how it is built, and proof that it carries the
configured derivatives at every kink.

:mod:`.registry` (the model table), :mod:`.build` (builders, activation injection),
:mod:`.cifar` (the paper's CIFAR networks), :mod:`.activations` and :mod:`.kinkscan` (the
kinked autograd Functions), :mod:`.routing` (functional calls), :mod:`.audit` (the proof).
"""

__all__ = ["activations", "audit", "build", "cifar", "kinkscan", "registry", "routing"]
