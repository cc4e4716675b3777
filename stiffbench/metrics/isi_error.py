"""ISI error: |mean ISI_pred - mean ISI_true|, over all detected spikes on each side."""

from __future__ import annotations

import numpy as np

from stiffbench.api import SpikeSettings
from stiffbench.metrics._spike_metric import SpikeMetric, time_units
from stiffbench.spikes import Spikes


class ISIError(SpikeMetric):
    """Error of the mean inter-spike interval (a frequency error, in the system's time unit); None
    unless both traces have at least two spikes."""

    name = "isi_error"
    rank = 30
    description = "|mean ISI_pred - mean ISI_true| over all detected spikes (system's time unit)."
    keys = ("isi_error",)
    former_keys = {"isi_error_ms": "isi_error"}

    def key_units(self, system):
        return time_units(system, self.keys)

    def score(self, pred: Spikes, true: Spikes, settings: SpikeSettings) -> dict[str, float | None]:
        if min(len(pred.times), len(true.times)) < 2:
            return {"isi_error": None}
        return {"isi_error": float(abs(np.mean(np.diff(pred.times)) - np.mean(np.diff(true.times))))}
