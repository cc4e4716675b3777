"""Robertson's chemical kinetics (ROBER), the classic stiff test problem.

    dy1/dt = -k1 y1 + k3 y2 y3
    dy2/dt =  k1 y1 - k2 y2^2 - k3 y2 y3
    dy3/dt =  k2 y2^2

with k1 = 0.04, k2 = 3e7, k3 = 1e4 and y(0) = (1, 0, 0). The species are mass fractions
(y1 + y2 + y3 = 1, each in [0, 1]); y2 rises to 3.6e-5 within 1e-3 s and then decays while y1
turns into y3 over decades of time, so the reaction rates span about 15 orders of magnitude.
The Test Set for IVP Solvers integrates it to t = 1e11, where y = (2.0833401e-8, 8.3333608e-14,
0.99999998).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import (
    LogGrid,
    ODEParams,
    ODESystem,
    Protocol,
    ReferenceSolver,
    RelativeNoise,
    State,
    Times,
    Window,
    param,
)


class Robertson(ODESystem):
    """Robertson kinetics learned from 50 log-spaced noisy samples over 1e-5 to 1e5 s.

    Protocol: the grid log-spaced with 10 points per decade from 1e-5 s (and t = 0, where the
    initial state is); training window [0, 1e5] s observed at 50 log-spaced times from 1e-5 to
    1e5 (the stiff neural ODE set-up of Kim et al. 2021) with 1 % relative noise (each sample
    times 1 + 0.01 N(0, 1), so every species keeps its decades); evaluation windows fit [1e-5,
    1e5] (the training window itself), extrapolation [1e5, 1e7] and long [1e7, 1e11] (the test
    set's end). Data loss: y2 stays below 3.6e-5 while y1 and y3 are O(1), so a raw-unit loss (the
    paper's `data_loss = "sum_states"`) ignores y2; use `"standardised"`, and `state_scale =
    "observed_max"` for the adaptive solvers' tolerances.
    """

    name = "rober"
    description = "Robertson chemical kinetics (ROBER), 3 species, rates spanning 15 decades"
    citation = ("Robertson (1966), in Numerical Analysis: An Introduction, 178-182; Hairer & Wanner (1996), "
                "Solving ODEs II, sec. IV.1; Test Set for IVP Solvers (Mazzia & Magherini), problem ROBER; "
                "observation times of Kim et al. (2021), Chaos 31:093122")
    states = (State("y1", bounds=(0.0, 1.0)), State("y2", bounds=(0.0, 1.0)), State("y3", bounds=(0.0, 1.0)))
    time_unit = "s"

    class Params(ODEParams):
        k1: float = param(0.04, fit=(1e-3, 1.0), gt=0, description="rate of y1 -> y2 (1/s)")
        k2: float = param(3e7, fit=(1e6, 1e9), gt=0, description="rate of 2 y2 -> y2 + y3 (1/s)")
        k3: float = param(1e4, fit=(1e2, 1e6), gt=0, description="rate of y2 + y3 -> y1 + y3 (1/s)")
        y0: tuple[float, float, float] = Field((1.0, 0.0, 0.0), description="initial mass fractions at t=0")
        n_observations: int = param(50, protocol=True, ge=3, description="log-spaced observations over 1e-5..1e5 s")
        noise: float = param(0.01, protocol=True, ge=0, description="relative noise level (std of the factor)")
        noise_seed: int = param(1111, protocol=True, ge=0, description="seed of the one fixed noise realisation")

    def rhs(self, t, y, xp):
        p = self.params
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        return xp.stack([-p.k1 * y1 + p.k3 * y2 * y3, p.k1 * y1 - p.k2 * y2**2 - p.k3 * y2 * y3, p.k2 * y2**2], -1)

    def jac(self, t, y):
        p, (_, y2, y3) = self.params, y
        return np.array([
            [-p.k1, p.k3 * y3, p.k3 * y2],
            [p.k1, -2 * p.k2 * y2 - p.k3 * y3, -p.k3 * y2],
            [0.0, 2 * p.k2 * y2, 0.0],
        ])

    def reference_solver(self) -> ReferenceSolver:
        """Radau at rtol 1e-10 with absolute tolerances per species: 1e-14 for y1 and y3, 1e-20 for
        y2, which ends near 1e-13 (at 1e11 s it agrees with rtol 1e-12 to 4 digits or better)."""
        return ReferenceSolver("Radau", 1e-10, (1e-14, 1e-20, 1e-14))

    def protocol(self) -> Protocol:
        p = self.params
        return Protocol(
            grid=LogGrid(1e-5, 10),
            train=(0.0, 1e5),
            observe=Times.log(1e-5, 1e5, p.n_observations),
            windows=(Window("fit", 1e-5, 1e5), Window("extrapolation", 1e5, 1e7), Window("long", 1e7, 1e11)),
            noise=RelativeNoise(p.noise, p.noise_seed),
        )
