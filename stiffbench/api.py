"""Plugin interfaces: what a system, a method and a metric provide, and the data they exchange.

The runner is the only place that knows all three kinds. Capabilities are types, not attribute
probes: a system that can give its vector field to a method subclasses `KnownPhysics`; a system
whose trajectories spike subclasses `Spiking`. A method or metric names the capabilities it
needs in `requires`; the runner reports `n/a` for a pairing that lacks one.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Hashable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


class PluginParams(BaseModel):
    """Base of every plugin's parameter model: validated, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(PluginParams):
    """Parameter model of a plugin that takes none."""


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
        """The samples with t0 <= t <= t1 (a relative tolerance of 1e-9 absorbs grid round-off)."""
        tol = 1e-9 * max(1.0, abs(t0), abs(t1))
        mask = (self.t >= t0 - tol) & (self.t <= t1 + tol)
        return Trajectory(self.t[mask], self.y[mask], self.state_names)

    def state(self, name: str) -> np.ndarray:
        return self.y[:, self.state_names.index(name)]


# A vector field f(t, z) -> dz/dt on torch tensors; z has shape (..., n_states), t is a scalar or
# broadcasts against z[..., 0]. Differentiable with respect to z.
VectorField = Callable[["object", "object"], "object"]


@dataclass(frozen=True)
class TrainingTask:
    """Everything a method may use to learn: it never sees the clean reference.

    observations : noisy samples on the training window
    y0           : initial state at observations.t[0] (the state the forecast starts from)
    forecast_t   : the grid on which the model must forecast, from observations.t[0] to the horizon
    dt           : the system's sampling step
    physics      : the system's vector field on torch tensors, given only to methods that require
                   `KnownPhysics` (None otherwise)
    """

    system: str
    observations: Trajectory
    y0: np.ndarray
    forecast_t: np.ndarray
    dt: float
    physics: VectorField | None = None


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
    """A system whose trajectories spike; spike metrics apply to its `voltage_state`."""

    voltage_state: ClassVar[str]


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


class AbstractModel(ABC):
    """A trained model (for one or several seeds) that forecasts from the task's initial state."""

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

    keys     : the result keys this metric produces (e.g. rmse_V); values are floats or None
               where the metric is undefined (no spikes, too few spikes).
    requires : capabilities the system must have; otherwise the keys are not reported.
    rank     : column position in leaderboards (lower first; ties by name).
    """

    keys: ClassVar[tuple[str, ...]]
    requires: ClassVar[tuple[type, ...]] = ()
    rank: ClassVar[int] = 100

    def result_keys(self, system: AbstractSystem) -> tuple[str, ...]:
        """The keys for this system (default: the static `keys`)."""
        return self.keys

    @abstractmethod
    def compute(self, pred: Trajectory, true: Trajectory, system: AbstractSystem) -> dict[str, float | None]:
        """pred and true are already restricted to the window and share their time grid."""


def missing_capabilities(plugin: type | object, system: AbstractSystem) -> list[str]:
    """Names of the capabilities `plugin.requires` that `system` lacks."""
    return [cap.__name__ for cap in getattr(plugin, "requires", ()) if not isinstance(system, cap)]
