"""reluprime-hpo: treat ReLU'(0) as a hyperparameter and measure when it matters."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
