"""Valid-prediction time: how long from the window's start the forecast stays near the truth."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import AbstractMetric, AbstractSystem, PluginParams, Trajectory


class ValidTimeParams(PluginParams):
    """The tolerance on the normalised error."""

    tolerance: float = Field(0.4, gt=0.0, description="the forecast is valid while the normalised RMS error "
                                                      "e(t) stays at or below this")


def normalised_error(pred: Trajectory, true: Trajectory) -> np.ndarray:
    """e_k = sqrt(mean_j ((pred_kj - true_kj) / s_j)^2) at each sample k; s_j is the standard
    deviation of state j's true trace over the samples, or, for a state whose true trace is
    constant (all samples equal), its largest |value|, or 1 if that is 0."""
    y = true.y
    scale = np.std(y, axis=0)
    constant = np.ptp(y, axis=0) == 0
    fallback = np.max(np.abs(y), axis=0)
    scale[constant] = np.where(fallback[constant] > 0, fallback[constant], 1.0)
    return np.sqrt(np.mean(((pred.y - y) / scale) ** 2, axis=1))


class ValidTime(AbstractMetric):
    """valid_time = t* - t_0: t_0 the window's first sample, t* the time at which the normalised
    error e(t) = ||(pred - true) / s||_2 / sqrt(n) first exceeds the tolerance (default 0.4), in the
    system's time unit; the window's length t_last - t_0 if it never does.

    s_j is the standard deviation of state j's true trace over the window (see `normalised_error`
    for constant states), so every state counts on its own scale and e is an RMS over the n
    states. Between samples e is taken as linear: with e_{k-1} <= tol < e_k the crossing is
    interpolated between t_{k-1} and t_k; an error above the tolerance at the first sample gives 0.
    A NaN error counts as above the tolerance.

    This is the valid-prediction time of reservoir-computing forecasts of chaotic systems: the
    normalisation by each dimension's standard deviation and the RMS over dimensions follow Vlachas
    et al. (2020), Neural Networks 126:191-217 (their code, pvlachas/RNN-RC-Chaos, counts the steps
    until this error first reaches 0.05 and 0.5); the default tolerance 0.4 is that of Pathak et al.
    (2018), Chaos 28:041101, who normalise the error norm by the RMS norm of the true state instead.
    Both measure from the forecast's start; here it is the window's start, so on a window that
    begins after the forecast has drifted away the valid time is 0.
    """

    name = "valid_time"
    rank = 70
    description = "Time from the window's start until the std-normalised RMS error first exceeds a tolerance."
    Params = ValidTimeParams
    keys = ("valid_time",)

    def key_units(self, system: AbstractSystem) -> dict[str, str]:
        return {"valid_time": system.time_unit} if system.time_unit else {}

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        if len(true.t) == 0:
            return {"valid_time": None}
        err, tol, t = normalised_error(pred, true), self.params.tolerance, true.t
        above = ~(err <= tol)
        if not above.any():
            return {"valid_time": float(t[-1] - t[0])}
        k = int(np.argmax(above))
        if k == 0:
            return {"valid_time": 0.0}
        frac = (tol - err[k - 1]) / (err[k] - err[k - 1]) if np.isfinite(err[k]) else 0.0
        return {"valid_time": float(t[k - 1] + frac * (t[k] - t[k - 1]) - t[0])}
