"""Weight divergence: how far ReLU'(0) alone moves the weights.

Per precision: a ReLU'(0) = 0 reference, a second one as control (distance exactly 0 on
CPU), one run per alpha; after every epoch the L1 distance ``sum |theta_alpha - theta_0|``
in float64 over every parameter element.
See docs/design.md#weight-divergence-runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hpo.engine.checks import derivative_note
from hpo.engine.numerics.flags import check_tf32_device
from hpo.engine.numerics.precision import resolve_precision
from hpo.engine.spec import TrainSpec
from hpo.engine.train import resolve_device, train
from hpo.errors import ConfigError
from hpo.objective.diverge import REFERENCE_PRIME, l1_distance

__all__ = [
    "REFERENCE_PRIME",
    "DivergenceResult",
    "RunRecord",
    "alpha_key",
    "alpha_notes",
    "l1_distance",
    "plot_divergence",
    "run_divergence",
    "validate_alphas",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """One training run of the experiment."""

    role: str  # "reference", "control" or "alpha"
    precision: str
    relu_prime_zero: float
    kink_hits: int
    kink_hits_per_epoch: list[int]
    epochs_completed: int
    diverged: bool
    divergence_reason: str | None
    val_accuracy: list[float]
    params_sha256: str


@dataclass
class DivergenceResult:
    """Per-epoch L1 distances from the ReLU'(0) = 0 reference.

    Attributes:
        spec: the settings shared by every run (its ``relu_prime_zero`` and ``precision``
            are replaced per run).
        alphas: the ReLU'(0) values compared with the reference, in the order given.
        precisions: the precisions, in the order given.
        epochs: ``[0, 1, ..., spec.epochs]``; epoch 0 is the initial weights.
        l1: ``l1[precision][alpha_key(alpha)][i]`` is the distance at ``epochs[i]``
            (``None`` where a run had stopped, e.g. diverged).
        control_l1: ``control_l1[precision][i]``, the second ReLU'(0) = 0 run.
        reference_l1_norm: ``||theta_0||_1`` per precision and epoch, to read ``l1`` against.
        n_params: parameter elements compared.
        runs: every run, with its kink hits.
        platform: per precision, the platform record of its reference run.
    """

    spec: TrainSpec
    alphas: tuple[float, ...]
    precisions: tuple[str, ...]
    epochs: list[int]
    l1: dict[str, dict[str, list[float | None]]]
    control_l1: dict[str, list[float | None]]
    reference_l1_norm: dict[str, list[float | None]]
    n_params: int
    runs: list[RunRecord] = field(default_factory=list)
    # hpo.engine.numerics.platform.platform_record of each precision's reference run
    platform: dict[str, dict[str, Any]] = field(default_factory=dict)
    # one line per alpha that is not a subgradient of the activation at 0 (allowed)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready. With one precision ``l1`` is ``{alpha: [per epoch]}`` and
        ``control_l1`` a list; with several, both gain a precision level
        (``l1[alpha][precision]``, ``control_l1[precision]``). ``l1_by_precision``
        (``[precision][alpha]``) has the same shape either way. ``platform`` is the first
        precision's platform record, ``platform_by_precision`` all of them."""
        single = len(self.precisions) == 1
        only = self.precisions[0]
        keys = [alpha_key(a) for a in self.alphas]
        if single:
            l1: dict[str, Any] = {k: self.l1[only][k] for k in keys}
            control: Any = self.control_l1[only]
        else:
            l1 = {k: {p: self.l1[p][k] for p in self.precisions} for k in keys}
            control = dict(self.control_l1)
        settings = {k: v for k, v in self.spec.to_dict().items() if k != "relu_prime_zero"}
        return {
            "epochs": self.epochs,
            "l1": l1,
            "control_l1": control,
            "l1_by_precision": self.l1,
            "control_l1_by_precision": self.control_l1,
            "reference_l1_norm": self.reference_l1_norm,
            "alphas": list(self.alphas),
            "precisions": list(self.precisions),
            "reference_relu_prime_zero": REFERENCE_PRIME,
            "n_params": self.n_params,
            "kink_hits": self.kink_hits(),
            "runs": [dataclasses.asdict(r) for r in self.runs],
            "settings": settings,
            "platform": self.platform.get(only),
            "platform_by_precision": self.platform,
            "notes": list(self.notes),
        }


    def kink_hits(self) -> dict[str, dict[str, int]]:
        """Kink hits per precision and run: ``reference``, ``control`` and each alpha key."""
        hits: dict[str, dict[str, int]] = {}
        for r in self.runs:
            name = r.role if r.role != "alpha" else alpha_key(r.relu_prime_zero)
            hits.setdefault(r.precision, {})[name] = r.kink_hits
        return hits


