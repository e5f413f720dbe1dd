"""Build each model a study names once, when its file is loaded, so a bad one fails
before a study or trial is written.

Built-ins are trusted (their builders are tested); a torchvision name or an import path
``package.module:factory`` is built by :func:`hpo.engine.models.build.check_model` on a tiny
example batch: a factory that raises, returns something other than an ``nn.Module``, or
gives outputs that are not ``(batch, classes)`` is one line naming the key and the fix.
The import happens in the process that loads the file, from its own environment: every
worker checks it again when it loads the study, with the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from hpo.config.yamlfile import Checker, one_line
from hpo.engine.models.registry import model_kind
from hpo.engine.spec import TrainSpec
from hpo.errors import ConfigError, ModelAuditError

__all__ = ["check_models"]


def check_models(
    checker: Checker, fixed: Mapping[str, Any], space: Mapping[str, BaseDistribution]
) -> None:
    """Build every non-built-in model of ``train:`` and of a searched ``model`` once."""
    searched = space.get("model")
    if isinstance(searched, CategoricalDistribution):
        names = [(f"search_space.model.choices[{i}]", m) for i, m in enumerate(searched.choices)]
    else:
        names = [("train.model", fixed.get("model", TrainSpec().model))]
    for key, name in names:
        if not isinstance(name, str) or model_kind(name) == "builtin":
            continue
        try:
            spec = TrainSpec(**{**fixed, "model": name})
        except (ConfigError, TypeError, ValueError):
            continue  # invalid with these settings: the combination checks said why
        from hpo.engine.models.build import check_model  # torch only when a model needs it

        try:
            check_model(spec)
        except (ConfigError, ModelAuditError) as exc:  # both bad input: exit 2
            # the engine's message already names the fix
            raise checker.error(key, one_line(exc), name) from exc
