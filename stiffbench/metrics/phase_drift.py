"""Phase drift: mean |t_pred - t_true| over matched spike pairs."""

from __future__ import annotations

import numpy as np

from stiffbench.api import SpikeSettings
from stiffbench.metrics._spike_metric import SpikeMetric, time_units
from stiffbench.spikes import Spikes


class PhaseDrift(SpikeMetric):
    """Mean spike-timing error of matched spikes, in the system's time unit; None when no spike matches."""

    name = "phase_drift"
    rank = 20
    description = "Mean |t_pred - t_true| over one-to-one matched spikes (system's time unit)."
    keys = ("phase_drift",)
    former_keys = {"phase_drift_ms": "phase_drift"}

    def key_units(self, system):
        return time_units(system, self.keys)

    def score(self, pred: Spikes, true: Spikes, settings: SpikeSettings) -> dict[str, float | None]:
        ip, it = self.match(pred, true, settings)
        if ip.size == 0:
            return {"phase_drift": None}
        return {"phase_drift": float(np.mean(np.abs(pred.times[ip] - true.times[it])))}
