"""Numerics: how a run's numbers are made and recorded.

:mod:`.precision` (dtypes, autocast, optimizer epsilon), :mod:`.flags` (TF32 and
reduced-precision reductions, set and restored), :mod:`.platform` (the platform record
stored beside every result).
"""

__all__ = ["flags", "platform", "precision"]
