"""Amplitude deviation: mean |V_pred(peak) - V_true(peak)| over matched spike pairs."""

from __future__ import annotations

import numpy as np

from stiffbench.api import SpikeSettings
from stiffbench.metrics._spike_metric import SpikeMetric, voltage_units
from stiffbench.spikes import Spikes


class AmplitudeDeviation(SpikeMetric):
    """Mean peak-height error of matched spikes, each at its own peak, in the voltage-like state's
    unit; None when no spike matches."""

    name = "amp_dev"
    rank = 40
    description = "Mean |V_pred peak - V_true peak| over one-to-one matched spikes (voltage-like state's unit)."
    keys = ("amp_dev",)
    former_keys = {"amp_dev_mV": "amp_dev"}

    def key_units(self, system):
        return voltage_units(system, self.keys)

    def score(self, pred: Spikes, true: Spikes, settings: SpikeSettings) -> dict[str, float | None]:
        ip, it = self.match(pred, true, settings)
        if ip.size == 0:
            return {"amp_dev": None}
        return {"amp_dev": float(np.mean(np.abs(pred.peaks[ip] - true.peaks[it])))}
