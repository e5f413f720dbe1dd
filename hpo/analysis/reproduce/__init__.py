"""Reports of the reproductions: our measurements beside the published numbers.

One module per ``hpo reproduce`` target; each reads the finished study, puts the published
figures (``hpo/analysis/paper/*.csv``, each row naming its source file) beside ours with
intervals, and writes text, JSON, CSV and offline HTML. ``section3``: Section 3's volumes.
"""

__all__ = ["section3"]
