"""Analysis: what a study's trials say, as tables, tests, figures and reports.

:mod:`.api` holds what ``hpo export``, ``hpo compare`` and ``hpo reproduce`` do, as functions.
``hpo.analysis.compare.compare_study(study, cfg)`` compares tuned derivatives with
PyTorch's defaults (:mod:`.report` writes it out, :mod:`.publish` puts it in the
dashboard); :mod:`.export` (trials -> CSV), :mod:`.diverge` (weight divergence),
:mod:`.reproduce` (``hpo reproduce`` reports); helpers :mod:`.trials`, :mod:`.stats`,
:mod:`.best_per`, :mod:`.platforms`, :mod:`.dashboard`.
"""

__all__ = [
    "api", "best_per", "compare", "dashboard", "diverge", "export", "hints", "platforms", "publish",
    "report", "reproduce", "stats", "trials",
]
