"""Conformance checks every plugin must pass (in the spirit of `optuna.testing`).

Plugin authors either call the `check_*` functions from their own tests or subclass the
pytest classes at the bottom and set the plugin class:

    from stiffbench.testing.conformance import MethodConformance
    class TestMyMethod(MethodConformance):
        method_cls = MyMethod

`check_system` computes the system's reference over its whole horizon (cached under `cache_dir`)
and checks what holds for any system, whatever its grids: observation times anywhere in the
training window (uniform or not, from the initial time or after it), any increasing forecast grid
(uniform, log-spaced), partial observation; for an `ODESystem` also its right-hand side (numpy
against torch) and its Jacobian (against finite differences).

Method checks train for a few epochs on two tiny toys, so they take seconds: the `DampedOscillator`
(2 states, uniform grid) and the `ScaledChain` (3 states of scales 1, 1e-3 and 1e3, log-spaced
observations starting after the initial time, a log forecast grid). A toy that lacks a capability
the method requires is skipped; at least one must apply.

`check_metric` scores a trajectory against itself and against a perturbed copy; run it on each
evaluation window of each system the metric may meet.
"""

from __future__ import annotations

import tempfile
import warnings
from typing import ClassVar

import numpy as np
import pytest
from pydantic import ValidationError

from ..api import (
    AbstractMethod,
    AbstractMetric,
    AbstractSystem,
    Bounded,
    FitConfig,
    FullyObserved,
    KnownPhysics,
    SpikeSettings,
    Spiking,
    Trajectory,
    missing_capabilities,
)
from ..execute import task_for
from ..ode_system import ODESystem
from .toy import DampedOscillator
from .toy_chain import ScaledChain

# Relative slack on time comparisons (grid round-off, as Trajectory.window allows).
_TIME_RTOL = 1e-9
# numpy and torch evaluations of one rhs in float64 agree to this, relative to each state's
# largest |rhs| over the points checked (libm and torch differ by an ulp or so in exp, log, pow).
_RHS_RTOL = 1e-9
# The analytic Jacobian agrees with central differences to this, relative to the largest entry
# of the Jacobian in scaled coordinates (each state divided by its scale).
_JAC_RTOL = 1e-5
# Reference states stay inside their bounds to this fraction of the state's scale (plus 10x the
# reference solver's absolute tolerance for that state).
_BOUNDS_RTOL = 1e-6
# Reference states (besides y0) at which rhs and jac are checked.
_N_PROBES = 4


def _check_params(cls) -> None:
    cls.Params()  # defaults must validate
    with pytest.raises(ValidationError):
        cls.Params(definitely_not_a_parameter=1)  # unknown keys are errors
    assert isinstance(cls.description, str) and cls.description.strip(), "description must be a non-empty string"


# ----------------------------------------------------------------------------------------------
# Systems
# ----------------------------------------------------------------------------------------------

