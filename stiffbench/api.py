"""Plugin interfaces: what a system, a method and a metric provide, and the data they exchange.

The runner is the only place that knows all three kinds. Capabilities are types, not attribute
probes: a system that can give its vector field to a method subclasses `KnownPhysics`; a system
whose trajectories spike subclasses `Spiking`. A method or metric names the capabilities it
needs in `requires`; the runner reports `n/a` for a pairing that lacks one. A system decides per
instance which capabilities it offers (`AbstractSystem.has_capability`): a system observed
through one state only is not `FullyObserved`.

An ODE system is best written on the protocol layer (`ODESystem`, re-exported here): it states
its right-hand side, states and protocol, and the core does the rest.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Hashable, Sequence

import numpy as np

from .params import NoParams, PluginParams, key_params, param, trajectory_params  # noqa: F401  (public API)


class AbstractPlugin(ABC):
    """Common shape of all plugins: a name, a one-line description and a parameter model."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[PluginParams]] = NoParams

    def __init__(self, params: PluginParams | dict | None = None):
        if params is None:
            params = {}
        if isinstance(params, dict):
            params = self.Params(**params)
        if not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} expects {self.Params.__name__}, got {type(params).__name__}")
        self.params = params


# ----------------------------------------------------------------------------------------------
# Data exchanged between plugins
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """An evaluation window [t0, t1] (inclusive, in the system's time unit)."""

    name: str
    t0: float
    t1: float


@dataclass(frozen=True)
class State:
    """One state variable: its name, its unit ("" for dimensionless) and its physical bounds.

    bounds : (lower, upper), either None for no bound on that side; e.g. (0, 1) for a gating
             fraction, (0, None) for a concentration; None: no bounds at all.
    """

    name: str
    unit: str = ""
    bounds: tuple[float | None, float | None] | None = None

    def __post_init__(self):
        if self.bounds is not None:
            lo, hi = self.bounds
            if lo is None and hi is None:
                object.__setattr__(self, "bounds", None)
            elif lo is not None and hi is not None and not lo < hi:
                raise ValueError(f"state {self.name}: bounds need lower < upper, got {self.bounds}")


@dataclass(frozen=True)
class SpikeSettings:
    """How spikes are read from a spiking system, in the system's own units.

    state     : the voltage-like state whose excursions are spikes
    threshold : a spike is the peak of an excursion strictly above this value
    merge     : peaks closer in time than this are one spike (the taller kept)
    tolerance : a predicted and a true spike match when at most this far apart in time
    """

    state: str
    threshold: float
    merge: float
    tolerance: float


@dataclass(frozen=True)
class Trajectory:
    """Samples y[k] = z(t[k]) of a trajectory; y has shape (len(t), len(state_names))."""

    t: np.ndarray
    y: np.ndarray
    state_names: tuple[str, ...]

    def __post_init__(self):
        if self.y.ndim != 2 or self.y.shape != (len(self.t), len(self.state_names)):
            raise ValueError(
                f"trajectory shape {self.y.shape} does not match {len(self.t)} times x {len(self.state_names)} states"
            )

    def window(self, t0: float, t1: float) -> "Trajectory":
        """The samples with t0 <= t <= t1, each end with a relative tolerance of 1e-9 for grid
        round-off (relative to that end, so that a window starting at 1e-5 on a log grid does not
        take in t = 0)."""
        mask = (self.t >= t0 - 1e-9 * abs(t0)) & (self.t <= t1 + 1e-9 * abs(t1))
        return Trajectory(self.t[mask], self.y[mask], self.state_names)

    def state(self, name: str) -> np.ndarray:
        return self.y[:, self.state_names.index(name)]


# A vector field f(t, z) -> dz/dt on torch tensors; z has shape (..., n_states), t is a scalar or
# broadcasts against z[..., 0]. Differentiable with respect to z.
VectorField = Callable[["object", "object"], "object"]


