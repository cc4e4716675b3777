"""Fraction of the window's samples at which some bounded state is outside its physical bounds."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import AbstractMetric, AbstractSystem, Bounded, PluginParams, Trajectory


class OutOfBoundsParams(PluginParams):
    """How far outside its bounds a state must be to count, so that round-off does not."""

    rel_tol: float = Field(1e-9, ge=0.0, description="allowance outside a state with two bounds, as a fraction "
                                                     "of its range (upper - lower)")
    abs_tol: float = Field(1e-12, ge=0.0, description="allowance outside a state with one bound (no range to "
                                                      "scale by), in the state's unit")


class OutOfBounds(AbstractMetric):
    """out_of_bounds = the fraction of the window's samples (rows) at which at least one bounded
    state lies outside its bounds [lo, hi] by more than an allowance; unit-free, in [0, 1].

    The allowance: rel_tol x (hi - lo) for a state with both bounds (default 1e-9 of its range, e.g.
    1e-9 for a gating fraction in [0, 1]); abs_tol for a state with one bound (default 1e-12 in the
    state's unit, e.g. a concentration >= 0), which has no range to scale by. A NaN or infinite
    sample counts as outside. Where `bound_violation` (the scorer's diagnostic) gives how far the
    forecast leaves its bounds, this gives for how much of the window. None for an empty window.
    """

    name = "out_of_bounds"
    rank = 80
    description = "Fraction of the window's samples with some bounded state outside its bounds (beyond round-off)."
    Params = OutOfBoundsParams
    requires = (Bounded,)
    keys = ("out_of_bounds",)

    def allowance(self, lo: float, hi: float) -> float:
        """How far outside [lo, hi] a value may be and still count as inside."""
        if np.isfinite(lo) and np.isfinite(hi):
            return self.params.rel_tol * (hi - lo)
        return self.params.abs_tol

    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        if len(pred.t) == 0:
            return {"out_of_bounds": None}
        outside = np.zeros(len(pred.t), dtype=bool)
        for name, (lo, hi) in system.state_bounds.items():
            lo = -np.inf if lo is None else float(lo)
            hi = np.inf if hi is None else float(hi)
            tol = self.allowance(lo, hi)
            x = pred.state(name)
            outside |= ~(np.isfinite(x) & (x >= lo - tol) & (x <= hi + tol))
        return {"out_of_bounds": float(np.mean(outside))}
