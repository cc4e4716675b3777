"""The protocol layer: an ODE system states its physics and protocol; the core does the rest.

A system author writes the right-hand side once for numpy and torch (`rhs(t, y, xp)`), optionally
its Jacobian, its states (names, units, bounds), its time unit, initial state and `Protocol`.
`ODESystem` then provides everything the runner and the methods need:

- the reference: integrated by scipy's `solve_ivp` (stiff-capable method, per-state absolute
  tolerances, analytic Jacobian when given; piecewise across `breakpoints`, e.g. where a stimulus
  switches), sampled on the protocol's grid and the observation times, and cached on disk under a
  key built from every trajectory-shaping parameter, the solver settings, the times and the
  system's source file: nothing a system author can add is left out of it by mistake;
- the training task: the observation times and observed states, the noise, the initial state,
  the forecast grid;
- the evaluation windows, the vector field for physics-informed methods, units, bounds and the
  per-instance capabilities (`FullyObserved` unless the protocol observes a subset, `Bounded`
  when some state has bounds).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import os
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import create_model, model_validator
from scipy.integrate import solve_ivp

from .api import (
    AbstractSystem,
    Bounded,
    KnownPhysics,
    ParametrisedPhysics,
    PhysicsModel,
    State,
    TrainingTask,
    Trajectory,
    Window,
)
from .cache import cached_arrays
from .params import PluginParams, fit_ranges, param, trajectory_params
from .protocol import Protocol, check_windows_after


_IMPLICIT = ("Radau", "BDF", "LSODA")  # the solve_ivp methods that use a Jacobian


class ODEParams(PluginParams):
    """Base of an `ODESystem`'s parameters. Every field shapes the trajectory (and so enters the
    reference cache key) unless declared with `param(..., protocol=True)`."""


def windowed_params(
    *, t_train: float, extrapolation: tuple[float, float], long: tuple[float, float], noise: float, noise_help: str,
    dt: float | None = None, dt_help: str = "step of the sampling and evaluation grid",
    n_observations: int | None = None, t_first: float = 0.0,
) -> type[ODEParams]:
    """A base for a system's `Params` holding the usual protocol fields, with these defaults: the
    training window [0, t_train] (t_train > t_first), the evaluation windows 'extrapolation' and
    'long' (each checked to start after the training window), the noise level (`noise_help` says
    what it means for the system's noise model) and its seed, and where given the grid step `dt`
    and the number of (log-spaced) observations from t_first on. All are protocol-only."""
    fields: dict = {
        "t_train": (float, param(t_train, protocol=True, gt=t_first, description="training window [0, t_train]")),
        "extrapolation": (tuple[float, float], param(extrapolation, protocol=True, description="'extrapolation' window")),
        "long": (tuple[float, float], param(long, protocol=True, description="'long' window")),
        "noise": (float, param(noise, protocol=True, ge=0, description=noise_help)),
        "noise_seed": (int, param(1111, protocol=True, ge=0, description="seed of the one fixed noise realisation")),
    }
    if dt is not None:
        fields["dt"] = (float, param(dt, protocol=True, gt=0, description=dt_help))
    if n_observations is not None:
        fields["n_observations"] = (int, param(n_observations, protocol=True, ge=3,
                                               description=f"log-spaced observations over {t_first:g}..t_train"))

    def windows_after_training(params):
        check_windows_after(params.t_train, {"extrapolation": params.extrapolation, "long": params.long})
        return params

    validators = {"_windows_after_training": model_validator(mode="after")(windows_after_training)}
    return create_model("WindowedParams", __base__=ODEParams, __validators__=validators, **fields)


@dataclass(frozen=True)
class ReferenceSolver:
    """How the reference is integrated: a `solve_ivp` method and its tolerances.

    method : "Radau" (default: implicit, order 5, L-stable), "BDF" or "LSODA" (stiff-capable);
             "DOP853"/"RK45" only for non-stiff systems
    rtol   : relative tolerance
    atol   : absolute tolerance, one value or one per state (a species near 1e-5 needs its own)
    """

    method: str = "Radau"
    rtol: float = 1e-10
    atol: float | tuple[float, ...] = 1e-12

    def describe(self) -> str:
        atol = self.atol if isinstance(self.atol, float) else f"({', '.join(f'{a:g}' for a in self.atol)})"
        return f"scipy {self.method}, rtol {self.rtol:g}, atol {atol if isinstance(atol, str) else f'{atol:g}'}"


class ODESystem(AbstractSystem, KnownPhysics, Bounded, ParametrisedPhysics):
    """A system given by dy/dt = rhs(t, y) and a `Protocol`; subclass and fill in:

    states       : tuple of `State` (names, units, bounds), in the order of y
    time_unit    : unit of t ("" for dimensionless)
    citation     : where the equations, parameters and initial state come from
    Params       : an `ODEParams` model (fields the trajectory does not depend on declared with
                   `param(..., protocol=True)`)
    rhs          : dy/dt for numpy (float64) and torch (any float dtype/device), batched over
                   leading dimensions of y
    protocol     : the grid, training window, observations, noise and evaluation windows
    and optionally `jac` (analytic Jacobian), `initial_state` (default: params.y0),
    `reference_solver` (default: Radau at rtol 1e-10, atol 1e-12) and `breakpoints`.
    """

    states: ClassVar[tuple[State, ...]]
    citation: ClassVar[str] = ""
    Params: ClassVar[type[ODEParams]] = ODEParams

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "states" in cls.__dict__:
            cls.state_names = tuple(s.name for s in cls.states)

    # -- what the author provides --------------------------------------------------------------
    @abstractmethod
    def rhs(self, t, y, xp):
        """dy/dt at time t for y of shape (..., n); xp is numpy or torch (array functions)."""

    @abstractmethod
    def protocol(self) -> Protocol:
        """The benchmark protocol, from this instance's parameters."""

    def jac(self, t: float, y: np.ndarray) -> np.ndarray | None:
        """The analytic Jacobian d(rhs)/dy (n, n) for numpy y (n,), or None for finite differences."""
        return None

    def initial_state(self) -> np.ndarray:
        return np.asarray(self.params.y0, dtype=np.float64)

    def reference_solver(self) -> ReferenceSolver:
        return ReferenceSolver()

    def breakpoints(self) -> tuple[float, ...]:
        """Times where rhs is discontinuous in t (e.g. a stimulus switching): the reference is
        integrated piecewise between them, never stepping across one."""
        return ()

    # -- what the core derives -------------------------------------------------------------------
    def evaluation_windows(self) -> list[Window]:
        return list(self.protocol().windows)

    def state_units(self) -> dict[str, str]:
        return {s.name: s.unit for s in self.states if s.unit}

    def observed_states(self) -> tuple[str, ...]:
        """The protocol's observed states (ValueError unless they are distinct states of the
        system, in its order)."""
        observed = self.protocol().observed or self.state_names
        known = [name for name in self.state_names if name in observed]
        if list(observed) != known:
            raise ValueError(f"{self.name}: observed states {list(observed)} must be distinct states among "
                             f"{', '.join(self.state_names)}, in that order")
        return tuple(observed)

    @property
    def state_bounds(self) -> dict[str, tuple[float, float]]:
        """{name: (lower, upper)} of the bounded states; a missing side is -inf or +inf."""
        return {
            s.name: (-np.inf if s.bounds[0] is None else s.bounds[0], np.inf if s.bounds[1] is None else s.bounds[1])
            for s in self.states
            if s.bounds is not None
        }

    def has_capability(self, capability: type) -> bool:
        if capability is Bounded:
            return bool(self.state_bounds)
        if capability is ParametrisedPhysics:
            return bool(fit_ranges(self.Params))
        return super().has_capability(capability)

    def lacks(self, capability: type) -> str | None:
        if capability is ParametrisedPhysics and not self.has_capability(capability):
            return f"{capability.__name__} (no parameter of {self.name} is declared fittable)"
        return super().lacks(capability)

    def torch_vector_field(self):
        import torch

        return lambda t, z: self.rhs(t, z, torch)

    def physics_model(self) -> PhysicsModel:
        """The parameters declared `param(..., fit=(lower, upper))`, and the field with given values
        for them (the others as this instance has them; `functools.cached_property` values derived
        from the parameters are recomputed from the given ones)."""
        import torch

        derived = [name for klass in type(self).__mro__ for name, attr in vars(klass).items()
                   if isinstance(attr, functools.cached_property)]

        def field_with(values):
            clone = copy.copy(self)
            for name in derived:  # values cached from this instance's parameters are recomputed from the new ones
                clone.__dict__.pop(name, None)
            clone.params = self.params.model_copy(update=dict(values))  # tensors: not validated, by design
            return lambda t, z: clone.rhs(t, z, torch)

        return PhysicsModel(fit_ranges(self.Params), field_with)

    def reference(self, t_end: float, cache_dir: str | os.PathLike | None = None) -> Trajectory:
        """The clean trajectory on the protocol's grid from t0 to t_end (computed once up to
        max(t_end, horizon) together with the observation times, and cached)."""
        protocol = self.protocol()
        t, y = self._reference_arrays(protocol, max(t_end, protocol.horizon), cache_dir)
        keep = np.isin(t, protocol.forecast_times(t_end))
        return Trajectory(t[keep], y[keep], self.state_names)

    def training_task(self, cache_dir: str | os.PathLike | None = None) -> TrainingTask:
        protocol = self.protocol()
        t, y = self._reference_arrays(protocol, protocol.horizon, cache_dir)
        t_obs = protocol.observation_times()
        observed = self.observed_states()
        columns = [self.state_names.index(name) for name in observed]
        clean = np.ascontiguousarray(y[np.searchsorted(t, t_obs)][:, columns])
        noisy = protocol.noise.apply(t_obs, clean)
        return TrainingTask(
            system=self.name,
            observations=Trajectory(t_obs, noisy, tuple(observed)),
            y0=self.initial_state(),
            forecast_t=protocol.forecast_times(),
            dt=protocol.sampling_step(),
            t0=protocol.t0,
            state_names=self.state_names,
            time_unit=self.time_unit,
        )

    def _reference_arrays(self, protocol: Protocol, t_end: float, cache_dir) -> tuple[np.ndarray, np.ndarray]:
        times = np.union1d(protocol.forecast_times(t_end), protocol.observation_times())
        solver = self.reference_solver()
        config = {
            "system": f"{type(self).__module__}.{type(self).__qualname__}",
            "source": _source_digest(type(self)),
            "params": trajectory_params(self.params),
            "solver": [solver.method, solver.rtol, solver.atol],
            "t0": protocol.t0,
            "breakpoints": list(self.breakpoints()),
            "times": hashlib.sha256(np.ascontiguousarray(times, dtype=np.float64).tobytes()).hexdigest(),
        }
        arrays = cached_arrays(cache_dir, f"{self.name}-reference", config,
                               lambda: {"t": times, "y": self.integrate(protocol.t0, times, solver)})
        return arrays["t"], arrays["y"]

    def integrate(self, t0: float, times: np.ndarray, solver: ReferenceSolver) -> np.ndarray:
        """The solution from the initial state at t0, sampled at `times` (increasing, >= t0), (len, n);
        piecewise across the breakpoints, each piece starting from the previous piece's end."""
        y0 = self.initial_state()
        if len(y0) != len(self.states):
            raise ValueError(f"{self.name}: initial state has {len(y0)} values for {len(self.states)} states")
        jac = None
        if type(self).jac is not ODESystem.jac and solver.method in _IMPLICIT:
            jac = lambda t, y: self.jac(t, y)  # noqa: E731
        atol = solver.atol if isinstance(solver.atol, float) else np.asarray(solver.atol, dtype=np.float64)
        cuts = [b for b in sorted(self.breakpoints()) if t0 < b < times[-1]]
        out = np.empty((len(times), len(y0)))
        start, y = t0, y0
        for end in [*cuts, float(times[-1])]:
            inside = (times >= start) & (times <= end)
            sol = solve_ivp(lambda t, z: self.rhs(t, z, np), (start, end), y, method=solver.method, jac=jac,
                            t_eval=times[inside], rtol=solver.rtol, atol=atol, dense_output=bool(cuts))
            if not sol.success:
                raise RuntimeError(f"{self.name} reference integration failed on [{start:g}, {end:g}]: {sol.message}")
            out[inside] = sol.y.T
            if cuts:
                y = sol.sol(end)
            start = end
        return out


def _source_digest(cls: type) -> str:
    """SHA-256 of the source file defining `cls` ("" when it cannot be read), so that editing a
    system's equations invalidates its cached references."""
    try:
        return hashlib.sha256(inspect.getsource(inspect.getmodule(cls)).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return ""

