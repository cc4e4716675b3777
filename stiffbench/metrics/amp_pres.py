"""Amplitude preservation error: how far each state's max and min drift, relative to its range."""

from __future__ import annotations

import numpy as np

from stiffbench.api import AbstractMetric, AbstractSystem, Trajectory


class AmplitudePreservation(AbstractMetric):
    """100 * mean_j (|max p_j - max t_j| + |min p_j - min t_j|) / (2 (max t_j - min t_j)).

    States whose true trace is constant are skipped; None if all are. Needs no spikes, so it is
    defined for non-spiking forecasts too (as in the paper).
    """

    name = "amp_pres"
    rank = 50
    description = "Amplitude preservation error (%): max/min error of each state relative to its true range."
    keys = ("amp_pres_pct",)

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        t_max, t_min = true.y.max(axis=0), true.y.min(axis=0)
        span = t_max - t_min
        keep = span > 0
        if not keep.any():
            return {"amp_pres_pct": None}
        err = np.abs(pred.y.max(axis=0) - t_max) + np.abs(pred.y.min(axis=0) - t_min)
        return {"amp_pres_pct": float(100.0 * np.mean(err[keep] / (2.0 * span[keep])))}
