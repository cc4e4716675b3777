"""HIRES: the "High Irradiance RESponse" of photomorphogenesis on the basis of phytochrome.

Schäfer's (1975) model of phytochrome, in its inactive (Pr) and active (Pfr) forms, free and bound
to a receptor X (PrX, PfrX, PrX2, PfrX2, PfrX2E) with an enzyme E:

    dy1/dt = -k1 y1 + k2 y2 + k6 y3 + oks
    dy2/dt =  k1 y1 - (k2 + k3) y2
    dy3/dt = -(k6 + k1) y3 + k2 y4 + k5 y5
    dy4/dt =  k3 y2 + k1 y3 - (k4 + k2) y4
    dy5/dt = -(k5 + k1) y5 + k2 (y6 + y7)
    dy6/dt = -k7 y6 y8 + k8 y4 + k1 y5 - k2 y6 + k8 y7
    dy7/dt =  k7 y6 y8 - (k2 + k8 + k9) y7
    dy8/dt = -k7 y6 y8 + (k2 + k8 + k9) y7

with k1 = 1.71, k2 = 0.43, k3 = 8.32, k4 = 0.69, k5 = 0.035, k6 = 8.32, k7 = 280, k8 = 0.69,
k9 = 0.69, oks = 0.0007 and y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057), integrated over [0, 321.8122] in
the Test Set for IVP Solvers (problem HIRES; constants as named in hires.f and the R package
deTestSet; Hairer & Wanner (1996) write the same equations with the sums evaluated, e.g. 8.75 =
k2 + k3, 10.03 = k6 + k1, 1.745 = k5 + k1, 1.81 = k2 + k8 + k9). The states are the species
(y1, ..., y8) = (Pr, Pfr, PrX, PfrX, PrX2, PfrX2, PfrX2E, E), named as in deTestSet; the Test Set
states no units, so concentrations and time are unitless here.

The dynamics: a fast photoconversion (t < 10) into mostly PfrX2 (y6 = 0.75 at t = 10); a slow,
nearly linear depletion of y6 over [10, 310]; a sharp switch near t = 320 where y6 runs out and
the free enzyme E = y8 recovers by two decades; then relaxation to the steady state (reached to
1e-6, relative, by t = 400), where y7 = oks / k9 (the sum y1 + ... + y7 changes at rate oks - k9 y7) and
y7 + y8 = 0.0057 (conserved). The Test Set's solution at t = 321.8122 (computed with RADAU5 at
rtol = atol = h0 = 1.1e-18 in extended precision; routine hiressol) is
y = (0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4, 0.1175651343283149e-2,
0.2386356198831331e-2, 0.6238968252742796e-2, 0.2849998395185769e-2, 0.2850001604814231e-2).

Sources: hires.f of the Test Set for IVP Solvers (Mazzia & Magherini), revision hires.F 1.2 as
shipped in the R package deTestSet (cran/deTestSet, src/Ex_hires.f: hiresfun, hiressol); the
constants and initial state in cran/deTestSet R/ex_hires.R, the reference values also in
R/ex_reference.R.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import (
    LogNormalNoise,
    ODESystem,
    param,
    Protocol,
    ReferenceSolver,
    State,
    Times,
    Window,
    windowed_params,
)

Interval = tuple[float, float]

# The Test Set's end time, where its reference solution is given.
T_END = 321.8122


class Hires(ODESystem):
    """HIRES learned from its first tenth: 50 log-spaced noisy samples over [1e-3, 32.18122].

    Protocol: the grid log-spaced with 20 points per decade from 1e-3 to 10 (the photoconversion
    transient), then every 0.5 up to the horizon, plus 32.18122 and the Test Set's end 321.8122
    (explicit times; the switch near t = 320 spans about 40 of them); training window
    [0, 32.18122] (the first tenth of the Test Set's span: the learner sees the fast transient and
    the start of the slow depletion of PfrX2, not the switch) observed at 50 log-spaced times from
    1e-3 to 32.18122 with 1 % log-normal noise (each sample times exp(0.01 N(0, 1)), so species
    near 1e-5 keep their decades); evaluation windows fit [1e-3, 32.18122] (the training window
    itself), extrapolation [32.18122, 321.8122] (the rest of the Test Set's span: the depletion
    and the switch) and long [321.8122, 1000] (the relaxation to the steady state). Data loss:
    over the training window Pr, PfrX and PfrX2 reach 0.46 to 1 while Pfr and PrX2 stay below
    0.2, PrX below 0.02, PfrX2E and E below 6e-3 (E falls to 5e-5); a raw-unit loss
    (`data_loss = "sum_states"`) is dominated by the first three, so use `"standardised"`, with
    `state_scale = "observed_max"` for the adaptive solvers' tolerances.
    """

    name = "hires"
    description = "HIRES plant-physiology kinetics (Schaefer 1975), 8 species, Test Set span [0, 321.8122]"
    citation = ("Schäfer (1975), J. Math. Biol. 2:41; Hairer & Wanner (1996), Solving ODEs II, sec. IV.10; "
                "Test Set for IVP Solvers (Mazzia & Magherini), problem HIRES (hires.f)")
    states = tuple(State(name, bounds=(0.0, None))
                   for name in ("Pr", "Pfr", "PrX", "PfrX", "PrX2", "PfrX2", "PfrX2E", "E"))

    class Params(windowed_params(
        t_train=32.18122, extrapolation=(32.18122, T_END), long=(T_END, 1000.0), t_first=1e-3, n_observations=50,
        dt=0.5, dt_help="step of the grid after t = 10",
        noise=0.01, noise_help="log-normal noise level (std of log)")):
        k1: float = param(1.71, fit=(0.4275, 6.84), gt=0, description="Pr -> Pfr in every form (y1->y2, y3->y4, y5->y6)")
        k2: float = param(0.43, fit=(0.1075, 1.72), gt=0, description="Pfr -> Pr in every form (y2->y1, y4->y3, y6->y5, y7->y5+y8)")
        k3: float = param(8.32, fit=(2.08, 33.28), gt=0, description="Pfr -> PfrX (y2->y4)")
        k4: float = param(0.69, fit=(0.1725, 2.76), gt=0, description="loss rate of PfrX besides k2 (its gain in PfrX2 is k8 y4)")
        k5: float = param(0.035, fit=(0.00875, 0.14), gt=0, description="PrX2 -> PrX (y5->y3)")
        k6: float = param(8.32, fit=(2.08, 33.28), gt=0, description="PrX -> Pr (y3->y1)")
        k7: float = param(280.0, fit=(70, 1120), gt=0, description="PfrX2 + E -> PfrX2E (y6+y8->y7)")
        k8: float = param(0.69, fit=(0.1725, 2.76), gt=0, description="PfrX -> PfrX2 gain (y4) and PfrX2E -> PfrX2 + E (y7->y6+y8)")
        k9: float = param(0.69, fit=(0.1725, 2.76), gt=0, description="PfrX2E -> E (y7->y8), the only loss of y1+...+y7")
        oks: float = param(0.0007, fit=(0.000175, 0.0028), ge=0, description="constant synthesis of Pr (source of y1)")
        y0: tuple[float, float, float, float, float, float, float, float] = Field(
            (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057), description="initial concentrations at t=0")


    def rhs(self, t, y, xp):
        p = self.params
        y1, y2, y3, y4, y5, y6, y7, y8 = (y[..., i] for i in range(8))
        binding = p.k7 * y6 * y8 - (p.k2 + p.k8 + p.k9) * y7  # net PfrX2 + E -> PfrX2E
        return xp.stack([
            -p.k1 * y1 + p.k2 * y2 + p.k6 * y3 + p.oks,
            p.k1 * y1 - (p.k2 + p.k3) * y2,
            -(p.k6 + p.k1) * y3 + p.k2 * y4 + p.k5 * y5,
            p.k3 * y2 + p.k1 * y3 - (p.k4 + p.k2) * y4,
            -(p.k5 + p.k1) * y5 + p.k2 * (y6 + y7),
            -p.k7 * y6 * y8 + p.k8 * y4 + p.k1 * y5 - p.k2 * y6 + p.k8 * y7,
            binding,
            -binding,
        ], -1)

    def jac(self, t, y):
        p = self.params
        J = np.zeros((8, 8))
        J[0, :3] = -p.k1, p.k2, p.k6
        J[1, :2] = p.k1, -(p.k2 + p.k3)
        J[2, 2:5] = -(p.k6 + p.k1), p.k2, p.k5
        J[3, 1:4] = p.k3, p.k1, -(p.k4 + p.k2)
        J[4, 4:7] = -(p.k5 + p.k1), p.k2, p.k2
        J[5, 3:8] = p.k8, p.k1, -p.k7 * y[7] - p.k2, p.k8, -p.k7 * y[5]
        J[6, 5:8] = p.k7 * y[7], -(p.k2 + p.k8 + p.k9), p.k7 * y[5]
        J[7] = -J[6]
        return J

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian at rtol 1e-13, atol 1e-17: at t = 321.8122 it agrees with
        the Test Set's solution to 4.4e-12 (relative); on the grid over [0, 1000] it agrees with
        Radau at rtol 1e-12, atol 1e-18 to 1.2e-10 (relative, above 1e-6 of each species' largest
        value), and to 5e-7 down to 1e-12 of each species' largest value in each window (against
        Radau with atol 1e-21), in 0.1 s, where that Radau takes 2 s."""
        return ReferenceSolver("LSODA", 1e-13, 1e-17)

    def protocol(self) -> Protocol:
        p = self.params
        horizon = max(p.extrapolation[1], p.long[1])
        early = 1e-3 * 10.0 ** (np.arange(81) / 20)  # 1e-3 .. 10, 20 per decade
        late = 10.0 + p.dt * np.arange(1, int(np.floor((horizon - 10.0) / p.dt + 1e-9)) + 1)
        grid = np.union1d(np.concatenate([early, late]), [p.t_train, T_END, *p.extrapolation, *p.long])
        return Protocol(
            grid=Times(tuple(grid[grid <= horizon].tolist())),
            train=(0.0, p.t_train),
            observe=Times.log(1e-3, p.t_train, p.n_observations),
            windows=(Window("fit", 1e-3, p.t_train), Window("extrapolation", *p.extrapolation),
                     Window("long", *p.long)),
            noise=LogNormalNoise(p.noise, p.noise_seed),
        )
