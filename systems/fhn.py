"""FitzHugh–Nagumo: a two-variable reduction of Hodgkin–Huxley's excitable dynamics.

    dv/dt = v - v^3 / 3 - w + I
    dw/dt = eps (v + a - b w)

v is a fast, voltage-like variable and w a slow recovery variable, both dimensionless, as is time.
With the defaults (a, b, eps, I) = (0.7, 0.8, 0.08, 0.5) and (v, w)(0) = (1, 1) (SciMLBenchmarks'
NonStiffODE/FitzhughNagumo_wpd) the system relaxes onto a limit cycle of period 39.5 with v in
[-1.97, 1.85]; eps sets the time-scale separation, so a small eps (e.g. 0.01) makes it stiff.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from stiffbench.api import (
    GaussianNoise,
    ODESystem,
    Oscillating,
    param,
    Protocol,
    ReferenceSolver,
    Spiking,
    State,
    UniformGrid,
    Window,
    windowed_params,
)

Interval = tuple[float, float]


class FitzHughNagumo(ODESystem, Spiking, Oscillating):
    """FitzHugh–Nagumo relaxation oscillator, learned from one noisy period of both variables.

    Protocol: the 0.1 grid; training window [0, 40] (one period, as the paper's HH task trains on
    one spike), observed every 0.1 with white Gaussian noise of 2 % of each variable's std;
    evaluation windows extrapolation [40, 280] (about six periods) and long [280, 2000].
    Spikes: peaks of v above 1, merged within 10 and matched within 5 time units (a quarter and an
    eighth of the period). Data loss: v and w have similar scales, so the paper's raw-unit sum
    (`data_loss = "sum_states"`) weighs them alike.
    """

    name = "fhn"
    description = "FitzHugh-Nagumo relaxation oscillator (dimensionless), one period of noisy data"
    citation = ("FitzHugh (1961), Biophys. J. 1:445; Nagumo, Arimoto & Yoshizawa (1962), Proc. IRE 50:2061; "
                "parameters of SciMLBenchmarks.jl NonStiffODE/FitzhughNagumo_wpd")
    states = (State("v"), State("w"))
    voltage_state = oscillation_state = "v"
    spike_threshold, spike_merge, spike_tolerance = 1.0, 10.0, 5.0

    class Params(windowed_params(
        t_train=40.0, extrapolation=(40.0, 280.0), long=(280.0, 2000.0), dt=0.1,
        noise=0.02, noise_help="noise std as a fraction of each variable's std")):
        a: float = param(0.7, fit=(0.3, 1.2), description="offset of the w-nullcline")
        b: float = param(0.8, fit=(0.4, 1.2), ge=0, description="slope of the w-nullcline")
        eps: float = param(0.08, fit=(0.01, 0.3), gt=0, description="time-scale ratio of w to v (1/tau); small eps is stiff")
        I: float = param(0.5, fit=(0.2, 0.8), description="external stimulus")
        y0: tuple[float, float] = Field((1.0, 1.0), description="initial state (v, w) at t=0")


    def rhs(self, t, y, xp):
        p = self.params
        v, w = y[..., 0], y[..., 1]
        return xp.stack([v - v**3 / 3 - w + p.I, p.eps * (v + p.a - p.b * w)], -1)

    def jac(self, t, y):
        p = self.params
        return np.array([[1 - y[0] ** 2, -1.0], [p.eps, -p.eps * p.b]])

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian at rtol = atol = 1e-13: over [0, 2000] it agrees with
        DOP853 at 1e-13 to 1.5e-9 in 0.4 s, where Radau at 1e-10 takes 10 s."""
        return ReferenceSolver("LSODA", 1e-13, 1e-13)

    def protocol(self) -> Protocol:
        p = self.params
        return Protocol(
            grid=UniformGrid(p.dt),
            train=(0.0, p.t_train),
            windows=(Window("extrapolation", *p.extrapolation), Window("long", *p.long)),
            noise=GaussianNoise(p.noise, p.noise_seed),
        )
