"""The forecast figure of one cell: the stored forecast against the clean reference, the training
window shaded and the noisy observations drawn in it.

Spiking systems: the voltage over time, a spike raster (reference and forecast) over the whole
horizon, a phase portrait of the voltage against the recovery state (`n` for Hodgkin–Huxley, else
the first other state) after the training window, and one panel per remaining state. Other
systems: one panel per state over time and a phase portrait of the first two states (over the
whole horizon on a log time grid). Panels over
time span `time_span` (the caller's choice: the training window and the first evaluation window,
where a drift starts) on a linear axis, or the whole horizon on a log axis when the observations
are log-spaced. Each panel's y range
is the reference's range widened by half its span on both sides (and to any physical bounds, drawn
dotted), so a forecast that stays near the truth is readable and one that leaves it is visibly cut
off at the edge (and says so); the first non-finite forecast time is marked by a dashed line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..api import Spiking, SpikeSettings, Trajectory
from ..spikes import detect_spikes

TRUTH, FORECAST, OBSERVED, SHADE = "black", "tab:red", "tab:blue", "0.9"
RECOVERY_STATE = "n"  # Hodgkin–Huxley's potassium activation, the classic recovery variable
LOG_SPACING_RTOL = 1e-3  # successive log-time steps this close count as one log grid


@dataclass
class CellView:
    """What one forecast figure shows: times and values in the system's units."""

    title: str
    forecast: Trajectory
    truth: Trajectory  # on the forecast's times
    observations: Trajectory
    train_window: tuple[float, float]
    time_span: tuple[float, float]  # of the panels over time on a linear axis
    time_unit: str
    state_units: dict[str, str]
    bounds: dict[str, tuple[float, float]]
    spikes: SpikeSettings | None  # None: not a spiking system


def panel_count(view: CellView) -> int:
    """The number of panels `forecast_figure` draws for this view."""
    n = len(view.truth.state_names)
    if view.spikes is not None:
        return 3 + n - 1
    return n + (1 if n >= 2 else 0)


def forecast_figure(view: CellView):
    """A matplotlib Figure (Agg canvas, no pyplot state) of the view."""
    from matplotlib.figure import Figure

    n_panels = panel_count(view)
    ncols = 1 if n_panels <= 3 else 2
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(6.5 * ncols, 2.3 * nrows + 0.6), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for extra in axes[n_panels:]:
        extra.remove()
    axes = axes[:n_panels]
    fig.suptitle(view.title, fontsize=10)
    log_time = is_log_spaced(view.observations.t)
    names = list(view.truth.state_names)
    if view.spikes is not None:
        voltage = view.spikes.state
        others = [s for s in names if s != voltage]
        recovery = RECOVERY_STATE if RECOVERY_STATE in others else others[0]
        _time_panel(axes[0], view, voltage, log_time)
        _raster_panel(axes[1], view)
        _phase_panel(axes[2], view, voltage, recovery, log_time)
        for ax, state in zip(axes[3:], others):
            _time_panel(ax, view, state, log_time)
    else:
        for ax, state in zip(axes, names):
            _time_panel(ax, view, state, log_time)
        if len(names) >= 2:
            _phase_panel(axes[len(names)], view, names[0], names[1], log_time)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, frameon=False)
    return fig


def is_log_spaced(t: np.ndarray) -> bool:
    """Whether the positive times are a geometric sequence spanning at least two decades."""
    t = np.asarray(t, dtype=float)
    t = t[t > 0]
    if len(t) < 3 or t[-1] / t[0] < 100:
        return False
    steps = np.diff(np.log(t))
    return bool(np.allclose(steps, steps.mean(), rtol=LOG_SPACING_RTOL))


def _label(name: str, units: dict[str, str]) -> str:
    unit = units.get(name, "")
    return f"{name} ({unit})" if unit else name


def _time_label(view: CellView) -> str:
    return f"t ({view.time_unit})" if view.time_unit else "t"


def _column(traj: Trajectory, state: str) -> np.ndarray:
    return traj.y[:, traj.state_names.index(state)]


