"""Hodgkin–Huxley neuron in the -65 mV convention (technical notes §2; paper §3.2, §3.5).

State z = (V, n, m, h): V in mV, gates dimensionless in [0, 1]; t in ms, currents in uA/cm^2,
conductances in mS/cm^2, capacitance in uF/cm^2, rates in 1/ms, temperature T in °C.

    C_m dV/dt = I(t) - g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L)
    dx/dt     = phi(T) (alpha_x(V) (1 - x) - beta_x(V) x),   x in {n, m, h}
    phi(T)    = 3^((T - 6.3) / 10)

phi is Hodgkin & Huxley's (1952) temperature factor, a Q10 of 3 on every rate constant about
their 6.3 °C (the form of NEURON's hh.mod: q10 = 3^((celsius - 6.3)/10) divides each tau); at the
default 6.3 °C it is 1 and is not applied. The external current I(t) is piecewise constant in
time (`PiecewiseConstant`): the constant I_ext of the paper, or steps, pulses or a seeded noisy
current, whose switch times the reference integration does not step across.

The rate formulas are written once, generic over the array library (`xp` = numpy or torch), so
the scipy reference and the differentiable torch vector field cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal, NamedTuple, Optional

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
    Times,
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
# The settings each stimulus protocol reads besides I_ext (which "pulses" does not read).
_STIMULUS_SETTINGS = {
    "constant": (),
    "steps": ("stimulus_steps",),
    "pulses": ("stimulus_pulses", "stimulus_base"),
    "noisy": ("stimulus_noise_std", "stimulus_noise_dt", "stimulus_noise_seed"),
}

Interval = tuple[float, float]
Gate = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]
NonNegativeTime = Annotated[float, Field(ge=0)]

# Hodgkin & Huxley (1952): rate constants measured at 6.3 °C, with a Q10 of 3.
Q10, REFERENCE_TEMPERATURE = 3.0, 6.3


def temperature_factor(temperature: float) -> float:
    """phi = 3^((T - 6.3) / 10), the factor on every gating rate at T °C (exactly 1 at 6.3 °C)."""
    return Q10 ** ((temperature - REFERENCE_TEMPERATURE) / 10)


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

def vector_field(z, p: "HodgkinHuxley.Params", xp=np, I=None):
    """dz/dt for z of shape (..., 4) = (V, n, m, h); numpy (float64) or torch (any dtype/device).

    I: the external current at each state's time, broadcasting against z[..., 0] (default: the
    constant p.I_ext). The gating rates are scaled by phi(p.temperature) unless it is 1.
    """
    V, n, m, h = z[..., 0], z[..., 1], z[..., 2], z[..., 3]
    i_ion = p.g_Na * m**3 * h * (V - p.E_Na) + p.g_K * n**4 * (V - p.E_K) + p.g_L * (V - p.E_L)
    r = rates(V, xp)
    d_gates = [a * (1 - x) - b * x for x, (a, b) in zip((n, m, h), r.values())]
    phi = temperature_factor(p.temperature)
    if phi != 1.0:
        d_gates = [phi * d for d in d_gates]
    return xp.stack([((p.I_ext if I is None else I) - i_ion) / p.C_m, *d_gates], -1)


def jacobian(z, p: "HodgkinHuxley.Params") -> np.ndarray:
    """Analytic d(dz/dt)/dz (numpy), shape (..., 4, 4), with the temperature factor on the gate
    rows; used by the stiff reference solver. The current does not depend on z."""
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
    phi = temperature_factor(p.temperature)
    if phi != 1.0:
        J[..., 1:, :] *= phi
    return J


# ----------------------------------------------------------------------------------------------
# External current
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PiecewiseConstant:
    """A current that is values[k] on [switches[k-1], switches[k]): values[0] before the first
    switch, values[-1] from the last one on; at a switch time it already has the new value.

    switches : (K,) strictly increasing times (ms)
    values   : (K + 1,) currents (uA/cm^2)
    """

    switches: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        switches = np.asarray(self.switches, dtype=np.float64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if len(values) != len(switches) + 1 or np.any(np.diff(switches) <= 0):
            raise ValueError("a piecewise-constant current needs strictly increasing switches and one value more")
        object.__setattr__(self, "switches", switches)
        object.__setattr__(self, "values", values)

    def __call__(self, t, y, xp=np):
        """The current at time(s) t for states y (..., 4), broadcasting against y[..., 0].

        t: a float, a 0-d array or tensor, per-sample times (M,) against y (..., M, 4), or one
        time per state with a trailing 1 (y.shape[:-1] + (1,), e.g. (B, 1) against y (B, 4), as
        `solve_independent` passes them). The lookup is in float64 (`searchsorted`, right side);
        a torch result has y's dtype and device.
        """
        if xp is np:
            current = self.values[np.searchsorted(self.switches, np.asarray(t, dtype=np.float64), side="right")]
        else:
            switches = xp.as_tensor(self.switches, dtype=xp.float64, device=y.device)
            index = xp.searchsorted(switches, xp.as_tensor(t, dtype=xp.float64, device=y.device), right=True)
            current = xp.as_tensor(self.values, dtype=y.dtype, device=y.device)[index]
        if current.ndim and current.ndim == y.ndim and current.shape[-1] == 1:
            current = current[..., 0]
        return current


class HodgkinHuxley(ODESystem, Spiking, Oscillating):
    """Hodgkin–Huxley spiking under a constant current (or a stimulus protocol), learned from noisy data.

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
    need the full state are then n/a). `sample_every` observes every k-th grid point from t=0
    (e.g. 0.1 ms: 147 observations on [0, 14.6]); the OU noise then steps at that interval.

    Training windows: one spike, [0, 14.68] ms (the paper's, the default); about three periods,
    `t_train = [0, 50]` (four spikes, 5001 observations) with the evaluation windows moved after
    it, e.g. `extrapolation = [50, 100]`; longer ones alike. A window must start at or after the
    end of t_train.

    Stimulus (`stimulus`; every protocol is a piecewise-constant current I(t), switching to its
    new value at each switch time, across which the reference is integrated piece by piece):
      constant  I_ext from t=0 (the paper's).
      steps     I_ext, then each (t_start, value) of `stimulus_steps` from t_start on; by default
                an f-I staircase 10 -> 20 (250 ms) -> 40 (500 ms) -> 0 (750 ms) uA/cm^2, whose
                periods are 14.64, 11.57 and 9.21 ms (17, 22 and 27 spikes), then rest.
      pulses    `stimulus_base` plus each (start, end, amplitude) of `stimulus_pulses` on
                [start, end) (overlaps add; I_ext unused); by default 10 uA/cm^2 on [100, 200)
                and 35 on [300, 400) ms on 0, the protocol of the OpenWorm HH tutorial
                (openworm/hodgkin_huxley_tutorial, Tutorial/Source/HodgkinHuxley.py; technical
                notes §1.3): rest before 100 ms, 7 spikes in [100, 200] (period 14.64 ms), 11 in
                [300, 400] (9.62 ms), none between or after. The default windows, made for the
                constant current, see only rest in training: move t_train over a pulse.
      noisy     I_ext + `stimulus_noise_std` N_k on [k dt_n, (k+1) dt_n), dt_n =
                `stimulus_noise_dt`, with N_k = numpy default_rng(`stimulus_noise_seed`)'s
                standard normals, up to the horizon (a longer horizon extends the same
                realisation), I_ext after it. The default (std 3, every 1 ms, seed 0) fires 64
                spikes in 1000 ms with ISIs from 11.5 to 36 ms; its 1000 pieces take 18 s to
                integrate, against 4 s for the constant current.
    A setting of a protocol other than the chosen one must keep its default (it would change the
    cell key, not the trajectory). Steps and pulses are this benchmark's choice of protocols.

    Temperature: every gating rate is multiplied by phi = 3^((T - 6.3)/10) (module docstring).
    Warming shortens the period: 14.64 ms at 6.3 °C, 10.38 at 10, 6.16 at 16.3 (phi = 3), 4.89 at
    20, with lower peaks (30, 28, 19, 8 mV on the limit cycle); from 22 °C on it fires at most
    once and rests (heat block; no peak above 0 mV at 25 °C). It is a weak stiffness knob while
    the neuron spikes. On the limit cycle (t in [100, 300] ms, I_ext = 10) the fastest gate rate
    phi (alpha + beta) grows from 7.1 /ms (6.3 °C) to 20.1 (16.3) and 28.9 (20), but the
    Jacobian's largest |eigenvalue| stays 27.0, 26.8 and 30.6 /ms: at 6.3 °C it is the
    membrane's conductance at the spike peak (|dV'/dV| up to 27.2), which warming lowers, and from
    about 20 °C the gates; relative to the period (|lambda|max x period) the stiffness falls from
    395 to 165 and 150. On the first spike from y0 the largest |eigenvalue| is 36.6, 31.0 and
    35.3 /ms; at rest it grows with phi (27 /ms at 25 °C, 46 at 30 °C).
    """

    name = "hh"
    description = "Hodgkin-Huxley neuron (-65 mV convention), tonic spiking under a constant current by default"
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
        g_Na: float = param(120.0, fit=(50.0, 200.0), ge=0, description="maximal sodium conductance (mS/cm^2)")
        g_K: float = param(36.0, fit=(10.0, 80.0), ge=0, description="maximal potassium conductance (mS/cm^2)")
        g_L: float = param(0.3, fit=(0.05, 1.0), ge=0, description="leak conductance (mS/cm^2)")
        E_Na: float = param(50.0, fit=(30.0, 70.0), description="sodium reversal potential (mV)")
        E_K: float = param(-77.0, fit=(-100.0, -60.0), description="potassium reversal potential (mV)")
        E_L: float = param(-54.387, fit=(-70.0, -40.0), description="leak reversal potential (mV); -54.387 rests at -65 mV")
        I_ext: float = Field(10.0, description="external current (uA/cm^2) from t=0: the constant, the current "
                                                "before the first step, the noisy current's mean")
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
        sample_every: Optional[float] = param(
            None, protocol=True, added=True, gt=0,
            description="observation interval (ms), a whole multiple of dt (default: dt, every grid point)",
        )
        temperature: float = param(
            6.3, added=True, description="temperature (°C); every gating rate is scaled by 3^((T - 6.3)/10)"
        )
        stimulus: Literal["constant", "steps", "pulses", "noisy"] = param(
            "constant", added=True,
            description="external current protocol: constant I_ext, steps, pulses, or a seeded noisy current",
        )
        stimulus_steps: tuple[tuple[NonNegativeTime, float], ...] = param(
            ((250.0, 20.0), (500.0, 40.0), (750.0, 0.0)), added=True, min_length=1,
            description="'steps': (t_start ms, current uA/cm^2) pairs, t_start increasing; I_ext before the first",
        )
        stimulus_pulses: tuple[tuple[NonNegativeTime, NonNegativeTime, float], ...] = param(
            ((100.0, 200.0, 10.0), (300.0, 400.0, 35.0)), added=True, min_length=1,
            description="'pulses': (start ms, end ms, amplitude uA/cm^2) added to stimulus_base on [start, end)",
        )
        stimulus_base: float = param(0.0, added=True, description="'pulses': the current outside the pulses (uA/cm^2)")
        stimulus_noise_std: NonNegative = param(
            3.0, added=True, description="'noisy': std of the current about its mean I_ext (uA/cm^2)"
        )
        stimulus_noise_dt: float = param(
            1.0, added=True, gt=0, description="'noisy': the current is redrawn every stimulus_noise_dt ms"
        )
        stimulus_noise_seed: int = param(0, added=True, ge=0, description="'noisy': seed of the current's realisation")

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
            if self.sample_every is not None:
                k = self.sample_every / self.dt
                if round(k) < 1 or abs(k - round(k)) > 1e-6:
                    raise ValueError(f"sample_every={self.sample_every} is not a whole multiple of dt={self.dt}")
                if self.sample_every > self.t_train[1]:
                    raise ValueError(f"sample_every={self.sample_every} leaves fewer than two observations in t_train")
            return self

        @model_validator(mode="after")
        def _stimulus_settings(self):
            for protocol, names in _STIMULUS_SETTINGS.items():
                for name in names:
                    if protocol != self.stimulus and getattr(self, name) != type(self).model_fields[name].default:
                        raise ValueError(f"{name} is a setting of stimulus '{protocol}', unused with "
                                         f"stimulus '{self.stimulus}'")
            if self.stimulus == "pulses" and self.I_ext != type(self).model_fields["I_ext"].default:
                raise ValueError("I_ext is unused with stimulus 'pulses' (the current outside pulses is stimulus_base)")
            starts = [t for t, _ in self.stimulus_steps]
            if any(b <= a for a, b in zip(starts, starts[1:])):
                raise ValueError(f"stimulus_steps need strictly increasing start times, got {starts}")
            for start, end, _ in self.stimulus_pulses:
                if not start < end:
                    raise ValueError(f"a stimulus pulse needs start < end, got ({start}, {end})")
            return self

    @cached_property
    def current(self) -> PiecewiseConstant:
        """The external current I(t) of the `stimulus` protocol (piecewise constant in t)."""
        p = self.params
        if p.stimulus == "steps":
            return PiecewiseConstant([t for t, _ in p.stimulus_steps], [p.I_ext, *(i for _, i in p.stimulus_steps)])
        if p.stimulus == "pulses":
            switches = sorted({t for start, end, _ in p.stimulus_pulses for t in (start, end)})
            values = [p.stimulus_base] + [
                p.stimulus_base + sum(a for start, end, a in p.stimulus_pulses if start <= t < end) for t in switches
            ]
            return PiecewiseConstant(switches, values)
        if p.stimulus == "noisy":
            horizon = max(p.extrapolation[1], p.long[1])
            n = math.ceil(horizon / p.stimulus_noise_dt - 1e-9)
            draws = np.random.default_rng(p.stimulus_noise_seed).standard_normal(n)
            return PiecewiseConstant(np.arange(1, n + 1) * p.stimulus_noise_dt,
                                     [*(p.I_ext + p.stimulus_noise_std * draws), p.I_ext])
        return PiecewiseConstant([], [p.I_ext])

    def breakpoints(self) -> tuple[float, ...]:
        """The current's switch times."""
        return tuple(self.current.switches.tolist())

    def rhs(self, t, y, xp):
        current = self.current
        return vector_field(y, self.params, xp, current(t, y, xp) if len(current.switches) else None)

    def jac(self, t, y):
        return jacobian(y, self.params)

    def reference_solver(self) -> ReferenceSolver:
        """scipy LSODA (ODEPACK; switches between Adams and BDF as stiffness demands) with the
        analytic Jacobian at the params' rtol/atol. Chosen over Radau, which at rtol=1e-10 needs
        ~50 s for 1000 ms against ~4 s here; over 1000 ms the two differ by at most 4e-4 mV in V
        and 3e-6 in the gates. For the default pulses (450 ms, five pieces) it agrees with Radau
        at rtol 1e-12, atol 1e-14, run piece by piece with each piece's constant current, to 3.1e-5
        mV in V and 2.3e-7 in the gates (2.2 s against 55 s)."""
        return ReferenceSolver("LSODA", self.params.solver_rtol, self.params.solver_atol)

    def protocol(self) -> Protocol:
        p = self.params
        observed = p.observe or self.state_names
        every = 1 if p.sample_every is None else round(p.sample_every / p.dt)
        step = p.dt if every == 1 else p.sample_every
        sigma = self.noise_sigma()
        noise = NoNoise()
        if sigma is None:
            noise = OUNoise(p.noise_theta, p.noise_seed, std_fraction=_RELATIVE_STD[p.noise_preset], dt=step)
        elif np.any(sigma[[self.state_names.index(s) for s in observed]] > 0):
            sigma = tuple(float(sigma[self.state_names.index(s)]) for s in observed)
            noise = OUNoise(p.noise_theta, p.noise_seed, sigma=sigma, dt=step)
        return Protocol(
            grid=UniformGrid(p.dt),
            train=p.t_train,
            windows=(Window("extrapolation", *p.extrapolation), Window("long", *p.long)),
            # every `every`-th point of the grid in the training window, from t=0
            observe=None if every == 1 else Times(tuple(UniformGrid(p.dt).times(*p.t_train)[::every].tolist())),
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
