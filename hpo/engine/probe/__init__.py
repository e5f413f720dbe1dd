"""The bifurcation probe: how often do two values of ReLU'(0) give different gradients?

:mod:`.bifurcation` runs it (inits, passes, counts); :mod:`.batched` is the fast path for
fully connected nets, :mod:`.reference` the path for any model.
"""

__all__ = ["batched", "bifurcation", "reference"]
