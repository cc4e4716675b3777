"""Shared base of the spike metrics: parameters, detection on the voltage channel, matching."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from pydantic import Field

from stiffbench.api import AbstractMetric, AbstractSystem, PluginParams, Spiking, Trajectory
from stiffbench.spikes import Spikes, detect_spikes, match_spikes


class SpikeParams(PluginParams):
    """Spike = peak of an excursion of V above `threshold_mV`; peaks closer than `merge_ms` are
    merged (taller kept); predicted and true spikes match one-to-one within `tolerance_ms`."""

    threshold_mV: float = 0.0
    merge_ms: float = Field(2.0, ge=0.0)
    tolerance_ms: float = Field(2.0, gt=0.0)


class SpikeMetric(AbstractMetric):
    """A metric on the spike trains of the system's `voltage_state` in pred and true."""

    Params = SpikeParams
    requires = (Spiking,)

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        return self.score(self.detect(pred, system), self.detect(true, system))

    def detect(self, traj: Trajectory, system: AbstractSystem) -> Spikes:
        p = self.params
        return detect_spikes(traj.t, traj.state(system.voltage_state), p.threshold_mV, p.merge_ms)

    def match(self, pred: Spikes, true: Spikes) -> tuple[np.ndarray, np.ndarray]:
        """Indices (i_pred, i_true) of the matched pairs, as two integer arrays."""
        pairs = np.array(match_spikes(pred.times, true.times, self.params.tolerance_ms), dtype=int)
        return pairs.reshape(-1, 2).T

    @abstractmethod
    def score(self, pred: Spikes, true: Spikes) -> dict[str, float | None]:
        """The metric's values from the detected predicted and true spikes."""