@dataclass(frozen=True)
class TrainingTask:
    """Everything a method may use to learn: it never sees the clean reference.

    observations : noisy samples on the training window, at the observation times (any
                   increasing times), of the observed states (`observations.state_names`,
                   possibly a subset of `state_names`)
    y0           : the full initial state at `initial_time` (the state the forecast starts from)
    forecast_t   : the times at which the model must forecast: any increasing times, from
                   `initial_time` to the horizon (the system's evaluation grid)
    dt           : the observations' sampling step when they are uniformly spaced, else None
                   (kept for plugins written against uniform grids; use observations.t)
    physics      : the system's vector field on torch tensors, given only to methods that require
                   `KnownPhysics` (None otherwise)
    physics_model: the vector field as a function of the system's physical parameters
                   (`PhysicsModel`), given only to methods that require `ParametrisedPhysics`
    t0           : the initial time of y0 and of the forecast (None: observations.t[0])
    state_names  : every state of the system, in y0's order (None: the observed ones)
    time_unit    : the unit of all times ("" for dimensionless)
    """

    system: str
    observations: Trajectory
    y0: np.ndarray
    forecast_t: np.ndarray
    dt: float | None = None
    physics: VectorField | None = None
    t0: float | None = None
    state_names: tuple[str, ...] | None = None
    time_unit: str = ""
    physics_model: PhysicsModel | None = None

    @property
    def initial_time(self) -> float:
        return float(self.observations.t[0] if self.t0 is None else self.t0)

    @property
    def all_state_names(self) -> tuple[str, ...]:
        return self.observations.state_names if self.state_names is None else self.state_names

    @property
    def fully_observed(self) -> bool:
        return self.observations.state_names == self.all_state_names


class BudgetExceeded(Exception):
    """Raised by `FitConfig.check` when a cell's wall-clock budget is spent."""


@dataclass
class FitConfig:
    """How much training a method may do, on which device, and where to report progress.

    epochs    : number of optimiser steps over the full training window (the suite's `epochs`)
    device    : torch device string ("cpu", "cuda")
    deadline  : time.monotonic() value after which `check` raises BudgetExceeded (None: no limit)
    progress  : called as progress(epoch, loss) from the training loop, for a progress display
    max_steps : step budget of one adaptive solve (None: unlimited); solvers raise
                stiffbench.solvers.StepLimitExceeded (a BudgetExceeded) past it
    checkpoint: a stiffbench.checkpoint.Checkpointer (None: no checkpoints): a method may save its
                training state through it and resume from it, so that an interrupted batch
                continues where it stopped; methods that ignore it simply start over
    """

    epochs: int
    device: str = "cpu"
    deadline: float | None = None
    progress: Callable[[int, float], None] | None = None
    max_steps: int | None = None
    checkpoint: Any = None

    def check(self, epoch: int, loss: float) -> None:
        """Report progress and enforce the budget; call after each epoch with the number of
        epochs completed so far (1-based) and the current loss."""
        if self.progress is not None:
            self.progress(epoch, loss)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"wall-clock budget spent after {epoch} of {self.epochs} epochs")


# ----------------------------------------------------------------------------------------------
# Capabilities
# ----------------------------------------------------------------------------------------------

class KnownPhysics(ABC):
    """A system that exposes its vector field as differentiable torch code."""

    @abstractmethod
    def torch_vector_field(self) -> VectorField:
        """f(t, z) -> dz/dt on torch tensors (any float dtype/device, batched over leading dims)."""


@dataclass(frozen=True)
class PhysicsModel:
    """A system's vector field as a function of its named physical parameters, for methods that
    identify them from data (the model form known, the values not).

    ranges     : each fittable parameter's plausible range (lower, upper), in the system's units:
                 a prior box for a fit's starting points, not a constraint; a range with
                 0 < lower and upper >= 10 lower is meant on a log scale
    field_with : field_with(values) -> f(t, z), the vector field on torch tensors with the given
                 parameter values (tensors broadcasting against z[..., 0], e.g. (B, 1) for states
                 z of shape (B, 1, n)) and every other parameter as the system has it
    """

    ranges: dict[str, tuple[float, float]]
    field_with: Callable[[dict[str, Any]], VectorField]


