"""Van der Pol oscillator in the Liénard mu form, the classic stiffness dial.

    x'' - mu (1 - x^2) x' + x = 0,   as   dx/dt = y,  dy/dt = mu (1 - x^2) y - x

x and y = x' are dimensionless, as is time. The limit cycle's period grows with mu, about
(3 - 2 ln 2) mu for large mu (1614.4 at mu = 1000), and for large mu the cycle is a relaxation
oscillation: slow drifts along the branches |x| > 1 joined by jumps of duration O(1/mu), so a
solver must resolve times ~ 1/mu on a cycle of length ~ mu. The stiff test set uses mu = 1000
and y(0) = (2, 0) (VDPOL, in the time-scaled form).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from pydantic import Field, PositiveInt, model_validator
from scipy.integrate import solve_ivp

from stiffbench.api import (
    GaussianNoise,
    ODEParams,
    ODESystem,
    Oscillating,
    Protocol,
    ReferenceSolver,
    State,
    UniformGrid,
    Window,
    check_windows_after,
    param,
)
from stiffbench.cache import cached_arrays

Interval = tuple[float, float]


class VanDerPol(ODESystem, Oscillating):
    """Van der Pol relaxation oscillator; the protocol scales with its period T(mu).

    Protocol, in periods T (computed from the system itself, see `period`): the grid's step
    T / samples_per_period; training window [0, 1 T] (one cycle, as the paper's HH task trains on
    one spike), observed on the grid with white Gaussian noise of 2 % of each state's std;
    evaluation windows extrapolation [1 T, 3 T] and long [3 T, 10 T]. Data loss: the sampled y
    reaches about 2.7 (mu = 1), 14 (mu = 10), 1.6 (mu = 100) and 0.009 (mu = 1000) while x stays
    within about [-2, 2] (at large mu the jumps last less than a grid step, so the samples see the
    slow branches, where y is O(1/mu)): a raw-unit loss (`data_loss = "sum_states"`, the paper's)
    weighs the two states very differently at each mu; `"standardised"` weighs them equally.
    """

    name = "vdp"
    description = "Van der Pol oscillator x'' - mu (1 - x^2) x' + x = 0 (mu sets the stiffness; default 1000)"
    citation = ("van der Pol (1926), Phil. Mag. 2:978; Hairer & Wanner (1996), Solving ODEs II, sec. IV.1 and "
                "the Test Set for IVP Solvers (Mazzia & Magherini), problem VDPOL: mu = 1000, y(0) = (2, 0)")
    states = (State("x"), State("y"))
    oscillation_state = "x"

    class Params(ODEParams):
        mu: float = param(1000.0, fit=(0.5, 2000.0), gt=0, description="damping strength; stiffness grows with it")
        y0: tuple[float, float] = Field((2.0, 0.0), description="initial state (x, y = x') at t=0")
        samples_per_period: PositiveInt = param(500, protocol=True, description="grid points per period T")
        periods_train: float = param(1.0, protocol=True, gt=0, description="training window [0, periods_train T]")
        periods_extrapolation: Interval = param((1.0, 3.0), protocol=True, description="'extrapolation' window (T)")
        periods_long: Interval = param((3.0, 10.0), protocol=True, description="'long' window (T)")
        noise: float = param(0.02, protocol=True, ge=0, description="noise std as a fraction of each state's std")
        noise_seed: int = param(1111, protocol=True, ge=0, description="seed of the one fixed noise realisation")

        @model_validator(mode="after")
        def _windows(self):
            check_windows_after(self.periods_train, {"extrapolation": self.periods_extrapolation,
                                                     "long": self.periods_long})
            return self

    def rhs(self, t, y, xp):
        x, v = y[..., 0], y[..., 1]
        return xp.stack([v, self.params.mu * (1 - x**2) * v - x], -1)

    def jac(self, t, y):
        mu, (x, v) = self.params.mu, y
        return np.array([[0.0, 1.0], [-2 * mu * x * v - 1, mu * (1 - x**2)]])

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian at rtol = atol = 1e-13: over ten periods it agrees with
        Radau at 1e-12 to 7e-7 (mu = 10) and 1e-8 (mu = 1000) in 1 s, where Radau at 1e-10 takes
        6-10 s."""
        return ReferenceSolver("LSODA", 1e-13, 1e-13)

    @cached_property
    def period(self) -> float:
        """The limit cycle's period: the mean spacing of x's downward zero crossings over four
        cycles after a first one of transient (the reference solver's settings; cached on disk)."""
        mu, y0 = self.params.mu, self.params.y0
        config = {"mu": mu, "y0": list(y0), "solver": self.reference_solver().describe()}
        return float(cached_arrays(None, "vdp-period", config, lambda: {"T": np.array(self._period())})["T"])

    def _period(self, cycles: int = 4) -> float:
        mu, solver = self.params.mu, self.reference_solver()
        guess = 2 * np.pi * (1 + mu**2 / 16) if mu < 2 else (3 - 2 * np.log(2)) * mu + 7.014 * mu ** (-1 / 3)

        def down(t, y):
            return y[0]

        down.direction = -1
        sol = solve_ivp(lambda t, y: self.rhs(t, y, np), (0.0, (cycles + 1.5) * guess), self.initial_state(),
                        method=solver.method, jac=self.jac, rtol=solver.rtol, atol=solver.atol, events=down)
        crossings = sol.t_events[0]
        if len(crossings) < cycles + 1:
            raise RuntimeError(f"vdp: found {len(crossings)} zero crossings of x for mu={mu}, expected {cycles + 1}")
        return float(np.mean(np.diff(crossings[-(cycles + 1):])))

    def protocol(self) -> Protocol:
        p, T = self.params, self.period
        return Protocol(
            grid=UniformGrid(T / p.samples_per_period),
            train=(0.0, p.periods_train * T),
            windows=(Window("extrapolation", *(T * np.array(p.periods_extrapolation))),
                     Window("long", *(T * np.array(p.periods_long)))),
            noise=GaussianNoise(p.noise, p.noise_seed),
        )

