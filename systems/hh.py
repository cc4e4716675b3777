"""Hodgkin–Huxley neuron in the -65 mV convention (technical notes §2; paper §3.2, §3.5).

State z = (V, n, m, h): V in mV, gates dimensionless in [0, 1]; t in ms, currents in uA/cm^2,
conductances in mS/cm^2, capacitance in uF/cm^2, rates in 1/ms.

    C_m dV/dt = I_ext - g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L)
    dx/dt     = alpha_x(V) (1 - x) - beta_x(V) x,   x in {n, m, h}

The rate formulas are written once, generic over the array library (`xp` = numpy or torch), so
the scipy reference and the differentiable torch vector field cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple, Optional

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from stiffbench.api import (
    NoNoise,
    ODEParams,
    ODESystem,
    Oscillating,
    OUNoise,
    Protocol,
    ReferenceSolver,
    Spiking,
    State,
    UniformGrid,
    Window,
    param,
)

# Fixed per-channel OU sigma (V, n, m, h) in channel units per sqrt(ms) (technical notes §6).
_FIXED_SIGMA = {
    "paper_literal": (0.5, 0.5, 0.5, 0.5),
    "repro_csv": (0.5, 0.0018, 0.0018, 0.0018),
    "none": (0.0, 0.0, 0.0, 0.0),
}
# Presets whose stationary noise std is a fraction of each channel's clean training-window std.
_RELATIVE_STD = {"relative_2pct": 0.02}
NOISE_PRESETS = (*_FIXED_SIGMA, *_RELATIVE_STD)

Interval = tuple[float, float]
Gate = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


# ----------------------------------------------------------------------------------------------
# Rate functions
# ----------------------------------------------------------------------------------------------

# Below this |u| the series of u / (1 - exp(-u)) is used (its truncation error, u^4/720, is
# far below float64 round-off there). The derivative's exact form loses ~1e-16/u^2 to
# cancellation, so its series takes over at a larger |u|.
_SERIES_EPS = 1e-4
_DERIV_SERIES_EPS = 1e-2


def _vtrap(u, xp):
    """u / (1 - exp(-u)) with its removable singularity at u=0 (limit 1) handled exactly.

    Double-where: the unused branch is evaluated at a safe u so torch gradients stay finite.
    """
    small = xp.abs(u) < _SERIES_EPS
    u_safe = xp.where(small, xp.ones_like(u), u)
    return xp.where(small, 1 + u / 2 + u * u / 12, u_safe / (-xp.expm1(-u_safe)))


def _vtrap_du(u):
    """d/du of u / (1 - exp(-u)) (numpy); series 1/2 + u/6 - u^3/180 near u=0."""
    small = np.abs(u) < _DERIV_SERIES_EPS
    u_safe = np.where(small, 1.0, u)
    d = -np.expm1(-u_safe)
    return np.where(small, 0.5 + u / 6 - u**3 / 180, (d - u_safe * (1 - d)) / d**2)


class _Rate(NamedTuple):
    """One rate in 1/ms as a function of u = (V + offset) / scale.

    form "linexp":  coeff * (V + offset) / (1 - exp(-u)) = coeff * scale * u / (1 - exp(-u))
    form "exp":     coeff * exp(-u)
    form "sigmoid": coeff / (1 + exp(-u))
    """

    form: str
    coeff: float
    offset: float
    scale: float

    def __call__(self, V, xp):
        u = (V + self.offset) / self.scale
        if self.form == "linexp":
            return self.coeff * self.scale * _vtrap(u, xp)
        if self.form == "exp":
            return self.coeff * xp.exp(-u)
        return self.coeff / (1 + xp.exp(-u))

    def dV(self, V):
        """d rate / dV (numpy)."""
        u = (V + self.offset) / self.scale
        if self.form == "linexp":
            return self.coeff * _vtrap_du(u)
        if self.form == "exp":
            return -self.coeff * np.exp(-u) / self.scale
        s = 1 / (1 + np.exp(-u))
        return self.coeff * s * (1 - s) / self.scale


# (alpha, beta) per gate, in state order n, m, h.
RATES = {
    "n": (_Rate("linexp", 0.01, 55.0, 10.0), _Rate("exp", 0.125, 65.0, 80.0)),
    "m": (_Rate("linexp", 0.1, 40.0, 10.0), _Rate("exp", 4.0, 65.0, 18.0)),
    "h": (_Rate("exp", 0.07, 65.0, 20.0), _Rate("sigmoid", 1.0, 35.0, 10.0)),
}


def rates(V, xp=np):
    """{gate: (alpha, beta)} at membrane potential V (mV), in 1/ms, elementwise over V."""
    return {gate: (alpha(V, xp), beta(V, xp)) for gate, (alpha, beta) in RATES.items()}


# ----------------------------------------------------------------------------------------------
# Vector field and Jacobian
# ----------------------------------------------------------------------------------------------

def vector_field(z, p: "HodgkinHuxley.Params", xp=np):
    """dz/dt for z of shape (..., 4) = (V, n, m, h); numpy (float64) or torch (any dtype/device)."""
    V, n, m, h = z[..., 0], z[..., 1], z[..., 2], z[..., 3]
    i_ion = p.g_Na * m**3 * h * (V - p.E_Na) + p.g_K * n**4 * (V - p.E_K) + p.g_L * (V - p.E_L)
    r = rates(V, xp)
    d_gates = [a * (1 - x) - b * x for x, (a, b) in zip((n, m, h), r.values())]
    return xp.stack([(p.I_ext - i_ion) / p.C_m, *d_gates], -1)


def jacobian(z, p: "HodgkinHuxley.Params") -> np.ndarray:
    """Analytic d(dz/dt)/dz (numpy), shape (..., 4, 4); used by the stiff reference solver."""
    z = np.asarray(z, dtype=np.float64)
    V, n, m, h = z[..., 0], z[..., 1], z[..., 2], z[..., 3]
    J = np.zeros(z.shape[:-1] + (4, 4))
    J[..., 0, 0] = -(p.g_Na * m**3 * h + p.g_K * n**4 + p.g_L) / p.C_m
    J[..., 0, 1] = -4 * p.g_K * n**3 * (V - p.E_K) / p.C_m
    J[..., 0, 2] = -3 * p.g_Na * m**2 * h * (V - p.E_Na) / p.C_m
    J[..., 0, 3] = -p.g_Na * m**3 * (V - p.E_Na) / p.C_m
    for i, (x, (alpha, beta)) in enumerate(zip((n, m, h), RATES.values()), start=1):
        J[..., i, 0] = alpha.dV(V) * (1 - x) - beta.dV(V) * x
        J[..., i, i] = -(alpha(V, np) + beta(V, np))
    return J


class HodgkinHuxley(ODESystem, Spiking, Oscillating):
    """Hodgkin–Huxley tonic spiking under a constant current, learned from noisy full-state data.

    Defaults follow the paper's setup as reconstructed in technical notes §1.3: I_ext = 10 uA/cm^2
    from t=0, y0 = (V, n, m, h) = (-65, 0.32, 0.05, 0.6), training window [0, 14.68] ms sampled
    every 0.01 ms (1469 points) with one fixed OU noise realisation (paper eq. 9, theta=5).
    Evaluation windows: extrapolation [14.68, 100] ms and long [100, 1000] ms, on the 0.01 ms grid.
    Spikes: peaks of V above 0 mV, merged within 2 ms, matched within 2 ms (technical notes §5).
    Data loss: the paper's raw-unit sum over states (`data_loss = "sum_states"`), which weighs a
    gate's error about 1e-4 as much as V's; `"standardised"` weighs them equally.

    Noise presets (per-channel sigma for V, n, m, h; technical notes §6):
      paper_literal  sigma = 0.5 on every channel: eq. 9 taken literally, in channel units.
      repro_csv      sigma = (0.5, 0.0018, 0.0018, 0.0018): the per-channel scale seen in the
                     public reproduction's data file.
      relative_2pct  per channel, the sigma whose OU stationary std sigma/sqrt(2 theta) is 0.02 x
                     the std (ddof=0) of that channel of the clean training-window trajectory.
      none           no noise.
    `noise_sigma` overrides the preset. `observe = ["V"]` observes the voltage only (methods that
    need the full state are then n/a).
    """

    name = "hh"
    description = "Hodgkin-Huxley neuron, constant current, tonic spiking (-65 mV convention)"
    citation = "Hodgkin & Huxley (1952), J. Physiol. 117:500; -65 mV convention of NEURON's hh.mod"
    states = (
        State("V", unit="mV"),
        State("n", bounds=(0.0, 1.0)),  # gating fractions
        State("m", bounds=(0.0, 1.0)),
        State("h", bounds=(0.0, 1.0)),
    )
    time_unit = "ms"
    voltage_state = oscillation_state = "V"
    spike_threshold, spike_merge, spike_tolerance = 0.0, 2.0, 2.0  # mV, ms, ms

    class Params(ODEParams):
        """HH constants, initial state, sampling, windows, observation noise and solver tolerances."""

        model_config = ConfigDict(allow_inf_nan=False)

        C_m: float = Field(1.0, gt=0, description="membrane capacitance (uF/cm^2)")
        g_Na: float = Field(120.0, ge=0, description="maximal sodium conductance (mS/cm^2)")
        g_K: float = Field(36.0, ge=0, description="maximal potassium conductance (mS/cm^2)")
        g_L: float = Field(0.3, ge=0, description="leak conductance (mS/cm^2)")
        E_Na: float = Field(50.0, description="sodium reversal potential (mV)")
        E_K: float = Field(-77.0, description="potassium reversal potential (mV)")
        E_L: float = Field(-54.387, description="leak reversal potential (mV); -54.387 rests at -65 mV")
        I_ext: float = Field(10.0, description="external current (uA/cm^2), constant from t=0")
        y0: tuple[float, Gate, Gate, Gate] = Field(
            (-65.0, 0.32, 0.05, 0.6), description="initial state (V mV, n, m, h) at t=0; gates in [0, 1]"
        )
        dt: float = param(0.01, protocol=True, gt=0, description="sampling step of every grid (ms)")
        t_train: Interval = param((0.0, 14.68), protocol=True, description="training window (ms); starts at t=0")
        extrapolation: Interval = param((14.68, 100.0), protocol=True,
                                        description="'extrapolation' evaluation window (ms)")
        long: Interval = param((100.0, 1000.0), protocol=True, description="'long' evaluation window (ms)")
        noise_preset: str = param("paper_literal", protocol=True,
                                  description=f"OU noise scale preset: {', '.join(NOISE_PRESETS)}")
        noise_sigma: Optional[tuple[NonNegative, NonNegative, NonNegative, NonNegative]] = param(
            None, protocol=True, description="per-channel OU sigma (V, n, m, h) overriding the preset; each >= 0"
        )
        noise_theta: float = param(5.0, protocol=True, gt=0, description="OU mean-reversion rate theta (1/ms)")
        noise_seed: int = param(1111, protocol=True, ge=0, description="seed of the one fixed noise realisation")
        solver_rtol: float = Field(1e-10, gt=0, description="relative tolerance of the reference solver")
        solver_atol: float = Field(1e-12, gt=0, description="absolute tolerance of the reference solver")
        observe: Optional[tuple[str, ...]] = param(
            None, protocol=True, added=True, min_length=1,
            description="the observed states, e.g. ['V'] (default: all four)",
        )

        @field_validator("noise_preset")
        @classmethod
        def _known_preset(cls, preset):
            if preset not in NOISE_PRESETS:
                raise ValueError(f"unknown noise preset {preset!r}; valid presets: {', '.join(NOISE_PRESETS)}")
            return preset

        @field_validator("observe")
        @classmethod
        def _known_states(cls, observe):
            if observe is not None:
                unknown = [s for s in observe if s not in ("V", "n", "m", "h")]
                if unknown or len(set(observe)) != len(observe):
                    raise ValueError(f"observe must list distinct states among V, n, m, h, got {list(observe)}")
            return observe

        @model_validator(mode="after")
        def _windows_and_grid(self):
            if self.t_train[0] != 0 or self.t_train[1] <= 0:
                raise ValueError(f"t_train must be (0, t1), t1 > 0, since y0 is the state at t=0; got {self.t_train}")
            for name in ("extrapolation", "long"):
                t0, t1 = getattr(self, name)
                if not t0 < t1:
                    raise ValueError(f"window {name} needs t0 < t1, got ({t0}, {t1})")
                if t0 < self.t_train[1]:
                    raise ValueError(f"window {name} starts at {t0}, before the training window ends")
            for t in (*self.t_train, *self.extrapolation, *self.long):
                if abs(t / self.dt - round(t / self.dt)) > 1e-6:
                    raise ValueError(f"time {t} is not on the dt={self.dt} sampling grid")
            return self

    def rhs(self, t, y, xp):
        return vector_field(y, self.params, xp)

    def jac(self, t, y):
        return jacobian(y, self.params)

    def reference_solver(self) -> ReferenceSolver:
        """scipy LSODA (ODEPACK; switches between Adams and BDF as stiffness demands) with the
        analytic Jacobian at the params' rtol/atol. Chosen over Radau, which at rtol=1e-10 needs
        ~50 s for 1000 ms against ~4 s here; over 1000 ms the two differ by at most 4e-4 mV in V
        and 3e-6 in the gates."""
        return ReferenceSolver("LSODA", self.params.solver_rtol, self.params.solver_atol)

    def protocol(self) -> Protocol:
        p = self.params
        observed = p.observe or self.state_names
        sigma = self.noise_sigma()
        noise = NoNoise()
        if sigma is None:
            noise = OUNoise(p.noise_theta, p.noise_seed, std_fraction=_RELATIVE_STD[p.noise_preset], dt=p.dt)
        elif np.any(sigma[[self.state_names.index(s) for s in observed]] > 0):
            sigma = tuple(float(sigma[self.state_names.index(s)]) for s in observed)
            noise = OUNoise(p.noise_theta, p.noise_seed, sigma=sigma, dt=p.dt)
        return Protocol(
            grid=UniformGrid(p.dt),
            train=p.t_train,
            windows=(Window("extrapolation", *p.extrapolation), Window("long", *p.long)),
            observed=None if p.observe is None else tuple(p.observe),
            noise=noise,
        )

    def noise_sigma(self) -> np.ndarray | None:
        """Per-channel OU sigma (V, n, m, h) of a fixed preset or `noise_sigma`; None for a
        preset relative to the clean training data (`relative_2pct`)."""
        p = self.params
        if p.noise_sigma is not None:
            return np.asarray(p.noise_sigma, dtype=np.float64)
        if p.noise_preset in _FIXED_SIGMA:
            return np.asarray(_FIXED_SIGMA[p.noise_preset], dtype=np.float64)
        return None
