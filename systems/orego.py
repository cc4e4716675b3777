"""The Oregonator (OREGO): Field and Noyes' model of the Belousov–Zhabotinsky reaction.

    dy1/dt = s (y2 - y1 y2 + y1 - q y1^2)
    dy2/dt = (-y2 - y1 y2 + y3) / s
    dy3/dt = w (y1 - y3)

with s = 77.27, w = 0.161, q = 8.375e-6 and y(0) = (1, 2, 3), in the form of the Test Set for IVP
Solvers (problem OREGO, file orego.f, routine feval), which integrates it over [0, 360]. y1, y2 and
y3 are the scaled concentrations of HBrO2, Br- and Ce(IV), dimensionless, as is time. Some sources
write the same equations expanded differently, e.g. dy1/dt = s (y2 + y1 (1 - q y1 - y2)) and
dy2/dt = (y3 - (1 + y1) y2) / s; these are algebraically the same terms.

The solution is a relaxation oscillation of period 302.86: y1 stays between 1 and 5 for most of a
cycle, then jumps within one time unit to a plateau near 1e5 (peak 1.18e5) that lasts 5.5 time
units; y2 swings between 3e-3 and 1.8e3 and y3 between 1 and 3.1e4. The Test Set's solution at t = 360 (computed with
RADAU at rtol = h0 = 1.1e-18, atol = 1.1e-40 in extended precision; routine solut of orego.f) is
y = (0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3).

Sources: orego.f of the Test Set for IVP Solvers (Mazzia & Magherini, Univ. Bari), read in the
copy liuqx315/Multiscale-pattern, sundials_extensions/regression/orego.f (revision
orego.F 1.4, whose header states that feval and solut are unchanged); the same constants and
reference values are in the R package deTestSet (cran/deTestSet, R/ex_orego.R and
R/ex_reference.R).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import (
    LogNormalNoise,
    ODESystem,
    Oscillating,
    param,
    Protocol,
    ReferenceSolver,
    State,
    UniformGrid,
    Window,
    windowed_params,
)

Interval = tuple[float, float]


class Oregonator(ODESystem, Oscillating):
    """The Oregonator learned from its Test Set span, [0, 360]: two spikes of y1, 1 % log-normal noise.

    Protocol: the grid every 0.1 (the spike's rise from y1 = 50 to 1e5 takes under one time unit,
    its plateau 5.5); training window [0, 360] (the Test Set's span: two spikes of y1, at t = 20.3
    and 323.2, and the slow recovery between them), observed on the grid with 1 % log-normal
    noise (each sample times exp(0.01 N(0, 1)): concentrations stay positive and keep their
    decades); evaluation windows fit [0, 360] (the training window itself), extrapolation
    [360, 1000] (two more cycles) and long [1000, 3000] (6.6 more). The oscillation
    metrics read y1: its upward crossings of its mean (about 790) lie on the spikes' rising
    edges, so they time each cycle to within a grid step. Data loss: within each cycle y1 spans
    five decades, y2 six and y3 four, and their largest values differ (1.18e5, 1.8e3, 3.1e4); a
    raw-unit loss (`data_loss = "sum_states"`) is dominated by y1's plateau, so use
    `"standardised"`, with `state_scale = "observed_max"` for the adaptive solvers' tolerances.
    Even then the samples on the slow branch (y1 near 1) weigh little against the spikes.
    """

    name = "orego"
    description = "Oregonator (OREGO), Belousov-Zhabotinsky relaxation oscillator, period 302.9"
    citation = ("Field & Noyes (1974), J. Chem. Phys. 60:1877; Hairer & Wanner (1996), Solving ODEs II, "
                "sec. IV.1; Test Set for IVP Solvers (Mazzia & Magherini), problem OREGO (orego.f)")
    states = (State("y1", bounds=(0.0, None)), State("y2", bounds=(0.0, None)), State("y3", bounds=(0.0, None)))
    oscillation_state = "y1"

    class Params(windowed_params(
        t_train=360.0, extrapolation=(360.0, 1000.0), long=(1000.0, 3000.0),
        dt=0.1, dt_help="step of the grid and of the observations",
        noise=0.01, noise_help="log-normal noise level (std of log)")):
        s: float = param(77.27, fit=(10.0, 300.0), gt=0, description="time-scale ratio s (the Test Set's 77.27)")
        w: float = param(0.161, fit=(0.05, 0.5), gt=0, description="relaxation rate w of y3")
        q: float = param(8.375e-6, fit=(1e-6, 1e-4), gt=0, description="quadratic self-reaction coefficient q of y1")
        y0: tuple[float, float, float] = Field((1.0, 2.0, 3.0), description="initial state at t=0")


    def rhs(self, t, y, xp):
        p = self.params
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        return xp.stack([p.s * (y2 - y1 * y2 + y1 - p.q * y1**2), (-y2 - y1 * y2 + y3) / p.s, p.w * (y1 - y3)], -1)

    def jac(self, t, y):
        p, (y1, y2, _) = self.params, y
        return np.array([
            [p.s * (1 - y2 - 2 * p.q * y1), p.s * (1 - y1), 0.0],
            [-y2 / p.s, -(1 + y1) / p.s, 1 / p.s],
            [p.w, 0.0, -p.w],
        ])

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian at rtol = atol = 1e-13: at t = 360 it agrees with the
        Test Set's solution to 4e-11 (relative); on the grid over [0, 3000] it agrees with Radau at
        rtol 1e-12, atol 1e-14 to 5e-7 relative at every point (4e-8 of each state's largest value)
        in 3 s, where that Radau takes 48 s."""
        return ReferenceSolver("LSODA", 1e-13, 1e-13)

    def protocol(self) -> Protocol:
        p = self.params
        return Protocol(
            grid=UniformGrid(p.dt),
            train=(0.0, p.t_train),
            windows=(Window("fit", 0.0, p.t_train), Window("extrapolation", *p.extrapolation),
                     Window("long", *p.long)),
            noise=LogNormalNoise(p.noise, p.noise_seed),
        )
