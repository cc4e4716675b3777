"""Root-mean-square error of each state over the window."""

from __future__ import annotations

import numpy as np

from stiffbench.api import AbstractMetric, AbstractSystem, Trajectory


class RMSE(AbstractMetric):
    """rmse_<state> = sqrt(mean((pred_j - true_j)^2)) for each of the system's states."""

    name = "rmse"
    rank = 10
    description = "Per-state root-mean-square error over the window."
    keys = ("rmse_V", "rmse_n", "rmse_m", "rmse_h")

    def result_keys(self, system: AbstractSystem) -> tuple[str, ...]:
        return tuple(f"rmse_{s}" for s in system.state_names)

    def key_units(self, system: AbstractSystem) -> dict[str, str]:
        units = system.state_units()
        return {f"rmse_{s}": units[s] for s in system.state_names if units.get(s)}

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        if pred.state_names != true.state_names:
            raise ValueError(f"state names differ: {pred.state_names} vs {true.state_names}")
        rmse = np.sqrt(np.mean((pred.y - true.y) ** 2, axis=0))
        return {f"rmse_{s}": float(r) for s, r in zip(true.state_names, rmse)}