def alpha_key(alpha: float) -> str:
    """The JSON key of an alpha: ``"1"``, ``"0"``, ``"0.5"`` (round-trips to the float)."""
    alpha = float(alpha)
    return str(int(alpha)) if alpha.is_integer() else repr(alpha)


def validate_alphas(alphas: Iterable[Any]) -> tuple[float, ...]:
    """Alphas as floats; :class:`ConfigError` unless each is a distinct finite number. Any
    finite ReLU'(0) is allowed, as in ``hpo train`` (see :func:`alpha_notes`)."""
    values: list[float] = []
    for a in alphas:
        number = isinstance(a, (int, float)) and not isinstance(a, bool)
        if not number or not math.isfinite(a):
            raise ConfigError(
                f"Invalid alpha {a!r}: ReLU'(0) must be a finite number; pass values such as "
                "--alphas 0.5 1."
            )
        if float(a) in values:
            raise ConfigError(f"alpha {a!r} is given twice; list each ReLU'(0) value once.")
        values.append(float(a))
    if not values:
        raise ConfigError("No alphas given; pass at least one ReLU'(0), e.g. --alphas 1.")
    return tuple(values)


def alpha_notes(spec: TrainSpec, alphas: Iterable[float]) -> list[str]:
    """One line per alpha that is not a subgradient of ``spec``'s activation at 0."""
    found = (derivative_note("relu_prime_zero", a, spec.activation, spec.negative_slope)
             for a in alphas)
    return [n for n in found if n]


