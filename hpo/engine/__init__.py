"""The engine: one training run or one probe, from a :class:`~hpo.engine.spec.TrainSpec`.

``hpo.engine.train.train(spec)`` trains and returns a :class:`~hpo.engine.result.TrainResult`;
``hpo.engine.probe.bifurcation.run_probe(spec, ...)`` counts bifurcating gradients.
:mod:`.spec` (the run's settings, checked by :mod:`.checks`), :mod:`.step` (one
optimizer step's parts), :mod:`.result` (what a run measured), sub-packages :mod:`.models`,
:mod:`.data`, :mod:`.numerics`, :mod:`.probe`. Imports no other layer than :mod:`hpo.errors`.
"""

__all__ = [
    "checks", "data", "models", "numerics", "probe", "result", "spec", "step", "train",
]
