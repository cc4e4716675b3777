"""Error in log space of each state, for systems whose states are all non-negative (concentrations)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import AbstractMetric, AbstractSystem, Bounded, PluginParams, Trajectory


class LogErrorParams(PluginParams):
    """The floor below which values are not resolved, relative to each state's scale."""

    floor: float = Field(1e-12, gt=0.0, lt=1.0,
                         description="floor of each state, as a fraction of its largest true value in the window: "
                                     "true samples at or below it are skipped, predicted values below it count "
                                     "at it")


class LogError(AbstractMetric):
    """log_error_<state> = sqrt(mean_k (log10 max(p_k, f) - log10 max(t_k, f))^2) over the samples
    k of the window with t_k > f, where f = floor x the largest true value of the state in the window
    (floor = 1e-12 by default); in decades.

    For species spanning decades (in Robertson's fit window y2 stays below 3.6e-5 while y1 is near
    1, and y3 rises from 1.6e-11 at 1e-5 s to 0.98 at 1e5 s), the RMS error of the logarithm weighs
    a miss by a factor 10 the same at every scale, where `rmse` sees only the largest values. A
    forecast that is zero or negative counts at the floor (a concentration cannot be below zero, and
    its logarithm would be undefined).

    The floor: 1e-12 of the state's own peak is nearly four decades above double precision's
    relative resolution (2.2e-16) and two decades above the absolute tolerance that Robertson's
    reference solution uses for y1 and y3 (1e-14 at a peak of 1): true values below it are
    round-off and solver tolerance rather than signal, so they are skipped. The floor also caps the
    penalty of a forecast at or below zero at log10(t_k / f) decades (at most 12 by default)
    instead of an infinite one.

    Applies only when every state has a lower bound >= 0 (`Bounded.state_bounds`): `result_keys`
    is empty for a bounded system with a state that may be negative (Hodgkin-Huxley's V), so the
    metric has no column there. None for a state whose true trace has no positive value in the
    window.
    """

    name = "log_error"
    rank = 15
    description = "Per-state RMS error of log10 values above a floor (decades), for systems of non-negative states."
    Params = LogErrorParams
    requires = (Bounded,)
    keys = ("log_error_y1", "log_error_y2", "log_error_y3")

    @staticmethod
    def applies(system: AbstractSystem) -> bool:
        """Whether every state of the system has a lower bound >= 0."""
        bounds = system.state_bounds if system.has_capability(Bounded) else {}
        return all(s in bounds and bounds[s][0] is not None and bounds[s][0] >= 0 for s in system.state_names)

    def result_keys(self, system: AbstractSystem) -> tuple[str, ...]:
        return tuple(f"log_error_{s}" for s in system.state_names) if self.applies(system) else ()

    def key_units(self, system: AbstractSystem) -> dict[str, str]:
        return dict.fromkeys(self.result_keys(system), "decades")

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, s in zip(self.result_keys(system), system.state_names):
            out[key] = self.state_error(pred.state(s), true.state(s), self.params.floor)
        return out

    @staticmethod
    def state_error(p: np.ndarray, t: np.ndarray, floor: float) -> float | None:
        """The log error of one state's samples (None when no true value is positive)."""
        peak = float(np.max(t)) if len(t) else 0.0
        if not peak > 0:
            return None
        f = floor * peak
        keep = t > f
        diff = np.log10(np.maximum(p[keep], f)) - np.log10(t[keep])
        return float(np.sqrt(np.mean(diff**2)))