def run_divergence(
    spec: TrainSpec,
    *,
    alphas: Sequence[float],
    precisions: Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> DivergenceResult:
    """Train, per precision, a ReLU'(0) = 0 reference, a control and one run per alpha.

    Args:
        spec: shared settings; ``relu_prime_zero`` is replaced per run.
        alphas: ReLU'(0) values to compare with the reference (any finite value; one outside
            the subdifferential is logged and listed in ``notes``).
        precisions: precisions to run (default: ``[spec.precision]``).
        data_dir: dataset folder (default ``HPO_DATA_DIR``).

    Raises:
        ConfigError: a bad alpha or precision, or ``tf32`` without CUDA (before anything is
            trained).
    """
    alpha_values = validate_alphas(alphas)
    notes = alpha_notes(spec, alpha_values)
    for note in notes:
        log.warning("%s", note)
    names = tuple(precisions) if precisions is not None else (spec.precision,)
    if not names:
        raise ConfigError("No precisions given; pass at least one, e.g. --precisions float32.")
    for p in names:
        if names.count(p) > 1:
            raise ConfigError(f"precision {p!r} is given twice; list each precision once.")
        spec.replace(precision=p)  # validates the name and its fit with the other settings
        # tf32 with device auto on a machine without CUDA: refused before any run trains
        check_tf32_device(p, resolve_device(spec.device), spec.device)
    epochs = list(range(spec.epochs + 1))
    result = DivergenceResult(
        spec=spec, alphas=alpha_values, precisions=names, epochs=epochs, l1={},
        control_l1={}, reference_l1_norm={}, n_params=0, notes=notes,
    )
    for p in names:
        _measure(spec.replace(precision=p), alpha_values, data_dir, result)
    return result


def _measure(
    base: TrainSpec,
    alphas: tuple[float, ...],
    data_dir: str | os.PathLike[str] | None,
    result: DivergenceResult,
) -> None:
    """Reference, control and alpha runs in ``base.precision``, recorded into ``result``."""
    p, epochs = base.precision, result.epochs
    reference: dict[int, list[Tensor]] = {}
    platform: dict[str, Any] = {}
    result.runs.append(_train(base, REFERENCE_PRIME, "reference", data_dir,
                              lambda epoch, params: reference.__setitem__(epoch, params),
                              platform))
    result.platform[p] = platform
    result.n_params = sum(t.numel() for t in reference[0])
    zeros = [torch.zeros_like(t) for t in reference[0]]
    result.reference_l1_norm[p] = [
        l1_distance(reference[e], zeros) if e in reference else None for e in epochs
    ]
    result.l1[p] = {}
    for role, alpha in [("control", REFERENCE_PRIME)] + [("alpha", a) for a in alphas]:
        distances: list[float | None] = [None] * len(epochs)

        def compare(epoch: int, params: list[Tensor], out: list = distances) -> None:
            if epoch in reference:  # the reference may have diverged earlier
                out[epoch] = l1_distance(params, reference[epoch])

        result.runs.append(_train(base, alpha, role, data_dir, compare))
        log.info("diverge %s ReLU'(0)=%s (%s): L1 per epoch %s", p, alpha_key(alpha), role,
                 distances)
        if role == "control":
            result.control_l1[p] = distances
            if any(distances):
                log.warning("control runs differ (%s, L1 %s): training is not deterministic "
                            "here, so L1 includes run-to-run noise", p, distances)
        else:
            result.l1[p][alpha_key(alpha)] = distances


def _train(
    base: TrainSpec,
    alpha: float,
    role: str,
    data_dir: str | os.PathLike[str] | None,
    on_params: Callable[[int, list[Tensor]], None],
    platform: dict[str, Any] | None = None,
) -> RunRecord:
    """Train ``base`` with ReLU'(0) = alpha, passing a CPU copy of its parameters (in their
    own dtype) to ``on_params(epoch, params)`` at epoch 0 and after every epoch; the run's
    platform record is copied into ``platform`` when given."""
    spec = base.replace(relu_prime_zero=alpha)
    dtype = resolve_precision(spec.precision).param_dtype

    def observe(epoch: int, model: nn.Module) -> None:
        on_params(epoch, _snapshot(model, dtype))

    result = train(spec, data_dir=data_dir, observe_model=observe)
    if platform is not None:
        platform.update(result.platform)
    if result.diverged:
        log.warning("%s run ReLU'(0)=%s in %s diverged: %s", role, alpha_key(alpha),
                    spec.precision, result.divergence_reason)
    return RunRecord(
        role=role, precision=spec.precision, relu_prime_zero=alpha,
        kink_hits=result.kink_hits, kink_hits_per_epoch=list(result.kink_hits_per_epoch),
        epochs_completed=result.epochs_completed, diverged=result.diverged,
        divergence_reason=result.divergence_reason, val_accuracy=list(result.val_accuracy),
        params_sha256=result.params_sha256,
    )


def _snapshot(model: nn.Module, dtype: torch.dtype) -> list[Tensor]:
    # The cast is what train() applies to the freshly built float32 model (a no-op later).
    return [p.detach().to(device="cpu", dtype=dtype, copy=True) for p in model.parameters()]


def plot_divergence(result: DivergenceResult, path: str | os.PathLike[str]) -> Path:
    """Write a self-contained HTML plot (plotly.js inlined, no CDN): L1 per epoch on a log
    axis, one line per alpha and precision, the control dashed. Exact zeros, which a log
    axis cannot show, are drawn on a floor line marked "exactly 0". The result's JSON is
    embedded as ``<script type="application/json" id="divergence-data">``."""
    import plotly.graph_objects as go

    positive = [v for p in result.precisions for s in [*result.l1[p].values(),
                result.control_l1[p]] for v in s if v]
    floor = 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-12
    fig = go.Figure()
    dashes = ["solid", "dot", "dashdot", "longdash", "longdashdot"]
    for i, p in enumerate(result.precisions):
        series = [(f"control (0) {p}", result.control_l1[p], "dash")]
        series += [(f"alpha={k} {p}", v, dashes[i % len(dashes)]) for k, v in result.l1[p].items()]
        for name, values, dash in series:
            fig.add_trace(go.Scatter(
                x=result.epochs, y=[floor if v == 0 else v for v in values], name=name,
                mode="lines+markers", line={"dash": dash},
                marker={"symbol": ["x" if v == 0 else "circle" for v in values]},
                customdata=[("exactly 0" if v == 0 else f"{v:.6g}") if v is not None else "n/a"
                            for v in values],
                hovertemplate="epoch %{x}: L1 %{customdata}<extra>" + name + "</extra>",
            ))
    fig.add_hline(y=floor, line={"dash": "dot", "color": "grey"},
                  annotation_text="exactly 0 (x markers)", annotation_position="bottom right")
    s = result.spec
    fig.update_layout(
        title=f"||theta_alpha - theta_0||_1 per epoch: {s.model} on {s.dataset}, "
              f"{s.activation}, seed {s.seed}, {result.n_params} parameters",
        xaxis={"title": "epoch (0 = initial weights)", "dtick": 1},
        yaxis={"title": "L1 distance from ReLU'(0)=0", "type": "log"},
        template="plotly_white",
    )
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    data = json.dumps(result.to_dict()).replace("</", "<\\/")
    html = html.replace("</body>", f'<script type="application/json" id="divergence-data">'
                                   f"{data}</script>\n</body>", 1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
