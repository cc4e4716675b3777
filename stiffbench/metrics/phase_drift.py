"""Phase drift: mean |t_pred - t_true| over matched spike pairs."""

from __future__ import annotations

import numpy as np

from stiffbench.metrics._spike_metric import SpikeMetric
from stiffbench.spikes import Spikes


class PhaseDrift(SpikeMetric):
    """Mean spike-timing error of matched spikes; None when no spike matches."""

    name = "phase_drift"
    rank = 20
    description = "Mean |t_pred - t_true| (ms) over one-to-one matched spikes."
    keys = ("phase_drift_ms",)

    def score(self, pred: Spikes, true: Spikes) -> dict[str, float | None]:
        ip, it = self.match(pred, true)
        if ip.size == 0:
            return {"phase_drift_ms": None}
        return {"phase_drift_ms": float(np.mean(np.abs(pred.times[ip] - true.times[it])))}