class ParametrisedPhysics(ABC):
    """A system that exposes its vector field as a function of named physical parameters
    (`PhysicsModel`); methods requiring it get it as `task.physics_model`."""

    @abstractmethod
    def physics_model(self) -> PhysicsModel:
        """The vector field as a function of the fittable parameters, with their ranges."""


class Bounded(ABC):
    """A system whose states have physical bounds, e.g. HH gating variables in [0, 1]."""

    state_bounds: ClassVar[dict[str, tuple[float, float]]]

    def bound_violation(self, traj: Trajectory) -> dict[str, float]:
        """Per bounded state, the largest distance of any sample outside its bounds (0 if inside)."""
        out = {}
        for name, (lo, hi) in self.state_bounds.items():
            x = traj.state(name)
            out[name] = float(max(0.0, np.max(lo - x), np.max(x - hi))) if len(x) else 0.0
        return out


class Spiking(ABC):
    """A system whose trajectories spike; spike metrics apply to its `voltage_state`.

    The spike settings are the system's, in its own units: override `spike_settings`, or set the
    class attributes below (their defaults are Hodgkin-Huxley's, in mV and ms).
    """

    voltage_state: ClassVar[str]
    spike_threshold: ClassVar[float] = 0.0
    spike_merge: ClassVar[float] = 2.0
    spike_tolerance: ClassVar[float] = 2.0

    def spike_settings(self) -> SpikeSettings:
        return SpikeSettings(self.voltage_state, self.spike_threshold, self.spike_merge, self.spike_tolerance)


class FullyObserved(ABC):
    """A system whose training observations hold every state. No class needs to subclass it:
    `AbstractSystem.has_capability` grants it to any system whose `observed_states()` are all
    its states (the default)."""


class Oscillating(ABC):
    """A system whose trajectories settle on a limit cycle; oscillator metrics (period, amplitude)
    read its `oscillation_state`, whose upward crossings of its mean mark the cycles."""

    oscillation_state: ClassVar[str]


# ----------------------------------------------------------------------------------------------
# Plugin kinds
# ----------------------------------------------------------------------------------------------

class AbstractSystem(AbstractPlugin):
    """A dynamical system with its reference solution and its benchmark protocol."""

    state_names: ClassVar[tuple[str, ...]]

    @abstractmethod
    def reference(self, t_end: float, cache_dir: str | os.PathLike | None = None) -> Trajectory:
        """The clean reference trajectory on the system's sampling grid from t=0 to t_end."""

    @abstractmethod
    def training_task(self, cache_dir: str | os.PathLike | None = None) -> TrainingTask:
        """Noisy training observations, the initial state and the forecast grid (physics unset)."""

    @abstractmethod
    def evaluation_windows(self) -> list[Window]:
        """The windows on which forecasts are scored against the clean reference."""

    @property
    def horizon(self) -> float:
        """The last time any evaluation window needs."""
        return max(w.t1 for w in self.evaluation_windows())

    time_unit: ClassVar[str] = ""

    def state_units(self) -> dict[str, str]:
        """Unit of each state with one ("" or absent: dimensionless or unknown)."""
        return {}

    def observed_states(self) -> tuple[str, ...]:
        """The states the training observations hold (default: all)."""
        return self.state_names

    def has_capability(self, capability: type) -> bool:
        """Whether this instance offers `capability`: `FullyObserved` when it observes every state,
        any other capability when the class subclasses it."""
        if capability is FullyObserved:
            return set(self.observed_states()) == set(self.state_names)
        return isinstance(self, capability)

    def lacks(self, capability: type) -> str | None:
        """Why this instance does not offer `capability` (None when it does), for a status reason."""
        if self.has_capability(capability):
            return None
        if capability is FullyObserved:
            return f"{capability.__name__} (it observes {', '.join(self.observed_states())} only)"
        return capability.__name__


class AbstractModel(ABC):
    """A trained model (for one or several seeds) that forecasts from the task's initial state.

    Optional attributes, stored as each cell's training curve (`stiffbench.curves`) and drawn by
    `stiffbench plot`: `loss_history`, an array (epochs run, n_models) of the training loss per
    epoch, and `loss_terms`, {term name: array (epochs run, n_models)} of the loss's parts.
    """

    @abstractmethod
    def forecast(self, t: np.ndarray) -> np.ndarray:
        """Forecast on grid t; returns shape (n_seeds, len(t), n_states), NaN/Inf where it diverged."""