def check_system(cls: type[AbstractSystem], cache_dir=None) -> None:
    """Defaults validate; the task, grids, windows, reference and capabilities are consistent; an
    `ODESystem`'s rhs agrees between numpy and torch and its Jacobian with finite differences."""
    _check_params(cls)
    system = cls()
    names = system.state_names
    assert isinstance(names, tuple) and len(names) > 0 and len(set(names)) == len(names), \
        f"state_names must be a non-empty tuple of distinct names, got {names!r}"
    assert isinstance(system.time_unit, str), "time_unit must be a string"
    units = system.state_units()
    assert set(units) <= set(names) and all(isinstance(u, str) for u in units.values()), \
        f"state_units must map state names to strings, got {units!r}"

    task = system.training_task(cache_dir)
    t0, horizon = task.initial_time, system.horizon
    tol = _TIME_RTOL * max(1.0, abs(t0), abs(horizon))
    _check_windows(system, t0)
    _check_task_states(system, task)
    _check_observation_times(task, t0, horizon, tol)
    _check_forecast_times(system, task, t0, horizon, tol)

    ref = system.reference(system.horizon, cache_dir)
    assert ref.state_names == names, f"reference states {ref.state_names} differ from the system's {names}"
    assert np.isfinite(ref.y).all(), "the reference holds NaN or Inf"
    assert len(ref.t) == len(task.forecast_t) and np.allclose(ref.t, task.forecast_t, rtol=0, atol=tol), \
        "the reference must be sampled exactly on the forecast grid"
    assert np.allclose(ref.y[0], task.y0, rtol=1e-12, atol=0), "the reference must start at the task's initial state"
    _check_bounds(system, ref)

    assert system.has_capability(FullyObserved) == task.fully_observed, (
        f"has_capability(FullyObserved) is {system.has_capability(FullyObserved)} but the task observes "
        f"{task.observations.state_names} of {names}"
    )
    if isinstance(system, KnownPhysics):
        import torch

        z = torch.as_tensor(np.stack([task.y0, task.y0]), dtype=torch.float64)
        dz = system.torch_vector_field()(torch.tensor(t0, dtype=torch.float64), z)
        assert dz.shape == z.shape and torch.isfinite(dz).all(), "the torch vector field must be finite at y0"
    if isinstance(system, ODESystem):
        probes = _probe_states(task, ref)
        _check_rhs(system, probes, ref)
        _check_jacobian(system, probes, ref)
    if isinstance(system, Spiking):
        assert system.voltage_state in names, f"voltage_state {system.voltage_state!r} is not a state"
        settings = system.spike_settings()
        assert isinstance(settings, SpikeSettings) and settings.state in names
        assert np.isfinite(settings.threshold) and settings.merge >= 0 and settings.tolerance > 0, \
            f"spike settings need a finite threshold, merge >= 0 and tolerance > 0, got {settings}"


def _check_windows(system: AbstractSystem, t0: float) -> None:
    windows = system.evaluation_windows()
    assert windows, "a system needs at least one evaluation window"
    assert len({w.name for w in windows}) == len(windows), "evaluation window names must be distinct"
    for w in windows:
        assert isinstance(w.name, str) and w.name, "evaluation windows need a name"
        assert w.t0 < w.t1, f"window {w.name} [{w.t0}, {w.t1}] must be increasing"
        assert w.t0 >= t0 - _TIME_RTOL * max(1.0, abs(t0)), f"window {w.name} starts before the initial time {t0}"


def _check_task_states(system: AbstractSystem, task) -> None:
    names = system.state_names
    obs = task.observations
    assert task.all_state_names == names, f"the task's states {task.all_state_names} differ from the system's {names}"
    observed = obs.state_names
    assert len(observed) > 0 and len(set(observed)) == len(observed) and set(observed) <= set(names), \
        f"observed states {observed} must be distinct states of {names}"
    assert list(observed) == [n for n in names if n in observed], \
        f"observed states {observed} must be in the system's order {names}"
    assert tuple(system.observed_states()) == observed, \
        f"observed_states() {system.observed_states()} differ from the observations' {observed}"
    assert np.shape(task.y0) == (len(names),), f"y0 has shape {np.shape(task.y0)}, expected ({len(names)},)"
    assert np.isfinite(task.y0).all(), "y0 holds NaN or Inf"
    assert np.isfinite(obs.y).all(), "the observations hold NaN or Inf"
    assert isinstance(task.time_unit, str)


def _check_observation_times(task, t0: float, horizon: float, tol: float) -> None:
    t = np.asarray(task.observations.t, dtype=np.float64)
    assert t.ndim == 1 and len(t) >= 2, "at least two observation times are needed"
    assert np.isfinite(t).all() and np.all(np.diff(t) > 0), "observation times must be strictly increasing"
    assert t[0] >= t0 - tol and t[-1] <= horizon + tol, \
        f"observation times [{t[0]:g}, {t[-1]:g}] must lie in [initial time {t0:g}, horizon {horizon:g}]"
    if task.dt is not None:
        assert task.dt > 0 and np.allclose(np.diff(t), task.dt, rtol=1e-6), \
            "task.dt is set but the observations are not uniformly spaced by it (set dt=None)"


