"""Relative L2 error of each state over the window."""

from __future__ import annotations

import numpy as np

from stiffbench.api import AbstractMetric, AbstractSystem, Trajectory


class RelativeL2(AbstractMetric):
    """rel_l2_<state> = ||pred_j - true_j||_2 / ||true_j||_2, the 2-norms over the window's samples.

    Unit-free, so states of very different scales compare on one footing (unlike `rmse`). None for
    a state whose true trace is zero at every sample of the window. The norms are plain sums over
    the samples: on a non-uniform grid (log-spaced) every sample weighs the same, not every unit of
    time.
    """

    name = "rel_l2"
    rank = 12
    description = "Per-state relative L2 error ||pred - true|| / ||true|| over the window's samples (unit-free)."
    keys = ("rel_l2_V", "rel_l2_n", "rel_l2_m", "rel_l2_h")

    def result_keys(self, system: AbstractSystem) -> tuple[str, ...]:
        return tuple(f"rel_l2_{s}" for s in system.state_names)

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for s in system.state_names:
            t = true.state(s)
            norm = float(np.linalg.norm(t))
            out[f"rel_l2_{s}"] = float(np.linalg.norm(pred.state(s) - t)) / norm if norm > 0 else None
        return out
