"""The ladder's verdict: which methods hold on each system, and the rung where each method breaks.

A suite asks for it with `[leaderboard] verdict = { window = "extrapolation" }`. A cell's score is
its *valid fraction* on that window: the share of the window's grid samples after the first that
lie within the cell's valid-prediction time (`valid_time`, the time from the first sample until
the std-normalised RMS error first exceeds its tolerance). On a uniform grid that is valid_time
over the window's length; on a log grid (chemistry spanning decades) it is the share of the
decades, so a forecast that fails in the first decade does not score 0.99 on time. For a system
without a protocol grid (`stiffbench.ode_system`) it is valid_time over the window's length. A cell that finished other
than `ok` or `n/a` (diverged, timeout, error) scores 0: it gave no usable forecast.

A method *holds* on a system when the median valid fraction over its seeds is at least `holds`
(default 0.9), *fails* below `fails` (default 0.1), and is *partial* in between; `n/a` when the
method does not apply. The verdict is computed from the store at render time, so it stays true
when the suite is rerun.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .store import CellRecord

KEY = "valid_time"
HOLDS, PARTIAL, FAILS, NA, MISSING = "holds", "partial", "fails", "n/a", "not run"


@dataclass
class Rung:
    """One system entry as the verdict sees it: its label, the window, the window's grid samples
    (None: unknown, the fraction is taken on time), the method labels that run on it and the cells."""

    label: str
    window: str
    t0: float
    t1: float
    samples: np.ndarray | None
    methods: list[str] = field(default_factory=list)
    records: list[CellRecord] = field(default_factory=list)


def valid_fraction(record: CellRecord, rung: Rung) -> float | None:
    """The share of the window's samples within the cell's valid time of the window's start; 0 for
    a cell without a usable forecast; None for an n/a cell or one whose valid time is undefined."""
    if record.status == "n/a":
        return None
    if record.status != "ok":
        return 0.0
    valid = record.metrics.get(rung.window, {}).get(KEY)
    if valid is None:
        return None
    if rung.samples is None or len(rung.samples) < 2:
        return min(1.0, valid / (rung.t1 - rung.t0))
    elapsed = rung.samples[1:] - rung.samples[0]
    return float(np.mean(elapsed <= valid * (1 + 1e-9)))


def judge(fractions: Sequence[float], holds: float, fails: float) -> str:
    """holds / partial / fails by the median of the seeds' valid fractions."""
    median = float(np.median(fractions))
    return HOLDS if median >= holds else FAILS if median < fails else PARTIAL


@dataclass
class Judgement:
    verdict: str
    median: float | None = None


def judgements(rung: Rung, holds: float, fails: float) -> dict[str, Judgement]:
    """The verdict of each method that runs on the rung."""
    out = {}
    for label in rung.methods:
        mine = [r for r in rung.records if r.label == label]
        fractions = [f for f in (valid_fraction(r, rung) for r in mine) if f is not None]
        if not mine:
            out[label] = Judgement(MISSING)
        elif not fractions:
            out[label] = Judgement(NA)
        else:
            out[label] = Judgement(judge(fractions, holds, fails), float(np.median(fractions)))
    return out


def render_verdict(rungs: Sequence[Rung], labels: Sequence[str], holds: float, fails: float,
                   tolerance_note: str) -> list[str]:
    """Markdown lines: one paragraph per system, then where each method (of `labels`, in that
    order) breaks, over the systems it runs on."""
    lines = [
        "## Verdict: where each method holds",
        "",
        f"A method *holds* on a system when the median over its seeds of the valid fraction on the "
        f"window named is at least {holds:g}, *fails* below {fails:g}, and is *partial* in between. The valid "
        f"fraction is the share of the window's samples forecast before the error first leaves the tolerance "
        f"({tolerance_note}); a cell that diverged, timed out or failed scores 0. Figures in brackets are "
        "the medians.",
        "",
    ]
    table = {rung.label: judgements(rung, holds, fails) for rung in rungs}
    for rung in rungs:
        verdicts = table[rung.label]
        parts = []
        for kind in (HOLDS, PARTIAL, FAILS):
            named = [f"{label} ({j.median:.2f})" for label, j in verdicts.items() if j.verdict == kind]
            if named:
                parts.append(f"{kind}: {', '.join(named)}")
        for kind in (NA, MISSING):
            named = [label for label, j in verdicts.items() if j.verdict == kind]
            if named:
                parts.append(f"{kind}: {', '.join(named)}")
        lines += [f"- **{rung.label}** ({rung.window} window [{rung.t0:g}, {rung.t1:g}]): " + "; ".join(parts) + ".", ""]
    lines += ["Where each method breaks, systems in the suite's order:", ""]
    for label in labels:
        verdicts = [(rung.label, table[rung.label][label].verdict) for rung in rungs if label in table[rung.label]]
        held = [system for system, verdict in verdicts if verdict == HOLDS]
        broke = next((system for system, verdict in verdicts if verdict in (PARTIAL, FAILS)), None)
        text = f"holds on {', '.join(held)}" if held else "holds on no system"
        text += f"; first falls short on {broke}" if broke else "; falls short on no system it ran on"
        lines += [f"- **{label}**: {text}.", ""]
    return lines