def _check_forecast_times(system: AbstractSystem, task, t0: float, horizon: float, tol: float) -> None:
    t = np.asarray(task.forecast_t, dtype=np.float64)
    assert t.ndim == 1 and len(t) >= 2 and np.isfinite(t).all(), "the forecast grid needs at least two finite times"
    assert np.all(np.diff(t) > 0), "forecast times must be strictly increasing"
    assert t[0] == pytest.approx(t0, rel=0, abs=tol), f"the forecast must start at the initial time {t0}, not {t[0]}"
    assert t[-1] <= horizon + tol, f"the forecast grid runs past the horizon {horizon} (to {t[-1]})"
    # Reaches the horizon: the grid stops only because its next point would lie beyond it (on a
    # uniform or log grid the next interval is at least the last one).
    assert t[-1] + (t[-1] - t[-2]) > horizon - tol, f"the forecast grid stops at {t[-1]}, short of the horizon {horizon}"
    for w in system.evaluation_windows():
        inside = np.count_nonzero((t >= w.t0 - tol) & (t <= w.t1 + tol))
        assert inside >= 2, f"window {w.name} [{w.t0:g}, {w.t1:g}] holds {inside} forecast times; metrics need >= 2"


def _check_bounds(system: AbstractSystem, ref: Trajectory) -> None:
    if not isinstance(system, Bounded):
        return
    atol = _solver_atol(system)
    for name, (lo, hi) in system.state_bounds.items():
        assert name in system.state_names, f"bounds given for {name!r}, which is not a state"
        j = system.state_names.index(name)
        x = ref.y[:, j]
        slack = _BOUNDS_RTOL * _scale(x) + 10 * atol[j]
        assert np.min(x) >= lo - slack and np.max(x) <= hi + slack, (
            f"the reference of {name} spans [{np.min(x):.6g}, {np.max(x):.6g}], outside its bounds [{lo:g}, {hi:g}]"
        )


def _solver_atol(system: AbstractSystem) -> np.ndarray:
    n = len(system.state_names)
    if isinstance(system, ODESystem):
        atol = np.asarray(system.reference_solver().atol, dtype=np.float64)
        return np.broadcast_to(atol, (n,))
    return np.zeros(n)


def _scale(x: np.ndarray) -> float:
    """A state's scale: its largest |value| (1 when it is identically 0)."""
    m = float(np.max(np.abs(x))) if len(x) else 0.0
    return m if m > 0 else 1.0


def _probe_states(task, ref: Trajectory) -> list[tuple[float, np.ndarray]]:
    """(t, y) at y0 and at a few reference states spread over the horizon."""
    idx = np.unique(np.linspace(0, len(ref.t) - 1, _N_PROBES + 1).round().astype(int))[1:]
    return [(task.initial_time, np.asarray(task.y0, dtype=np.float64))] + [(float(ref.t[i]), ref.y[i]) for i in idx]


def _check_rhs(system: ODESystem, probes, ref: Trajectory) -> None:
    """rhs on numpy (one state at a time, as scipy calls it) equals rhs on torch float64 (batched,
    t broadcast against the states, as methods call it) and numpy batched."""
    import torch

    t = np.array([p[0] for p in probes])
    y = np.stack([p[1] for p in probes])
    single = np.stack([np.asarray(system.rhs(ti, yi.copy(), np), dtype=np.float64) for ti, yi in zip(t, y)])
    assert single.shape == y.shape and np.isfinite(single).all(), "rhs(t, y, numpy) must be finite, shaped like y"
    batched = np.asarray(system.rhs(t, y.copy(), np), dtype=np.float64)
    out = system.rhs(torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64), torch)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64, "rhs(t, y, torch) must return a float64 tensor"
    on_torch = out.numpy()
    scale = np.max(np.abs(single), axis=0)
    for label, other in (("numpy batched", batched), ("torch float64", on_torch)):
        assert other.shape == single.shape, f"rhs ({label}) has shape {other.shape}, expected {single.shape}"
        bad = np.abs(other - single) > _RHS_RTOL * (np.abs(single) + scale)
        assert not bad.any(), (
            f"rhs ({label}) differs from rhs on numpy one state at a time at t={t[bad.any(1)][0]:g}: "
            f"{other[bad.any(1)][0]} vs {single[bad.any(1)][0]}"
        )


