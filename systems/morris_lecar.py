"""Morris–Lecar neuron: a calcium-potassium membrane model with Hodgkin's two excitability classes.

State z = (V, w): V in mV, w the fraction of open K+ channels (dimensionless, in [0, 1]); t in ms,
currents in uA/cm^2, conductances in mS/cm^2, capacitance in uF/cm^2, phi in 1/ms.

    C dV/dt = I_ext - g_L (V - E_L) - g_Ca m_inf(V) (V - E_Ca) - g_K w (V - E_K)
    dw/dt   = phi (w_inf(V) - w) / tau_w(V)

    m_inf(V) = (1 + tanh((V - V1) / V2)) / 2
    w_inf(V) = (1 + tanh((V - V3) / V4)) / 2
    tau_w(V) = 1 / cosh((V - V3) / (2 V4))

The calcium current is instantaneous (m = m_inf(V)), so w is the only slow variable. Constants
shared by both parameter sets (Rinzel & Ermentrout 1998, appendix A; Ermentrout & Terman 2010,
Table 3.1): C = 20, g_L = 2, g_K = 8, E_L = -60, E_K = -84, E_Ca = 120, V1 = -1.2, V2 = 18.
The two sets differ in g_Ca, V3, V4 and phi:

    class2 (Hodgkin class II, Hopf onset):  g_Ca = 4.4, V3 = 2,  V4 = 30,   phi = 0.04
    class1 (Hodgkin class I, SNIC onset):   g_Ca = 4.0, V3 = 12, V4 = 17.4, phi = 1/15

(R&E's figures 1-3 and 4-6, with the values of the XPP file that accompanies the chapter;
Ermentrout & Terman's Table 3.1 calls them "Hopf" and "SNLC" and prints phi = 0.067 for 1/15.
Some implementations use E_Ca = 130, e.g. BrainPy; this module follows R&E's 120.)

Bifurcations computed from these equations (this module's constants): class2's rest state loses
stability in a subcritical Hopf bifurcation at I_ext = 93.86, and stable periodic firing exists
from I_ext = 88.29 (a fold of periodic orbits), so firing starts at a finite period (114.5 ms at
I_ext = 88.5, 108.3 ms at 89); class1's rest state disappears in a saddle-node on the invariant
circle at I_ext = 39.96, where the period grows without bound (264 ms at I_ext = 40.5, 58.6 ms
at 60), and its remaining equilibrium turns stable in a Hopf bifurcation at I_ext = 97.79.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, NamedTuple, Optional

import numpy as np
from pydantic import Field, model_validator
from scipy.optimize import brentq

from stiffbench.api import (
    GaussianNoise,
    ODEParams,
    ODESystem,
    Oscillating,
    Protocol,
    ReferenceSolver,
    Spiking,
    State,
    UniformGrid,
    Window,
    check_windows_after,
    param,
)

Interval = tuple[float, float]
Regime = Literal["class1", "class2"]


class _Set(NamedTuple):
    """One regime's constants and its protocol defaults (times in ms)."""

    g_Ca: float
    V3: float
    V4: float
    phi: float
    I_ext: float          # tonic spiking at this current; the measured period is in the docstring
    t_train: float        # about one period
    extrapolation: Interval
    long: Interval


# Rinzel & Ermentrout (1998) appendix A / Ermentrout & Terman (2010) Table 3.1; currents and
# windows chosen here (see MorrisLecar's docstring for the periods they give).
REGIMES: dict[str, _Set] = {
    "class1": _Set(g_Ca=4.0, V3=12.0, V4=17.4, phi=1.0 / 15.0, I_ext=60.0,
                   t_train=60.0, extrapolation=(60.0, 400.0), long=(400.0, 4000.0)),
    "class2": _Set(g_Ca=4.4, V3=2.0, V4=30.0, phi=0.04, I_ext=100.0,
                   t_train=85.0, extrapolation=(85.0, 600.0), long=(600.0, 6000.0)),
}


class Constants(NamedTuple):
    """The constants in force: a regime's set with any explicitly given parameter applied."""

    C: float
    g_L: float
    g_K: float
    g_Ca: float
    E_L: float
    E_K: float
    E_Ca: float
    V1: float
    V2: float
    V3: float
    V4: float
    phi: float
    I_ext: float


