"""E5: the chemical pyrolysis problem of the stiff DETEST set, with outputs over 18 decades of time.

    dy1/dt = -A y1 - B y1 y3
    dy2/dt =  A y1 - M C y2 y3
    dy3/dt =  A y1 - B y1 y3 - M C y2 y3 + C y4
    dy4/dt =  B y1 y3 - C y4

with A = 7.89e-10, B = 1.1e7, C = 1.13e3, M = 1e6 and y(0) = (1.76e-3, 0, 0, 0), integrated over
[0, 1e13] in the Test Set for IVP Solvers (problem E5, file e5.f, routines feval and init; it
writes M C = 1.13e9 and dy3/dt = dy2/dt - dy4/dt). The R package deTestSet starts y2, y3, y4 at
1e-20 instead and integrates with atol 1.11e-24 (rtol 1e-6); test drivers following Hairer &
Wanner (1996, sec. IV.10) use atol 1.7e-24. The Test Set states no units, so concentrations and
time are unitless here.

The dynamics: y3 reaches a quasi-steady state within 1e-3 while y2 and y4 grow; y2 peaks at
1.5e-10 near t = 300; y1 is consumed by B y1 y3 over 1e3 to 1e5 (by a factor 216), then more
slowly; once y1 is spent (t > 1e10), y2 and y3 decay together towards 1 / (M C t) (within 1.3 %
at t = 1e12). Since dy3/dt = dy2/dt - dy4/dt, the difference y2 - y3 - y4 keeps its initial
value (0) for all time: at t = 1e13, y2 = y3 = 8.8612e-23, and y1 and y4 are zero at any usable
absolute tolerance. The Test Set's solution there (computed with RADAU at rtol = h0 = 1.1e-18,
atol = 1.1e-40 in extended precision; routine solut of e5.f) is y = (0.1152903278711829e-290,
0.8867655517642120e-22, 0.8854814626268838e-22, 0): its y2 and y3 differ by 1.3e-25, 1.4e-3 of
their value, against the invariant, and their mean is the solution above to 2e-7; its y1 = 1e-290
is zero at its atol of 1e-40. The solution above agrees with every component of it to within the
absolute tolerance 1.7e-24 used with E5.

A float64 integration of the four equations loses that invariant: between t = 1e2 and 1e3, where
y2 and y4 are 1e-10, y2 - y3 - y4 drifts to 1e-21 (1e-11 of the terms), and after t = 1e11 this
error exceeds y2 and y3 themselves (scipy's Radau, BDF and LSODA at rtol 1e-10 to 1e-12 all end
at t = 1e13 with y2 or y3 at 1.7e-21 to 4.6e-21, 20 to 50 times the solution). The reference
therefore integrates (y1, y3, y4) with y2 = y3 + y4 + (y2 - y3 - y4)(0) substituted, which keeps
the invariant exactly (and involves no cancellation: y2 is a sum of non-negative terms).

Sources: e5.f of the Test Set for IVP Solvers (Mazzia & Magherini), revision e5.F 1.3, read in the
copy liuqx315/Multiscale-pattern, sundials_extensions/regression/e5.f (its header states that
feval, init and solut are unchanged); the constants, the deTestSet initial state and tolerances in
cran/deTestSet R/ex_e5.R; the reference values also in cran/deTestSet R/ex_reference.R.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.integrate import solve_ivp

from stiffbench.api import (
    LogGrid,
    LogNormalNoise,
    ODESystem,
    Protocol,
    ReferenceSolver,
    State,
    Times,
    Window,
    windowed_params,
)

Interval = tuple[float, float]

# The reduced state z = (y1, y3, y4); y2 = y3 + y4 + (y2 - y3 - y4)(0).
_REDUCED = [0, 2, 3]


class E5(ODESystem):
    """E5 learned from 50 log-spaced noisy samples over 1e-5 to 1e5, scored up to 1e13.

    Protocol: the grid log-spaced with 10 points per decade from 1e-5 (and t = 0), the Test Set's
    output times (deTestSet's times 0 and 10^(-5, -4.9, ..., 13)); training window [0, 1e5]
    observed at 50 log-spaced times from 1e-5 to 1e5 (as Robertson's; the learner sees y3's
    quasi-steady state, y2's peak and most of y1's consumption) with 1 % log-normal noise (each
    sample times exp(0.01 N(0, 1)), so species near 1e-17 keep their decades); evaluation windows
    fit [1e-5, 1e5] (the training window itself), extrapolation [1e5, 1e9] (y1's slow decay) and
    long [1e9, 1e13] (the 1 / (M C t) tail, to the Test Set's end). Data loss: y1 is about 1e-3
    while y2, y3 and y4 stay below 1.4e-10 and start near 1e-17, so a raw-unit loss (`data_loss =
    "sum_states"`) sees y1 only; use `"standardised"`, with `state_scale = "observed_max"` for the
    adaptive solvers' tolerances. Even standardised, each species' early samples (1e-17 to 1e-12)
    weigh nothing against its values near the peak: the data span decades, and a loss on their
    logarithms would weigh them alike.
    """

    name = "e5"
    description = "E5 chemical pyrolysis (stiff DETEST), 4 species from 1e-3 to 1e-22, times 1e-5..1e13"
    citation = ("Enright, Hull & Lindberg (1975), BIT 15:10 (stiff DETEST, problem E5); Hairer & Wanner (1996), "
                "Solving ODEs II, sec. IV.10; Test Set for IVP Solvers (Mazzia & Magherini), problem E5 (e5.f)")
    states = tuple(State(f"y{i}", bounds=(0.0, None)) for i in range(1, 5))

    class Params(windowed_params(
        t_train=1e5, extrapolation=(1e5, 1e9), long=(1e9, 1e13), t_first=1e-5, n_observations=50,
        noise=0.01, noise_help="log-normal noise level (std of log)")):
        A: float = Field(7.89e-10, gt=0, description="rate of y1 -> y2 + y3")
        B: float = Field(1.1e7, gt=0, description="rate of y1 + y3 -> y4")
        C: float = Field(1.13e3, gt=0, description="rate of y4 -> y3")
        M: float = Field(1e6, gt=0, description="M C is the rate of y2 + y3 -> (nothing)")
        y0: tuple[float, float, float, float] = Field((1.76e-3, 0.0, 0.0, 0.0), description="initial state at t=0")


    def rhs(self, t, y, xp):
        p = self.params
        y1, y2, y3, y4 = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        p1, p2, p3, p4 = p.A * y1, p.B * y1 * y3, p.M * p.C * y2 * y3, p.C * y4
        d2, d4 = p1 - p3, p2 - p4
        return xp.stack([-p1 - p2, d2, d2 - d4, d4], -1)

    def jac(self, t, y):
        p, (y1, y2, y3, _) = self.params, y
        MC = p.M * p.C
        return np.array([
            [-p.A - p.B * y3, 0.0, -p.B * y1, 0.0],
            [p.A, -MC * y3, -MC * y2, 0.0],
            [p.A - p.B * y3, -MC * y3, -MC * y2 - p.B * y1, p.C],
            [p.B * y3, 0.0, p.B * y1, -p.C],
        ])

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian on the invariant-preserving reduced form (see
        `integrate`) at rtol 1e-13 and atol 1e-30 for y1, 1e-36 for y2, y3, y4 (below 1e-30, what y1
        can still feed into y2 and y3, at most its own value, is negligible): at t = 1e13 y2 = y3
        agree with the mean of the Test Set's y2 and y3 to 2e-7; on the grid over [0, 1e13] it agrees
        with Radau at rtol 1e-12, atol (1e-32, 1e-38, 1e-38, 1e-44) on the same reduced form to
        8e-11 for y2 and y3, 5e-9 for y4 and 1.2e-7 for y1 (relative, down to 1e-14 of each
        species' largest value in the long window: 3e-28 for y1, 5e-40 for y4), in 0.6 s where
        that Radau takes 8 s."""
        return ReferenceSolver("LSODA", 1e-13, (1e-30, 1e-36, 1e-36, 1e-36))

    def integrate(self, t0: float, times: np.ndarray, solver: ReferenceSolver) -> np.ndarray:
        """The solution sampled at `times`, integrated as z = (y1, y3, y4) with y2 = y3 + y4 + c,
        c = (y2 - y3 - y4)(t0), the invariant of the equations (module docstring)."""
        y0 = self.initial_state()
        if len(y0) != len(self.states):
            raise ValueError(f"{self.name}: initial state has {len(y0)} values for {len(self.states)} states")
        c = y0[1] - y0[2] - y0[3]

        def full(z):
            return np.array([z[0], z[1] + z[2] + c, z[1], z[2]])

        # z = R y and y = P z + (0, c, 0, 0): dz/dt = R f(y), dz/dz' = R J P.
        P = np.array([[1.0, 0, 0], [0, 1, 1], [0, 1, 0], [0, 0, 1]])
        atol = np.broadcast_to(np.asarray(solver.atol, dtype=np.float64), (4,))[_REDUCED]
        sol = solve_ivp(lambda t, z: self.rhs(t, full(z), np)[_REDUCED], (t0, float(times[-1])), y0[_REDUCED],
                        method=solver.method, jac=lambda t, z: self.jac(t, full(z))[_REDUCED] @ P,
                        t_eval=times, rtol=solver.rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"{self.name} reference integration failed: {sol.message}")
        return np.stack([full(z) for z in sol.y.T])

    def protocol(self) -> Protocol:
        p = self.params
        return Protocol(
            grid=LogGrid(1e-5, 10),
            train=(0.0, p.t_train),
            observe=Times.log(1e-5, p.t_train, p.n_observations),
            windows=(Window("fit", 1e-5, p.t_train), Window("extrapolation", *p.extrapolation),
                     Window("long", *p.long)),
            noise=LogNormalNoise(p.noise, p.noise_seed),
        )
