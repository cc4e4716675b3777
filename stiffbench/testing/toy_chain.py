"""A tiny 3-state system on the protocol layer, with an exact solution, for plugin tests (not registered).

The linear chain A -> B -> C (rates k1, k2) observed through states of very different scales,

    y1 = s1 A,   y2 = s2 B,   y3 = s3 C        (default scales s = (1, 1e-3, 1e3))

    dy1/dt = -k1 y1
    dy2/dt = (s2 / s1) k1 y1 - k2 y2
    dy3/dt = (s3 / s2) k2 y2

so that y1 is O(1), y2 is O(1e-4 to 1e-3) and y3 grows to O(1e3). From y(0) = (1, 0, 0) its exact
solution is Bateman's (`ScaledChain.exact`). The protocol has what uniform toys lack: observations
log-spaced and starting after the initial time (`Times.log(0.01, 10, 25)`, non-uniform), a log
forecast grid (`LogGrid`), one evaluation window after the training window, no noise.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from ..api import State, Window
from ..ode_system import ODEParams, ODESystem, ReferenceSolver
from ..params import param
from ..protocol import LogGrid, Protocol, Times

class ScaledChainParams(ODEParams):
    k1: float = param(0.5, fit=(0.1, 2.0), gt=0, description="rate of A -> B (1/time)")
    k2: float = param(0.3, fit=(0.05, 1.0), gt=0, description="rate of B -> C (1/time); must differ from k1")
    scales: tuple[float, float, float] = Field((1.0, 1e-3, 1e3), description="s in y = s * (A, B, C)")
    y0: tuple[float, float, float] = Field((1.0, 0.0, 0.0), description="initial (y1, y2, y3) at t=0")
    n_obs: int = param(25, protocol=True, ge=3, description="observations, log-spaced from 0.01 to t_train")
    t_train: float = param(10.0, protocol=True, gt=0.01, description="end of the training window [0, t_train]")
    t_end: float = param(10**1.5, protocol=True, description="end of the 'extrapolation' window [t_train, t_end]")

    @model_validator(mode="after")
    def _consistent(self):
        if self.k1 == self.k2:
            raise ValueError("k1 and k2 must differ (the exact solution divides by k2 - k1)")
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        if not self.t_end > self.t_train:
            raise ValueError(f"t_end must exceed t_train, got {self.t_end} <= {self.t_train}")
        return self


class ScaledChain(ODESystem):
    """Linear chain A -> B -> C with states scaled over six decades; exact (Bateman) solution."""

    name = "scaled_chain"
    description = "Linear chain A -> B -> C, states scaled over six decades, log-spaced data (exact solution), for tests."
    citation = "Bateman (1910), Proc. Cambridge Philos. Soc. 15:423"
    Params = ScaledChainParams
    states = (
        State("A", unit="mol/L", bounds=(0.0, None)),
        State("B", unit="mmol/L", bounds=(0.0, None)),
        State("C", unit="umol/L", bounds=(0.0, None)),
    )
    time_unit = "s"

    def rhs(self, t, y, xp):
        p = self.params
        s1, s2, s3 = p.scales
        y1, y2 = y[..., 0], y[..., 1]
        return xp.stack([-p.k1 * y1, (s2 / s1) * p.k1 * y1 - p.k2 * y2, (s3 / s2) * p.k2 * y2], -1)

    def jac(self, t, y):
        p = self.params
        s1, s2, s3 = p.scales
        return np.array([
            [-p.k1, 0.0, 0.0],
            [(s2 / s1) * p.k1, -p.k2, 0.0],
            [0.0, (s3 / s2) * p.k2, 0.0],
        ])

    def reference_solver(self) -> ReferenceSolver:
        """Radau at rtol 1e-10 with each state's absolute tolerance at its own scale."""
        return ReferenceSolver("Radau", 1e-10, tuple(1e-13 * s for s in self.params.scales))

    def protocol(self) -> Protocol:
        p = self.params
        return Protocol(
            grid=LogGrid(0.01, 20),
            train=(0.0, p.t_train),
            observe=Times.log(0.01, p.t_train, p.n_obs),
            windows=(Window("extrapolation", p.t_train, p.t_end),),
        )

    def exact(self, t: np.ndarray) -> np.ndarray:
        """Bateman's solution at times t (from t=0), shape (len(t), 3), in the scaled states."""
        p = self.params
        s = np.asarray(p.scales, dtype=np.float64)
        a0, b0, c0 = np.asarray(p.y0, dtype=np.float64) / s
        t = np.asarray(t, dtype=np.float64)
        e1, e2 = np.exp(-p.k1 * t), np.exp(-p.k2 * t)
        a = a0 * e1
        b = b0 * e2 + a0 * p.k1 / (p.k2 - p.k1) * (e1 - e2)
        # C = total - A - B, written without that cancellation for small t:
        # C = c0 + b0 (1 - e2) + a0 (1 + (k1 e2 - k2 e1) / (k2 - k1))
        c = c0 + b0 * -np.expm1(-p.k2 * t) + a0 * (p.k2 * -np.expm1(-p.k1 * t) - p.k1 * -np.expm1(-p.k2 * t)) / (p.k2 - p.k1)
        return np.stack([a, b, c], axis=1) * s