def vector_field(z, k: Constants, xp=np):
    """dz/dt for z of shape (..., 2) = (V, w); numpy (float64) or torch (any dtype/device)."""
    V, w = z[..., 0], z[..., 1]
    m_inf = 0.5 * (1 + xp.tanh((V - k.V1) / k.V2))
    u = (V - k.V3) / k.V4
    w_inf = 0.5 * (1 + xp.tanh(u))
    i_ion = k.g_L * (V - k.E_L) + k.g_Ca * m_inf * (V - k.E_Ca) + k.g_K * w * (V - k.E_K)
    return xp.stack([(k.I_ext - i_ion) / k.C, k.phi * (w_inf - w) * xp.cosh(u / 2)], -1)


def jacobian(z, k: Constants) -> np.ndarray:
    """Analytic d(dz/dt)/dz (numpy), shape (2, 2) for z of shape (2,)."""
    V, w = float(z[0]), float(z[1])
    t1 = np.tanh((V - k.V1) / k.V2)
    m_inf, dm_inf = 0.5 * (1 + t1), 0.5 * (1 - t1 * t1) / k.V2
    u = (V - k.V3) / k.V4
    t3 = np.tanh(u)
    w_inf, dw_inf = 0.5 * (1 + t3), 0.5 * (1 - t3 * t3) / k.V4
    ch, sh = np.cosh(u / 2), np.sinh(u / 2)
    return np.array([
        [-(k.g_L + k.g_Ca * (dm_inf * (V - k.E_Ca) + m_inf) + k.g_K * w) / k.C, -k.g_K * (V - k.E_K) / k.C],
        [k.phi * (dw_inf * ch + (w_inf - w) * sh / (2 * k.V4)), -k.phi * ch],
    ])


def steady_current(V, k: Constants):
    """The ionic current at V with w at its steady state w_inf(V) (uA/cm^2), elementwise over V:
    the equilibria at current I are the roots of steady_current(V) = I."""
    m_inf = 0.5 * (1 + np.tanh((V - k.V1) / k.V2))
    w_inf = 0.5 * (1 + np.tanh((V - k.V3) / k.V4))
    return k.g_L * (V - k.E_L) + k.g_Ca * m_inf * (V - k.E_Ca) + k.g_K * w_inf * (V - k.E_K)


def resting_state(k: Constants, current: float = 0.0) -> tuple[float, float]:
    """The equilibrium (V, w_inf(V)) of lowest V at the given current: every equilibrium lies
    between the lowest and highest reversal potentials (outside them all currents share one sign),
    which are scanned every 0.01 mV for the first sign change, refined by Brent's method."""
    lo = min(k.E_L, k.E_K, k.E_Ca)
    hi = max(k.E_L, k.E_K, k.E_Ca)
    V = np.linspace(lo, hi, int(np.ceil((hi - lo) / 0.01)) + 1)
    g = current - steady_current(V, k)
    change = np.flatnonzero(np.sign(g[:-1]) != np.sign(g[1:]))
    if g[0] == 0:
        V_rest = float(V[0])
    elif not len(change):
        raise ValueError(f"morris_lecar: no equilibrium found between {lo:g} and {hi:g} mV")
    else:
        i = int(change[0])
        V_rest = float(V[i + 1]) if g[i + 1] == 0 else brentq(
            lambda v: current - float(steady_current(v, k)), V[i], V[i + 1], xtol=1e-13, rtol=4 * np.finfo(float).eps)
    return V_rest, float(0.5 * (1 + np.tanh((V_rest - k.V3) / k.V4)))


