"""Shared base of the spike metrics: parameters, detection on the voltage-like state, matching.

The spike settings are the system's (`Spiking.spike_settings`, in its own units); a suite may
override any of them for a metric (`[metrics.<name>] params = { tolerance = 1.0 }`).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Optional

import numpy as np
from pydantic import Field, model_validator

from stiffbench.api import AbstractMetric, AbstractSystem, PluginParams, SpikeSettings, Spiking, Trajectory
from stiffbench.spikes import Spikes, detect_spikes, match_spikes

_RENAMED = {"threshold_mV": "threshold", "merge_ms": "merge", "tolerance_ms": "tolerance"}


class SpikeParams(PluginParams):
    """Overrides of the system's spike settings, in the system's units; None keeps the system's.
    A spike is the peak of an excursion of the voltage-like state above `threshold`; peaks closer
    than `merge` are merged (taller kept); predicted and true spikes match one-to-one within
    `tolerance`."""

    threshold: Optional[float] = None
    merge: Optional[float] = Field(None, ge=0.0)
    tolerance: Optional[float] = Field(None, gt=0.0)

    @model_validator(mode="before")
    @classmethod
    def _former_names(cls, data):
        """threshold_mV, merge_ms and tolerance_ms are the former names (deprecated)."""
        if isinstance(data, dict) and set(data) & set(_RENAMED):
            old = sorted(set(data) & set(_RENAMED))
            warnings.warn(f"spike metric parameters {', '.join(old)} are deprecated: use "
                          f"{', '.join(_RENAMED[k] for k in old)} (in the system's units)", DeprecationWarning, stacklevel=2)
            data = {_RENAMED.get(k, k): v for k, v in data.items()}
        return data


class SpikeMetric(AbstractMetric):
    """A metric on the spike trains of the system's voltage-like state in pred and true."""

    Params = SpikeParams
    requires = (Spiking,)

    def settings(self, system: AbstractSystem) -> SpikeSettings:
        """The system's spike settings with this metric's overrides applied."""
        s, p = system.spike_settings(), self.params
        return SpikeSettings(
            s.state,
            s.threshold if p.threshold is None else p.threshold,
            s.merge if p.merge is None else p.merge,
            s.tolerance if p.tolerance is None else p.tolerance,
        )

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        settings = self.settings(system)
        return self.score(self.detect(pred, settings), self.detect(true, settings), settings)

    @staticmethod
    def detect(traj: Trajectory, settings: SpikeSettings) -> Spikes:
        return detect_spikes(traj.t, traj.state(settings.state), settings.threshold, settings.merge)

    @staticmethod
    def match(pred: Spikes, true: Spikes, settings: SpikeSettings) -> tuple[np.ndarray, np.ndarray]:
        """Indices (i_pred, i_true) of the matched pairs, as two integer arrays."""
        pairs = np.array(match_spikes(pred.times, true.times, settings.tolerance), dtype=int)
        return pairs.reshape(-1, 2).T

    @abstractmethod
    def score(self, pred: Spikes, true: Spikes, settings: SpikeSettings) -> dict[str, float | None]:
        """The metric's values from the detected predicted and true spikes."""


def time_units(system: AbstractSystem, keys: tuple[str, ...]) -> dict[str, str]:
    """Each key in the system's time unit (none if it has none)."""
    return {k: system.time_unit for k in keys} if system.time_unit else {}


def voltage_units(system: AbstractSystem, keys: tuple[str, ...]) -> dict[str, str]:
    """Each key in the unit of the system's voltage-like state (none if it has none)."""
    unit = system.state_units().get(system.spike_settings().state, "")
    return {k: unit for k in keys} if unit else {}
