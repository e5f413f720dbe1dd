"""The engine: one training run or one probe, from a :class:`~hpo.engine.spec.TrainSpec`.

``hpo.engine.train.train(spec)`` trains and returns a ``TrainResult``;
``hpo.engine.probe.bifurcation.run_probe(spec, ...)`` counts bifurcating gradients.
:mod:`.spec` (the run's settings, checked), :mod:`.step` (one optimizer step's parts),
sub-packages :mod:`.models`, :mod:`.data`, :mod:`.numerics`, :mod:`.probe`. Imports no
other layer than :mod:`hpo.errors`.
"""

__all__ = ["data", "models", "numerics", "probe", "spec", "step", "train"]
