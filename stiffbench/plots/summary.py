"""Per-system summary figures: cost against accuracy, and training curves.

Cost–accuracy: one marker per variant at its mean training wall time per cell (log axis) and the
mean of the table's primary metric over its ok seeds, with error bars of one sample standard
deviation (ddof=1) over seeds on both axes, in the manner of work–precision diagrams. Variants
whose primary metric is undefined for every ok seed are listed under the plot instead.

Training curves: each variant's stored loss per epoch (`stiffbench.curves`), one thin line per
seed, on a log loss axis (losses of different methods are on different scales: compare shapes and
plateaus, not heights). Variants without stored curves are listed under the plot.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ranking import PrimaryMetric, seed_values
from ..store import CellRecord


def cost_accuracy_figure(title: str, rows: Sequence[str], records: Sequence[CellRecord], window: str,
                         primary: PrimaryMetric, unit: str = ""):
    """The figure, or None when no row has both a training time and a primary value."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    ax = fig.subplots()
    missing = []
    markers = "osD^v<>pPhX*"
    drawn = 0
    for i, label in enumerate(rows):
        mine = [r for r in records if r.label == label and r.status == "ok"]
        values = np.array([v for _, v in seed_values(mine, window, primary.key)])
        times = np.array([r.train_s for r in mine if r.train_s is not None])
        if not len(values) or not len(times):
            missing.append(label)
            continue
        ax.errorbar(times.mean(), values.mean(), xerr=_std(times), yerr=_std(values), fmt=markers[i % len(markers)],
                    color=_colour(i), ms=6, capsize=3, label=f"{label} ({len(values)})")
        drawn += 1
    if not drawn:
        return None
    ax.set_xscale("log")
    plain = FuncFormatter(lambda x, _: f"{x:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("training wall time per cell (s)")
    ax.set_ylabel(f"{primary.key}" + (f" ({unit})" if unit else "") + f", {window} window ({primary.better} is better)")
    ax.set_title(title, fontsize=10)
    fig.legend(fontsize=7, loc="outside right upper", title="variant (ok seeds)", title_fontsize=7)
    if missing:
        fig.supxlabel(f"{primary.key} undefined for every ok seed: {', '.join(missing)}", fontsize=7)
    return fig


def curves_figure(title: str, rows: Sequence[str], records: Sequence[CellRecord]):
    """The figure, or None when no cell of the rows has a stored training curve."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    ax = fig.subplots()
    without = []
    for i, label in enumerate(rows):
        colour = _colour(i)
        curves = [r.curve for r in records if r.label == label and r.curve]
        if not curves:
            without.append(label)
            continue
        for k, curve in enumerate(curves):
            loss = np.array([np.nan if v is None else v for v in curve["loss"]], dtype=float)
            loss[loss <= 0] = np.nan  # a log axis shows positive losses only
            ax.plot(curve["epoch"], loss, color=colour, lw=0.8, alpha=0.7, label=label if k == 0 else None)
    if len(without) == len(rows):
        return None
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (each method's own)")
    ax.set_title(title, fontsize=10)
    fig.legend(fontsize=7, loc="outside right upper")
    if without:
        fig.supxlabel(f"no stored training curve: {', '.join(without)}", fontsize=7)
    return fig


def _colour(i: int):
    """20 colours (matplotlib's tab20): its ten hues first, then their light shades, so that up to
    ten variants differ in hue and up to twenty never share a colour."""
    from matplotlib import colormaps

    return colormaps["tab20"]((2 * i) % 20 + (i // 10) % 2)


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0
