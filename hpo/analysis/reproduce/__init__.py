"""Reports of the reproductions: our measurements beside the published numbers.

One module per ``hpo reproduce`` target; each reads the finished study, puts the published
figures (``hpo/analysis/paper/*.csv``, each row naming its source file) beside ours with
intervals, names the original code's defects next to the numbers they touch, writes text,
JSON, CSV and offline HTML, and draws its charts on the study page. Targets: ``section3``,
``section4``, ``epfl_initial``, ``epfl_fc``, ``epfl_hpo``, ``epfl_volume``.
"""

__all__ = ["epfl_fc", "epfl_hpo", "epfl_initial", "epfl_volume", "section3", "section4"]
