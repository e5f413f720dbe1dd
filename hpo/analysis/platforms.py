"""Did the trials a comparison pairs or groups run on one platform?

Reads each trial's ``platform`` user attribute (the dict of
:func:`hpo.engine.numerics.platform.platform_record`); two records are the same platform when they
agree on :data:`hpo.engine.numerics.platform.COMPARED_KEYS`. Trials from before the record existed
have none: they are counted and left unchecked.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from hpo.analysis.trials import Pair, TrialRecord, group_label
from hpo.engine.numerics.platform import COMPARED_KEYS, platform_summary

__all__ = ["platform_key", "platform_notes"]

_MAX_LISTED = 5  # pairs named in a warning


def platform_key(record: dict[str, Any]) -> str:
    """The part of a platform record that decides which kernels ran, as canonical JSON."""
    return json.dumps({k: record.get(k) for k in COMPARED_KEYS}, sort_keys=True, default=str)


def _differing(records: Sequence[dict[str, Any]]) -> list[str]:
    """The compared keys (``flags.NAME`` for one flag) whose values are not all equal."""
    out = []
    for key in COMPARED_KEYS:
        values = [r.get(key) for r in records]
        if all(v == values[0] for v in values):
            continue
        if key == "flags" and all(isinstance(v, dict) for v in values):
            names = sorted({n for v in values for n in v})
            out += [f"flags.{n}" for n in names if len({json.dumps(v.get(n)) for v in values}) > 1]
        else:
            out.append(key)
    return out


def _describe(records: Sequence[dict[str, Any]], counts: Sequence[int]) -> str:
    keys = _differing(records)
    summaries = [platform_summary(r) for r in records]
    if len(set(summaries)) < len(summaries):  # the one-line summary hides the difference
        summaries = [
            f"{s} [{', '.join(f'{k}={_value(r, k)}' for k in keys)}]"
            for s, r in zip(summaries, records)
        ]
    listed = "; ".join(f"{s}: {n} trial(s)" for s, n in zip(summaries, counts))
    return f"differing in {', '.join(keys)} ({listed})"


def _value(record: dict[str, Any], key: str) -> Any:
    if key.startswith("flags."):
        return (record.get("flags") or {}).get(key.split(".", 1)[1])
    return record.get(key)


def platform_notes(
    records: Iterable[TrialRecord], pairs: Sequence[Pair]
) -> tuple[list[str], str | None]:
    """Warnings for groups and pairs whose completed trials ran on different platforms, and a
    note on how many completed trials have no platform record (None when all have one).
    """
    complete = [r for r in records if r.complete]
    by_number = {r.number: r for r in complete}
    warnings_: list[str] = []
    for group in sorted({r.group for r in complete}):
        recorded = [r.platform for r in complete if r.group == group and r.platform]
        counts = Counter(platform_key(p) for p in recorded)
        if len(counts) > 1:
            first = {platform_key(p): p for p in recorded}
            keys = list(counts)
            warnings_.append(
                f"{group_label(group)}: its completed trials ran on {len(counts)} platforms, "
                f"{_describe([first[k] for k in keys], [counts[k] for k in keys])}; bitwise "
                "identity, kink hits and accuracy can differ by platform alone"
            )
    mixed = []
    for p in pairs:
        a, b = by_number.get(p.tuned), by_number.get(p.default)
        if a and b and a.platform and b.platform and platform_key(a.platform) != platform_key(
            b.platform
        ):
            mixed.append((p, a.platform, b.platform))
    if mixed:
        named = ", ".join(f"{p.tuned} vs {p.default}" for p, _, _ in mixed[:_MAX_LISTED])
        more = f" and {len(mixed) - _MAX_LISTED} more" if len(mixed) > _MAX_LISTED else ""
        keys = sorted({k for _, x, y in mixed for k in _differing([x, y])})
        warnings_.append(
            f"{len(mixed)} of {len(pairs)} pairs ran on different platforms (tuned vs "
            f"default trial {named}{more}; differing in {', '.join(keys)}): such a pair's "
            "difference mixes the platform with the derivative"
        )
    missing = sum(r.platform is None for r in complete)
    note = None
    if missing:
        note = (
            f"{missing} of {len(complete)} completed trials have no platform record (run "
            "before platforms were recorded): their platform is not checked"
        )
    return warnings_, note