def _check_jacobian(system: ODESystem, probes, ref: Trajectory) -> None:
    """jac (when given) against central differences of rhs, in scaled coordinates (each state
    divided by its scale over the reference), so that states of any scale weigh alike."""
    scales = np.array([_scale(ref.y[:, j]) for j in range(ref.y.shape[1])])
    n = len(scales)
    for t, y in probes:
        J = system.jac(t, y.copy())
        if J is None:
            return
        J = np.asarray(J, dtype=np.float64)
        assert J.shape == (n, n), f"jac has shape {J.shape}, expected ({n}, {n})"
        assert np.isfinite(J).all(), f"jac is not finite at t={t:g}"
        fd = np.empty((n, n))
        for j in range(n):
            h = 6e-6 * max(abs(y[j]), scales[j])
            up, down = y.copy(), y.copy()
            up[j] += h
            down[j] -= h
            fd[:, j] = (np.asarray(system.rhs(t, up, np)) - np.asarray(system.rhs(t, down, np))) / (up[j] - down[j])
        to_scaled = scales[None, :] / scales[:, None]  # d(y_i / s_i) / d(y_j / s_j) = J_ij s_j / s_i
        scaled, scaled_fd = J * to_scaled, fd * to_scaled
        err = np.abs(scaled - scaled_fd)
        limit = _JAC_RTOL * max(np.max(np.abs(scaled_fd)), np.finfo(float).tiny)
        if err.max() > limit:
            i, j = np.unravel_index(np.argmax(err), err.shape)
            raise AssertionError(
                f"jac disagrees with finite differences of rhs at t={t:g}: d rhs[{system.state_names[i]}] / "
                f"d {system.state_names[j]} is {J[i, j]:.8g}, finite differences give {fd[i, j]:.8g}"
            )


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------

def toy_systems() -> list[AbstractSystem]:
    """The systems `check_method` trains on."""
    return [DampedOscillator(), ScaledChain()]


def check_method(
    cls: type[AbstractMethod], params: dict | None = None, epochs: int = 3, cache_dir=None, strict: bool = False
) -> None:
    """On each toy system whose capabilities the method's `requires` finds: forecast shape and
    finiteness; the same seed gives the same forecast; a seed trained in a batch of seeds equals
    it trained alone (for methods that batch). `cache_dir`: where the toys' references are
    cached (None: a temporary folder).

    The 2-state oscillator on a uniform grid is checked as it always was. The checks on the other
    toys (3 states with scales spanning decades, log-spaced observations after the initial time)
    fail only with `strict=True`; otherwise a method that fails them gets a FutureWarning saying
    what failed, so that plugins written for uniform grids keep passing while they adapt (the
    checks will become strict in a later release)."""
    _check_params(cls)
    cls(params or {})  # the parameters validate
    toys = [system for system in toy_systems() if not missing_capabilities(cls, system)]
    assert toys, (f"{cls.__name__} requires {', '.join(c.__name__ for c in cls.requires)}: no toy system "
                  f"({', '.join(type(s).__name__ for s in toy_systems())}) offers all of them")
    with tempfile.TemporaryDirectory(prefix="stiffbench-conformance-") as tmp:
        for system in toys:
            try:
                _check_method_on(cls, params or {}, epochs, system, tmp if cache_dir is None else cache_dir)
            except Exception as exc:
                if strict or isinstance(system, DampedOscillator):
                    raise
                warnings.warn(f"{cls.__name__} fails the conformance checks on {type(system).__name__} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); these "
                              "checks become strict in a later release: check_method(..., strict=True)",
                              FutureWarning, stacklevel=2)


