"""ISI error: |mean ISI_pred - mean ISI_true|, over all detected spikes on each side."""

from __future__ import annotations

import numpy as np

from stiffbench.metrics._spike_metric import SpikeMetric
from stiffbench.spikes import Spikes


class ISIError(SpikeMetric):
    """Error of the mean inter-spike interval (a frequency error in ms); None unless both
    traces have at least two spikes."""

    name = "isi_error"
    rank = 30
    description = "|mean ISI_pred - mean ISI_true| (ms) over all detected spikes."
    keys = ("isi_error_ms",)

    def score(self, pred: Spikes, true: Spikes) -> dict[str, float | None]:
        if min(len(pred.times), len(true.times)) < 2:
            return {"isi_error_ms": None}
        return {"isi_error_ms": float(abs(np.mean(np.diff(pred.times)) - np.mean(np.diff(true.times))))}
