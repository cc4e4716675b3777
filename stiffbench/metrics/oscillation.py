"""Period and amplitude errors of an oscillator's `oscillation_state` (systems with `Oscillating`)."""

from __future__ import annotations

import numpy as np

from stiffbench.api import AbstractMetric, AbstractSystem, Oscillating, Trajectory


def upward_crossings(t: np.ndarray, x: np.ndarray, level: float) -> np.ndarray:
    """Times at which x crosses `level` upwards: for each k with x[k] < level <= x[k+1], the time
    of the crossing on the straight line between the samples k and k+1."""
    k = np.flatnonzero((x[:-1] < level) & (x[1:] >= level))
    frac = (level - x[k]) / (x[k + 1] - x[k])
    return t[k] + frac * (t[k + 1] - t[k])


def mean_period(t: np.ndarray, x: np.ndarray, level: float) -> float | None:
    """Mean spacing of the upward crossings of `level` (None with fewer than two)."""
    crossings = upward_crossings(t, x, level)
    return float(np.mean(np.diff(crossings))) if len(crossings) >= 2 else None


class PeriodError(AbstractMetric):
    """period_error = |T_pred - T_true| / T_true on the system's `oscillation_state`, unit-free.

    T is the mean spacing of the trace's upward crossings of one level, the mean of the true trace
    over the window, the same level for pred and true; a crossing's time is interpolated linearly
    between the two samples around it. None unless both traces cross at least twice. A forecast
    that oscillates about another mean than the truth's may not cross the level at all: it then has
    no period here, and `amp_error` and `rmse` tell what it does instead.
    """

    name = "period_error"
    rank = 25
    description = "Relative error of the mean period (upward crossings of the true mean) of the oscillation state."
    requires = (Oscillating,)
    keys = ("period_error",)

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        x_true, x_pred = true.state(system.oscillation_state), pred.state(system.oscillation_state)
        if len(x_true) == 0:
            return {"period_error": None}
        level = float(np.mean(x_true))
        t_true, t_pred = mean_period(true.t, x_true, level), mean_period(pred.t, x_pred, level)
        if t_true is None or t_pred is None:
            return {"period_error": None}
        return {"period_error": abs(t_pred - t_true) / t_true}


class AmplitudeError(AbstractMetric):
    """amp_error = |A_pred - A_true| / A_true with A = (max - min) / 2 of the system's
    `oscillation_state` over the window's samples, unit-free; None when the true trace is constant."""

    name = "amp_error"
    rank = 45
    description = "Relative error of the half peak-to-peak amplitude (max - min) / 2 of the oscillation state."
    requires = (Oscillating,)
    keys = ("amp_error",)

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        x_true, x_pred = true.state(system.oscillation_state), pred.state(system.oscillation_state)
        if len(x_true) == 0:
            return {"amp_error": None}
        a_true = (float(np.max(x_true)) - float(np.min(x_true))) / 2
        if not a_true > 0:
            return {"amp_error": None}
        a_pred = (float(np.max(x_pred)) - float(np.min(x_pred))) / 2
        return {"amp_error": abs(a_pred - a_true) / a_true}