@dataclass(frozen=True)
class BatchMember:
    """One model of a batched fit across variants: its method parameters, its task, its seed."""

    params: PluginParams
    task: TrainingTask
    seed: int


class AbstractMethod(AbstractPlugin):
    """A learning method. `fit` trains one model per seed.

    batches_seeds : if True the runner passes all seeds of a cell group in one `fit` call so the
                    method can train them as one vectorised model; otherwise one seed per call.
    requires      : capabilities the system must have (e.g. KnownPhysics for physics-informed methods).

    A method may also train several *variants* as one batch: variants whose `batch_key()` values
    are equal and not None are passed together to the classmethod `fit_batch` (e.g. the same
    architecture and solver with different loss weights, noise presets or normalisation). Each
    member's result must equal what `fit` gives for that variant and seed alone.
    """

    batches_seeds: ClassVar[bool] = False
    requires: ClassVar[tuple[type, ...]] = ()

    @abstractmethod
    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> AbstractModel:
        """Train one model per seed; the same seed must give the same model."""

    def batch_key(self) -> Hashable | None:
        """Variants with equal non-None keys may share one `fit_batch` call (default: never)."""
        return None

    @classmethod
    def fit_batch(cls, members: Sequence[BatchMember], config: FitConfig) -> AbstractModel:
        """Train one model per member (all with equal `batch_key` and forecast grids); the model's
        forecast has shape (len(members), len(t), n_states) in member order."""
        raise NotImplementedError(f"{cls.__name__} does not batch across variants")


class AbstractMetric(AbstractPlugin):
    """Scores a forecast against the reference on one window.

    keys        : the result keys this metric produces (e.g. rmse_V); values are floats or None
                  where the metric is undefined (no spikes, too few spikes). Keys carry no unit:
                  `key_units` gives it per system, and leaderboards show it.
    requires    : capabilities the system must have; otherwise the keys are not reported.
    rank        : column position in leaderboards (lower first; ties by name).
    former_keys : {old key: current key} for keys this metric used to produce under another name,
                  so that stores holding the old keys still render.
    """

    keys: ClassVar[tuple[str, ...]]
    requires: ClassVar[tuple[type, ...]] = ()
    rank: ClassVar[int] = 100
    former_keys: ClassVar[dict[str, str]] = {}

    def result_keys(self, system: AbstractSystem) -> tuple[str, ...]:
        """The keys for this system (default: the static `keys`); empty: the metric does not
        apply to this system instance, and is absent from its results."""
        return self.keys

    def key_units(self, system: AbstractSystem) -> dict[str, str]:
        """The unit of each key for this system, in the system's own units (default: none)."""
        return {}

    @abstractmethod
    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        """pred and true are already restricted to the window and share their time grid."""


def missing_capabilities(plugin: type | object, system: AbstractSystem) -> list[str]:
    """The capabilities `plugin.requires` that `system` lacks, each named with the reason."""
    reasons = []
    for cap in getattr(plugin, "requires", ()):
        if isinstance(system, AbstractSystem):
            reason = system.lacks(cap)
        else:
            reason = None if isinstance(system, cap) else cap.__name__
        if reason is not None:
            reasons.append(reason)
    return reasons


# The protocol layer, part of this public API; imported on first use, because its modules build
# on the interfaces above (so any of them may be imported first).
_LAYER = {
    "ode_system": ("ODEParams", "ODESystem", "ReferenceSolver", "windowed_params"),
    "protocol": ("Grid", "LogGrid", "Protocol", "Times", "UniformGrid", "check_windows_after"),
    "noise": ("GaussianNoise", "LogNormalNoise", "NoiseModel", "NoNoise", "OUNoise", "RelativeNoise"),
}


def __getattr__(name: str):
    import importlib

    for module, names in _LAYER.items():
        if name in names:
            return getattr(importlib.import_module(f"stiffbench.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
