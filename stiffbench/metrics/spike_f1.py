"""Spike F1: 2 TP / (N_pred + N_true) with one-to-one matching within the tolerance."""

from __future__ import annotations

from stiffbench.api import SpikeSettings
from stiffbench.metrics._spike_metric import SpikeMetric
from stiffbench.spikes import Spikes


class SpikeF1(SpikeMetric):
    """F1 of spike detection; None when neither trace spikes."""

    name = "spike_f1"
    rank = 60
    description = "Spike F1 score 2TP/(N_pred+N_true), one-to-one matching within the system's tolerance."
    keys = ("spike_f1",)

    def score(self, pred: Spikes, true: Spikes, settings: SpikeSettings) -> dict[str, float | None]:
        n = len(pred.times) + len(true.times)
        if n == 0:
            return {"spike_f1": None}
        tp = self.match(pred, true, settings).shape[1]
        return {"spike_f1": 2.0 * tp / n}