class MorrisLecar(ODESystem, Spiking, Oscillating):
    """Morris–Lecar tonic spiking under a constant current, learned from one noisy period.

    `regime` selects Rinzel & Ermentrout's parameter set, class2 (the default) or class1; any
    constant given explicitly overrides the set's value. Default regime: class2, R&E's first set
    (their figures 1-3), which is Hodgkin class II like the `hh` system (firing starts at a finite
    frequency through a Hopf bifurcation); at its default current the rest state is unstable, so
    tonic spiking is the only attractor. Default currents and the limit-cycle periods they give
    (the spacing of V's upward crossings of 0 mV on the reference, after the first spike):
      class2  I_ext = 100 uA/cm^2 (above the Hopf point 93.86): period 85.29 ms,
              V in [-50.3, 33.3] mV
      class1  I_ext = 60 uA/cm^2 (above the SNIC at 39.96, below the Hopf point 97.79): period
              58.62 ms, V in [-42.8, 32.8] mV

    Protocol: y0 is the resting state at I_ext = 0 (the equilibrium of lowest V; class2 (-60.855
    mV, 0.014915), class1 (-59.474 mV, 0.000270)), and the current steps to I_ext at t = 0, as in
    the HH task; the grid's step is 0.1 ms; training window [0, t_train] with t_train about one
    period (85 ms for class2, whose first spike peaks at 21.5 ms; 60 ms for class1, first peak at
    35.5 ms), both states observed on the grid with white Gaussian noise of 2 % of each state's
    std over the window (the fhn and vdp systems' noise: the stds of V and w differ by a factor of
    about 180, and relative noise treats them alike); evaluation windows extrapolation (class2
    [85, 600] ms, class1 [60, 400] ms: about six periods) and long (class2 [600, 6000] ms, class1
    [400, 4000] ms: about sixty periods). The windows' defaults follow the regime; give them to
    override.

    Spikes: peaks of V above 0 mV (spikes reach about 33 mV, the troughs between them -50 mV
    (class2) and -43 mV (class1); V stays above 0 mV for 15 ms (class1) to 22 ms (class2) of each
    spike, one excursion being one spike), merged within 10 ms (a sixth of class1's period) and
    matched within 8 ms (about a seventh of class1's period, a tenth of class2's). Data loss: w
    spans about 0.45 and V about 80 mV, so a raw-unit loss (`data_loss = "sum_states"`) ignores
    w; `"standardised"` weighs both alike.
    """

    name = "morris_lecar"
    description = "Morris-Lecar neuron, constant current, tonic spiking (class I or II excitability)"
    citation = ("Morris & Lecar (1981), Biophys. J. 35:193; parameter sets of Rinzel & Ermentrout (1998), "
                "Analysis of neural excitability and oscillations, in Methods in Neuronal Modeling, 2nd ed. "
                "(Koch & Segev, eds.), appendix A; Ermentrout & Terman (2010), Mathematical Foundations of "
                "Neuroscience, ch. 3, Table 3.1")
    states = (State("V", unit="mV"), State("w", bounds=(0.0, 1.0)))
    time_unit = "ms"
    voltage_state = oscillation_state = "V"
    spike_threshold, spike_merge, spike_tolerance = 0.0, 10.0, 8.0  # mV, ms, ms

    class Params(ODEParams):
        regime: Regime = Field("class2", description="parameter set: class2 (Hopf onset) or class1 (SNIC onset)")
        C: float = Field(20.0, gt=0, description="membrane capacitance (uF/cm^2)")
        g_L: float = param(2.0, fit=(0.5, 8.0), ge=0, description="leak conductance (mS/cm^2)")
        g_K: float = param(8.0, fit=(2.0, 32.0), ge=0, description="maximal K+ conductance (mS/cm^2)")
        g_Ca: Optional[float] = Field(None, ge=0, description="maximal Ca2+ conductance (mS/cm^2); default: "
                                                              "the regime's (class1 4.0, class2 4.4)")
        E_L: float = param(-60.0, fit=(-80.0, -40.0), description="leak reversal potential (mV)")
        E_K: float = param(-84.0, fit=(-100.0, -70.0), description="K+ reversal potential (mV)")
        E_Ca: float = param(120.0, fit=(100.0, 140.0), description="Ca2+ reversal potential (mV)")
        V1: float = Field(-1.2, description="half-activation voltage of m_inf (mV)")
        V2: float = Field(18.0, gt=0, description="slope scale of m_inf (mV)")
        V3: Optional[float] = Field(None, description="half-activation voltage of w_inf (mV); default: the "
                                                      "regime's (class1 12, class2 2)")
        V4: Optional[float] = Field(None, gt=0, description="slope scale of w_inf (mV); default: the regime's "
                                                            "(class1 17.4, class2 30)")
        phi: Optional[float] = Field(None, gt=0, description="rate scale of w (1/ms); default: the regime's "
                                                             "(class1 1/15, class2 0.04)")
        I_ext: Optional[float] = Field(None, description="external current from t=0 (uA/cm^2); default: the "
                                                         "regime's (class1 60, class2 100)")
        y0: Optional[tuple[float, float]] = Field(
            None, description="initial state (V mV, w) at t=0; default: the resting state at I_ext = 0")
        dt: float = param(0.1, protocol=True, gt=0, description="step of the sampling and evaluation grid (ms)")
        t_train: Optional[float] = param(None, protocol=True, gt=0, description="training window [0, t_train] "
                                         "(ms); default: the regime's (class1 60, class2 85)")
        extrapolation: Optional[Interval] = param(None, protocol=True, description="'extrapolation' window (ms); "
                                                  "default: the regime's (class1 [60, 400], class2 [85, 600])")
        long: Optional[Interval] = param(None, protocol=True, description="'long' window (ms); default: the "
                                         "regime's (class1 [400, 4000], class2 [600, 6000])")
        noise: float = param(0.02, protocol=True, ge=0, description="noise std as a fraction of each state's std")
        noise_seed: int = param(1111, protocol=True, ge=0, description="seed of the one fixed noise realisation")

        @model_validator(mode="after")
        def _windows(self):
            d = REGIMES[self.regime]
            t_train = d.t_train if self.t_train is None else self.t_train
            check_windows_after(t_train, {"extrapolation": d.extrapolation if self.extrapolation is None
                                          else self.extrapolation, "long": d.long if self.long is None else self.long})
            if self.y0 is not None and not 0 <= self.y0[1] <= 1:
                raise ValueError(f"y0's w must lie in [0, 1], got {self.y0[1]}")
            return self

    @cached_property
    def constants(self) -> Constants:
        """The constants in force: the regime's set, overridden by every parameter given."""
        p, d = self.params, REGIMES[self.params.regime]
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return Constants(C=p.C, g_L=p.g_L, g_K=p.g_K, g_Ca=pick(p.g_Ca, d.g_Ca), E_L=p.E_L, E_K=p.E_K,
                         E_Ca=p.E_Ca, V1=p.V1, V2=p.V2, V3=pick(p.V3, d.V3), V4=pick(p.V4, d.V4),
                         phi=pick(p.phi, d.phi), I_ext=pick(p.I_ext, d.I_ext))

    def rhs(self, t, y, xp):
        return vector_field(y, self.constants, xp)

    def jac(self, t, y):
        return jacobian(y, self.constants)

    def initial_state(self) -> np.ndarray:
        """params.y0, or the resting state at I_ext = 0 of the constants in force."""
        if self.params.y0 is not None:
            return np.asarray(self.params.y0, dtype=np.float64)
        return np.asarray(resting_state(self.constants, 0.0), dtype=np.float64)

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian at rtol = atol = 1e-12. The model is not stiff (along
        the default limit cycles the Jacobian's eigenvalues have real parts in [-0.34, 0.44] per
        ms), so accuracy on the spikes sets the step. Over the default horizons it agrees with
        DOP853 at rtol = atol = 1e-13 and with Radau at 1e-12 (which agree with each other to 2e-9
        mV) to 3.5e-7 mV in V and 1e-9 in w (class2, 6000 ms) and to 1.7e-7 mV and 8e-10 (class1,
        4000 ms), in about 1.5 s (class2) and 1.3 s (class1) on this project's 2-core machine
        (up to 2.7 s with the other core busy); DOP853 at 1e-13 takes 5-6 s, Radau at 1e-12
        100-130 s."""
        return ReferenceSolver("LSODA", 1e-12, 1e-12)

    def protocol(self) -> Protocol:
        p, d = self.params, REGIMES[self.params.regime]
        t_train = d.t_train if p.t_train is None else p.t_train
        return Protocol(
            grid=UniformGrid(p.dt),
            train=(0.0, t_train),
            windows=(Window("extrapolation", *(d.extrapolation if p.extrapolation is None else p.extrapolation)),
                     Window("long", *(d.long if p.long is None else p.long))),
            noise=GaussianNoise(p.noise, p.noise_seed),
        )
