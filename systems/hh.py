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
from scipy.integrate import solve_ivp

from stiffbench.api import AbstractSystem, Bounded, KnownPhysics, PluginParams, Spiking, TrainingTask, Trajectory, Window
from stiffbench.cache import cached_arrays
from stiffbench.noise import ou_noise, ou_sigma_for_std

# Bump when the integration changes in a way that changes the cached reference.
SOLVER_TAG = "scipy-lsoda-analytic-jac-v1"

# Fixed per-channel OU sigma (V, n, m, h) in channel units per sqrt(ms) (technical notes §6).
_FIXED_SIGMA = {
    "paper_literal": (0.5, 0.5, 0.5, 0.5),
    "repro_csv": (0.5, 0.0018, 0.0018, 0.0018),
    "none": (0.0, 0.0, 0.0, 0.0),
}
# Presets whose stationary noise std is a fraction of each channel's clean training-window std.
_RELATIVE_STD = {"relative_2pct": 0.02}
NOISE_PRESETS = (*_FIXED_SIGMA, *_RELATIVE_STD)

# The parameters that determine the clean trajectory (and so the reference cache key).
_TRAJECTORY_FIELDS = ("C_m", "g_Na", "g_K", "g_L", "E_Na", "E_K", "E_L", "I_ext", "y0", "dt",
                      "solver_rtol", "solver_atol")

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


def time_grid(t_end: float, dt: float) -> np.ndarray:
    """The sampling grid t_k = k*dt, k = 0..round(t_end/dt); reproducible, ends included."""
    return np.arange(round(t_end / dt) + 1) * dt


# ----------------------------------------------------------------------------------------------
# The system plugin
# ----------------------------------------------------------------------------------------------

