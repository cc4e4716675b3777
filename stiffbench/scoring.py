"""Score a forecast against the reference with every applicable metric, window by window.

Shared by the runner, `stiffbench score` and `stiffbench leaderboard --rescore`, so a cell scored
at run time and rescored later goes through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .api import AbstractMetric, AbstractSystem, Bounded, SpikeSettings, Trajectory, Window, missing_capabilities

# A bounded state further outside its range than this many range widths is flagged in the reason
# (status stays ok: the paper reports metrics for such forecasts).
FAR_OUTSIDE_WIDTHS = 1.0


@dataclass
class Score:
    """status is "ok" or "diverged"; metrics maps window name -> {key: value or None}.

    diagnostics maps window name -> {key: value} for measurements the scorer itself makes (not
    metric plugins): `bound_violation` for systems with bounded states, the largest distance of a
    bounded state outside its range (the paper's Table 1 'gating variables within [0, 1]').
    """

    status: str
    metrics: dict[str, dict[str, float | None]]
    reason: str | None = None
    metric_errors: list[str] = field(default_factory=list)
    diagnostics: dict[str, dict[str, float]] = field(default_factory=dict)

    def all_values(self) -> dict[str, dict[str, float | None]]:
        """Metrics and diagnostics merged per window (what the store records)."""
        return {w: {**values, **self.diagnostics.get(w, {})} for w, values in self.metrics.items()}


def metric_keys(metrics: list[AbstractMetric], system: AbstractSystem) -> list[str]:
    """The result keys of the metrics that apply to `system`, in metric order."""
    keys: list[str] = []
    for metric in metrics:
        if not missing_capabilities(metric, system):
            keys.extend(metric.result_keys(system))
    return keys


def first_nonfinite_time(pred: Trajectory) -> float | None:
    """Time of the first sample holding NaN or Inf, or None if all samples are finite."""
    bad = ~np.isfinite(pred.y).all(axis=1)
    return float(pred.t[np.argmax(bad)]) if bad.any() else None


def score(
    system: AbstractSystem,
    metrics: list[AbstractMetric],
    pred: Trajectory,
    ref: Trajectory,
    windows: list[Window],
) -> Score:
    """Apply every metric that fits the system on each window; a non-finite forecast is `diverged`.

    A forecast holding NaN/Inf anywhere is diverged, whether or not the bad samples fall in a
    window. A metric that raises yields None for its keys and an entry in `metric_errors`; the
    other metrics are unaffected.
    """
    keys = metric_keys(metrics, system)
    t_bad = first_nonfinite_time(pred)
    if t_bad is not None:
        empty = {w.name: dict.fromkeys(keys) for w in windows}
        return Score("diverged", empty, reason=f"forecast is NaN/Inf from t={t_bad:g}")
    out: dict[str, dict[str, float | None]] = {}
    errors: list[str] = bound_warnings(system, pred)
    diagnostics: dict[str, dict[str, float]] = {}
    for window in windows:
        p, r = pred.window(window.t0, window.t1), ref.window(window.t0, window.t1)
        if len(p.t) != len(r.t) or not np.allclose(p.t, r.t, rtol=1e-9, atol=0):
            raise ValueError(f"forecast and reference grids differ on window {window.name}")
        values: dict[str, float | None] = {}
        for metric in metrics:
            if missing_capabilities(metric, system) or not metric.result_keys(system):
                continue
            try:
                result = metric.compute(p, r, system)
                values.update({k: _as_float(result.get(k)) for k in metric.result_keys(system)})
            except Exception as exc:  # a faulty metric plugin must not lose the cell
                values.update(dict.fromkeys(metric.result_keys(system)))
                errors.append(f"metric {metric.name} failed on {window.name}: {type(exc).__name__}: {exc}")
        out[window.name] = values
        if has_bounds(system):
            diagnostics[window.name] = {"bound_violation": max(system.bound_violation(p).values(), default=0.0)}
    return Score("ok", out, metric_errors=errors, diagnostics=diagnostics)


def has_bounds(system: AbstractSystem) -> bool:
    """Whether some state of this system instance has physical bounds to check."""
    return system.has_capability(Bounded) and bool(system.state_bounds)


def bound_warnings(system: AbstractSystem, pred: Trajectory) -> list[str]:
    """Warnings for states with two bounds that leave their range by more than FAR_OUTSIDE_WIDTHS
    widths (a one-sided bound has no width to compare with; its excess is in `bound_violation`)."""
    if not has_bounds(system):
        return []
    warnings = []
    for name, excess in system.bound_violation(pred).items():
        lo, hi = system.state_bounds[name]
        if excess > FAR_OUTSIDE_WIDTHS * (hi - lo):
            warnings.append(f"state {name} leaves its bounds [{lo:g}, {hi:g}] by up to {excess:.3g}")
    return warnings


def _as_float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def spike_settings_for(system: AbstractSystem, metrics: list[AbstractMetric]) -> SpikeSettings:
    """The spike settings the spike metrics use on `system`: the suite's overrides (a loaded
    spike metric's `settings`) applied to the system's own."""
    spike_metric = next((m for m in metrics if m.name == "isi_error" and hasattr(m, "settings")), None)
    return spike_metric.settings(system) if spike_metric is not None else system.spike_settings()
