"""A system's benchmark protocol: its time grids, training window, observations and evaluation windows.

Three kinds of time are kept apart:

- the **grid**: where the reference is sampled, where methods forecast and where windows are
  scored (`UniformGrid` for most systems, `LogGrid` for kinetics spanning decades of time);
- the **observation times**: where the training data are sampled (any increasing times inside
  the training window; by default the grid's points there);
- the **solver step**: a method's own business (a method parameter), never the system's.

A grid is an infinite, reproducible set of points (k * step, or first * 10^(k / per_decade)), so
any horizon cuts it the same way and `stiffbench simulate --t-end T` samples the system's own grid.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .api import Window
from .noise import NoiseModel, NoNoise
from .times import is_uniform, uniform_spacing

# Relative slack when deciding whether a grid point lies on an interval's end (round-off of k * step).
_EDGE = 1e-9


class Grid(ABC):
    """An increasing set of times."""

    @abstractmethod
    def times(self, t0: float, t1: float) -> np.ndarray:
        """The grid's times in [t0, t1] (each end included up to 1e-9 relative to it), increasing."""

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable description (for `stiffbench list --verbose` and docs)."""


@dataclass(frozen=True)
class UniformGrid(Grid):
    """t_k = k * step for integers k (times formed by one multiplication, no accumulated round-off)."""

    step: float

    def __post_init__(self):
        if not (self.step > 0 and math.isfinite(self.step)):
            raise ValueError(f"a uniform grid needs a finite step > 0, got {self.step}")

    def times(self, t0: float, t1: float) -> np.ndarray:
        k0 = math.ceil(t0 / self.step - _EDGE * max(1.0, abs(t0) / self.step))
        k1 = math.floor(t1 / self.step + _EDGE * max(1.0, abs(t1) / self.step))
        return np.arange(k0, k1 + 1) * self.step

    def describe(self) -> str:
        return f"uniform, step {self.step:g}"


@dataclass(frozen=True)
class LogGrid(Grid):
    """t = 0 and t_k = first * 10^(k / per_decade) for integers k >= 0: log-spaced from `first` on,
    for dynamics spanning decades of time (chemical kinetics)."""

    first: float
    per_decade: int

    def __post_init__(self):
        if not (self.first > 0 and math.isfinite(self.first)) or self.per_decade < 1:
            raise ValueError(f"a log grid needs first > 0 and per_decade >= 1, got {self.first}, {self.per_decade}")

    def times(self, t0: float, t1: float) -> np.ndarray:
        if t1 < self.first:
            return np.zeros(1) if t0 <= 0 <= t1 else np.empty(0)
        k_end = math.floor(self.per_decade * math.log10(t1 / self.first) + _EDGE * self.per_decade)
        k = np.arange(k_end + 1)
        t = self.first * 10.0 ** (k / self.per_decade)
        t = t[t >= t0 * (1 - _EDGE)] if t0 > 0 else t
        return np.concatenate([[0.0], t]) if t0 <= 0 <= t1 else t

    def describe(self) -> str:
        return f"log-spaced, {self.per_decade} per decade from {self.first:g} (and 0)"


@dataclass(frozen=True)
class Times(Grid):
    """Explicit increasing times, e.g. `Times.log(1e-5, 1e5, 50)` for 50 log-spaced samples."""

    values: tuple[float, ...]

    def __post_init__(self):
        t = np.asarray(self.values, dtype=float)
        if t.ndim != 1 or len(t) == 0 or not np.isfinite(t).all() or np.any(np.diff(t) <= 0):
            raise ValueError("explicit times must be finite and strictly increasing")

    @classmethod
    def log(cls, first: float, last: float, n: int) -> "Times":
        """n times log-spaced from first to last, both included (numpy.logspace)."""
        return cls(tuple(np.logspace(math.log10(first), math.log10(last), n).tolist()))

    @classmethod
    def uniform(cls, first: float, last: float, n: int) -> "Times":
        """n equally spaced times from first to last, both included (numpy.linspace)."""
        return cls(tuple(np.linspace(first, last, n).tolist()))

    def times(self, t0: float, t1: float) -> np.ndarray:
        t = np.asarray(self.values, dtype=float)
        return t[(t >= t0 - _EDGE * abs(t0)) & (t <= t1 + _EDGE * abs(t1))]

    def describe(self) -> str:
        return f"{len(self.values)} times from {self.values[0]:g} to {self.values[-1]:g}"


def check_windows_after(train_end: float, windows: dict[str, tuple[float, float]]) -> None:
    """ValueError unless each named window (t0, t1) has train_end <= t0 < t1: for a system's
    parameter validator, so that a bad window is reported as the parameter it came from."""
    for name, (t0, t1) in windows.items():
        if not train_end <= t0 < t1:
            raise ValueError(f"window {name} must satisfy t_train <= t0 < t1, got ({t0:g}, {t1:g})")


@dataclass(frozen=True)
class Protocol:
    """How a system is benchmarked: everything except its physics.

    grid     : reference, forecast and evaluation times
    train    : the training window (t_start, t_end); observations lie in it
    windows  : the evaluation windows (scored on the grid's points inside each)
    observe  : the observation times (the points in `train` of this grid; default: `grid`)
    observed : the observed states (default: all); a subset makes the system not `FullyObserved`
    noise    : the observation noise model
    t0       : the initial time of the initial state and of every forecast
    """

    grid: Grid
    train: tuple[float, float]
    windows: tuple[Window, ...]
    observe: Grid | None = None
    observed: tuple[str, ...] | None = None
    noise: NoiseModel = field(default_factory=NoNoise)
    t0: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "windows", tuple(self.windows))
        if not self.windows or len({w.name for w in self.windows}) != len(self.windows):
            raise ValueError("a protocol needs at least one evaluation window, with distinct names")
        if not self.train[0] < self.train[1] or self.train[0] < self.t0:
            raise ValueError(f"training window {self.train} must be increasing and start at or after t0={self.t0}")
        for w in self.windows:
            if not w.t0 < w.t1 or w.t0 < self.t0:
                raise ValueError(f"window {w.name} [{w.t0}, {w.t1}] must be increasing and start at or after t0")

    @property
    def horizon(self) -> float:
        return max(w.t1 for w in self.windows)

    def observation_times(self) -> np.ndarray:
        times = (self.observe or self.grid).times(*self.train)
        if len(times) < 2:
            raise ValueError(f"the training window {self.train} holds fewer than two observation times")
        return times

    def sampling_step(self) -> float | None:
        """The observations' step when uniformly spaced (the grid's exact step when they are its
        points), else None."""
        if self.observe is None and isinstance(self.grid, UniformGrid):
            return self.grid.step
        times = self.observation_times()
        return uniform_spacing(times) if is_uniform(times) else None

    def forecast_times(self, t_end: float | None = None) -> np.ndarray:
        """The grid from t0 to t_end (default: the horizon), starting exactly at t0."""
        t = self.grid.times(self.t0, self.horizon if t_end is None else t_end)
        return t if len(t) and t[0] == self.t0 else np.concatenate([[self.t0], t])