class HodgkinHuxley(AbstractSystem, KnownPhysics, Spiking, Bounded):
    """Hodgkin–Huxley tonic spiking under a constant current, learned from noisy full-state data.

    Defaults follow the paper's setup as reconstructed in technical notes §1.3: I_ext = 10 uA/cm^2
    from t=0, y0 = (V, n, m, h) = (-65, 0.32, 0.05, 0.6), training window [0, 14.68] ms sampled
    every 0.01 ms (1469 points) with one fixed OU noise realisation (paper eq. 9, theta=5).

    Noise presets (per-channel sigma for V, n, m, h; technical notes §6):
      paper_literal  sigma = 0.5 on every channel: eq. 9 taken literally, in channel units.
      repro_csv      sigma = (0.5, 0.0018, 0.0018, 0.0018): the per-channel scale seen in the
                     public reproduction's data file.
      relative_2pct  per channel, the sigma whose OU stationary std sigma/sqrt(2 theta) is 0.02 x
                     the std (ddof=0) of that channel of the clean training-window trajectory.
      none           no noise.
    `noise_sigma` overrides the preset.
    """

    name = "hh"
    description = "Hodgkin-Huxley neuron, constant current, tonic spiking (-65 mV convention)"
    state_names = ("V", "n", "m", "h")
    voltage_state = "V"
    state_bounds = {"n": (0.0, 1.0), "m": (0.0, 1.0), "h": (0.0, 1.0)}  # gating fractions

    class Params(PluginParams):
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
        dt: float = Field(0.01, gt=0, description="sampling step of every grid (ms)")
        t_train: Interval = Field((0.0, 14.68), description="training window (ms); starts at t=0")
        extrapolation: Interval = Field((14.68, 100.0), description="'extrapolation' evaluation window (ms)")
        long: Interval = Field((100.0, 1000.0), description="'long' evaluation window (ms)")
        noise_preset: str = Field("paper_literal", description=f"OU noise scale preset: {', '.join(NOISE_PRESETS)}")
        noise_sigma: Optional[tuple[NonNegative, NonNegative, NonNegative, NonNegative]] = Field(
            None, description="per-channel OU sigma (V, n, m, h) overriding the preset; each >= 0"
        )
        noise_theta: float = Field(5.0, gt=0, description="OU mean-reversion rate theta (1/ms)")
        noise_seed: int = Field(1111, ge=0, description="seed of the one fixed noise realisation")
        solver_rtol: float = Field(1e-10, gt=0, description="relative tolerance of the reference solver")
        solver_atol: float = Field(1e-12, gt=0, description="absolute tolerance of the reference solver")

        @field_validator("noise_preset")
        @classmethod
        def _known_preset(cls, preset):
            if preset not in NOISE_PRESETS:
                raise ValueError(f"unknown noise preset {preset!r}; valid presets: {', '.join(NOISE_PRESETS)}")
            return preset

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

    def evaluation_windows(self) -> list[Window]:
        p = self.params
        return [Window("extrapolation", *p.extrapolation), Window("long", *p.long)]

    def torch_vector_field(self):
        import torch

        p = self.params
        return lambda t, z: vector_field(z, p, torch)

    def reference(self, t_end: float, cache_dir: str | None = None) -> Trajectory:
        """Clean trajectory on time_grid(t_end, dt); computed once to max(t_end, horizon) and cached.

        scipy LSODA (ODEPACK; switches between Adams and BDF as stiffness demands) with the
        analytic Jacobian at the params' rtol/atol; samples come from its dense output at the grid
        points. Chosen over Radau, which at rtol=1e-10 needs ~50 s for 1000 ms against ~4 s here;
        over 1000 ms the two differ by at most 4e-4 mV in V and 3e-6 in the gates.
        """
        p = self.params
        t_full = max(t_end, self.horizon)
        config = {"solver": SOLVER_TAG, "t_end": t_full, **p.model_dump(include=set(_TRAJECTORY_FIELDS))}
        arrays = cached_arrays(cache_dir, "hh-reference", config, lambda: self._integrate(t_full))
        n = round(t_end / p.dt) + 1
        return Trajectory(arrays["t"][:n], arrays["y"][:n], self.state_names)

    def _integrate(self, t_end: float) -> dict[str, np.ndarray]:
        p = self.params
        t = time_grid(t_end, p.dt)
        sol = solve_ivp(
            lambda _, y: vector_field(y, p),
            (0.0, t[-1]),
            np.asarray(p.y0, dtype=np.float64),
            method="LSODA",
            jac=lambda _, y: jacobian(y, p),
            t_eval=t,
            rtol=p.solver_rtol,
            atol=p.solver_atol,
        )
        if not sol.success:
            raise RuntimeError(f"HH reference integration failed: {sol.message}")
        return {"t": t, "y": sol.y.T.copy()}

    def noise_sigma(self, clean_train: np.ndarray) -> np.ndarray:
        """Per-channel OU sigma for the clean training samples clean_train (shape (n, 4))."""
        p = self.params
        if p.noise_sigma is not None:
            return np.asarray(p.noise_sigma, dtype=np.float64)
        if p.noise_preset in _FIXED_SIGMA:
            return np.asarray(_FIXED_SIGMA[p.noise_preset], dtype=np.float64)
        return ou_sigma_for_std(_RELATIVE_STD[p.noise_preset] * clean_train.std(axis=0), p.noise_theta)

    def training_task(self, cache_dir: str | None = None) -> TrainingTask:
        p = self.params
        ref = self.reference(self.horizon, cache_dir)
        n_train = round(p.t_train[1] / p.dt) + 1
        clean = ref.y[:n_train]
        noise = ou_noise(n_train, p.dt, p.noise_theta, self.noise_sigma(clean), p.noise_seed)
        return TrainingTask(
            system=self.name,
            observations=Trajectory(ref.t[:n_train], clean + noise, self.state_names),
            y0=np.asarray(p.y0, dtype=np.float64),
            forecast_t=ref.t,
            dt=p.dt,
        )
