"""What to say when an analysis found no input exactly on a kink.

With no kink hit, ReLU'(0) is never read and every ReLU'(0) gives bitwise the same result:
an empty result is then a fact about the setting, not evidence that ReLU'(0) never matters.
``hpo diverge``, ``hpo compare`` and ``hpo probe`` print :func:`no_kink_line` in that case.
"""

from __future__ import annotations

__all__ = ["KINK_LIKELY", "no_kink_line"]

KINK_LIKELY = (
    "kinks are hit more often with unnormalised inputs (--no-normalize), a lower precision "
    "(float16, bfloat16), wider or deeper layers, and more samples (a larger train subset, "
    "more epochs)"
)


def no_kink_line(what: str) -> str:
    """One line: ``what`` (e.g. ``"these 12 trials"``) never put an activation input exactly
    on a kink, so ReLU'(0) was never read; and what makes kinks likely."""
    return (f"No kink hit: {what} never put an activation input exactly on a kink, so "
            f"ReLU'(0) was never read and cannot have changed anything; {KINK_LIKELY}.")