def _time_panel(ax, view: CellView, state: str, log_time: bool) -> None:
    t = view.truth.t
    keep = t > 0 if log_time else (t >= view.time_span[0]) & (t <= view.time_span[1])
    ax.axvspan(*view.train_window, color=SHADE, label="training window")
    truth, pred = _column(view.truth, state)[keep], _column(view.forecast, state)[keep]
    ax.plot(t[keep], truth, color=TRUTH, lw=1.0, label="reference")
    clipped = _set_limits(ax, truth, pred, view.bounds.get(state))
    ax.plot(t[keep], pred, color=FORECAST, lw=1.0, label="forecast")
    if state in view.observations.state_names:
        obs = view.observations
        shown = obs.t > 0 if log_time else np.ones(len(obs.t), dtype=bool)
        ax.plot(obs.t[shown], _column(obs, state)[shown], ".", color=OBSERVED, ms=2, label="observations")
    bad = np.flatnonzero(~np.isfinite(pred))
    if bad.size:
        ax.axvline(t[keep][bad[0]], color=FORECAST, ls="--", lw=0.8)
    if clipped:
        ax.text(0.99, 0.02, "forecast leaves the axis" + (" (non-finite: dashed)" if bad.size else ""),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color=FORECAST)
    if log_time:
        ax.set_xscale("log")
    else:
        ax.set_xlim(*view.time_span)
    ax.set_xlabel(_time_label(view))
    ax.set_ylabel(_label(state, view.state_units))


def _set_limits(ax, truth: np.ndarray, pred: np.ndarray, bounds: tuple[float, float] | None) -> bool:
    """Set the y range from the reference and the bounds within one reference span of it (drawn);
    whether the forecast leaves that range."""
    lo, hi = np.nanmin(truth), np.nanmax(truth)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    for b in (bounds or ()):
        if np.isfinite(b) and lo - span <= b <= hi + span:  # a bound far from the data would flatten it
            lo, hi = min(lo, b), max(hi, b)
            ax.axhline(b, color="0.5", ls=":", lw=0.8)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    lo, hi = lo - 0.5 * span, hi + 0.5 * span
    ax.set_ylim(lo, hi)
    finite = pred[np.isfinite(pred)]
    return bool(finite.size and (finite.min() < lo or finite.max() > hi)) or not np.isfinite(pred).all()


def _raster_panel(ax, view: CellView) -> None:
    s = view.spikes
    rows = []
    for traj in (view.truth, view.forecast):
        v = np.nan_to_num(_column(traj, s.state), nan=-np.inf)
        rows.append(detect_spikes(traj.t, v, s.threshold, s.merge).times)
    ax.axvspan(*view.train_window, color=SHADE)
    ax.eventplot(rows, colors=[TRUTH, FORECAST], lineoffsets=[1, 0], linelengths=0.8, linewidths=0.8)
    ax.set_yticks([1, 0], [f"reference ({len(rows[0])})", f"forecast ({len(rows[1])})"])
    ax.set_xlim(view.truth.t[0], view.truth.t[-1])
    ax.set_xlabel(_time_label(view))
    ax.set_title(f"spikes ({s.state} > {s.threshold:g})", fontsize=8)


def _phase_panel(ax, view: CellView, x: str, y: str, log_time: bool) -> None:
    """The two states against each other after the training window (the extrapolation), or over
    the whole horizon on a log time grid (where the late states barely move)."""
    after = view.truth.t >= (view.truth.t[0] if log_time else view.train_window[1])
    tx, ty = _column(view.truth, x), _column(view.truth, y)
    ax.plot(tx[after], ty[after], color=TRUTH, lw=0.8, label="reference")
    px, py = _column(view.forecast, x), _column(view.forecast, y)
    (x_lo, x_hi), (y_lo, y_hi) = _padded(tx[after], px[after]), _padded(ty[after], py[after])
    ax.plot(px[after], py[after], color=FORECAST, lw=0.8, alpha=0.8, label="forecast")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel(_label(x, view.state_units))
    ax.set_ylabel(_label(y, view.state_units))
    ax.set_title("phase portrait" + ("" if log_time else " after the training window"), fontsize=8)


def _padded(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """The reference's range widened by half its span, and further to take in the forecast, but
    never beyond two spans of the reference on either side."""
    lo, hi = np.nanmin(truth), np.nanmax(truth)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    finite = pred[np.isfinite(pred)]
    if finite.size:
        lo, hi = max(min(lo, finite.min()), lo - 2 * span), min(max(hi, finite.max()), hi + 2 * span)
    return lo - 0.5 * span, hi + 0.5 * span


def is_spiking(system) -> bool:
    return isinstance(system, Spiking) and system.has_capability(Spiking)
