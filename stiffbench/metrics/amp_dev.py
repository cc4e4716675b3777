"""Amplitude deviation: mean |V_pred(peak) - V_true(peak)| over matched spike pairs."""

from __future__ import annotations

import numpy as np

from stiffbench.metrics._spike_metric import SpikeMetric
from stiffbench.spikes import Spikes


class AmplitudeDeviation(SpikeMetric):
    """Mean peak-height error of matched spikes, each at its own peak; None when no spike matches."""

    name = "amp_dev"
    rank = 40
    description = "Mean |V_pred peak - V_true peak| (mV) over one-to-one matched spikes."
    keys = ("amp_dev_mV",)

    def score(self, pred: Spikes, true: Spikes) -> dict[str, float | None]:
        ip, it = self.match(pred, true)
        if ip.size == 0:
            return {"amp_dev_mV": None}
        return {"amp_dev_mV": float(np.mean(np.abs(pred.peaks[ip] - true.peaks[it])))}