def _check_method_on(cls, params: dict, epochs: int, system: AbstractSystem, cache_dir) -> None:
    where = f"{cls.__name__} on the toy {type(system).__name__}"
    task = task_for(system, cls, cache_dir)  # with the physics the method requires, as the runner gives it
    seeds = [3, 5] if cls.batches_seeds else [3]
    shape = (len(seeds), len(task.forecast_t), len(system.state_names))
    forecast = np.asarray(cls(params).fit(task, seeds, FitConfig(epochs=epochs)).forecast(task.forecast_t))
    assert forecast.shape == shape, f"{where}: forecast has shape {forecast.shape}, expected {shape}"
    assert np.isfinite(forecast).all(), f"{where}: a few epochs must not diverge (the forecast holds NaN/Inf)"
    again = np.asarray(cls(params).fit(task, seeds[-1:], FitConfig(epochs=epochs)).forecast(task.forecast_t))
    assert again.shape == (1, *shape[1:]), f"{where}: forecast has shape {again.shape}, expected {(1, *shape[1:])}"
    # Per state, an absolute tolerance at the state's own scale (states may span decades).
    scale = np.array([_scale(task.observations.y[:, j]) for j in range(task.observations.y.shape[1])])
    if not task.fully_observed:
        scale = np.full(len(system.state_names), float(np.max(scale)))
    bad = np.abs(again[0] - forecast[-1]) > 1e-4 * np.abs(forecast[-1]) + 1e-6 * scale
    assert not bad.any(), (f"{where}: seed {seeds[-1]} trained {'in a batch of seeds and ' if len(seeds) > 1 else ''}"
                           f"again gives another forecast (largest difference "
                           f"{np.max(np.abs(again[0] - forecast[-1])):.3g})")


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def check_metric(cls: type[AbstractMetric], system: AbstractSystem, trajectory: Trajectory) -> None:
    """Returns exactly its keys as floats or None; deterministic; key units are strings for keys
    it returns. A metric whose `requires` the system lacks, or that has no `result_keys` for it,
    is skipped (after checking that it then computes nothing)."""
    _check_params(cls)
    metric = cls()
    if missing_capabilities(metric, system):
        return
    keys = metric.result_keys(system)
    if not keys:  # does not apply to this instance (e.g. log_error on a system with a signed state)
        assert metric.compute(trajectory, trajectory, system) == {}, f"{cls.name}: no result_keys, yet compute returned values"
        return
    assert len(set(keys)) == len(keys), f"{cls.name}: result_keys must be distinct, got {keys}"
    units = metric.key_units(system)
    assert isinstance(units, dict) and set(units) <= set(keys), \
        f"{cls.name}: key_units names keys it does not return: {sorted(set(units) - set(keys))}"
    assert all(isinstance(u, str) for u in units.values()), f"{cls.name}: key_units values must be strings, got {units}"
    noisy = Trajectory(trajectory.t, trajectory.y * 1.01 + 0.1, trajectory.state_names)
    for pred in (trajectory, noisy):
        values = metric.compute(pred, trajectory, system)
        assert set(values) == set(keys), f"{cls.name} returned {sorted(values)}, declared {sorted(keys)}"
        assert all(v is None or type(v) is float for v in values.values()), \
            f"{cls.name}: values must be float or None, got {values}"
        assert values == metric.compute(pred, trajectory, system), f"{cls.name}: the same inputs gave other values"


# ----------------------------------------------------------------------------------------------
# pytest classes
# ----------------------------------------------------------------------------------------------

class SystemConformance:
    """Subclass and set `system_cls` to run the system checks under pytest."""

    system_cls: ClassVar[type[AbstractSystem]]

    def test_system_conformance(self, tmp_path):
        check_system(self.system_cls, cache_dir=tmp_path)


class MethodConformance:
    """Subclass and set `method_cls` (and optionally `params`) to run the method checks."""

    method_cls: ClassVar[type[AbstractMethod]]
    params: ClassVar[dict] = {}
    strict: ClassVar[bool] = False  # see check_method

    def test_method_conformance(self):
        check_method(self.method_cls, self.params, strict=self.strict)
