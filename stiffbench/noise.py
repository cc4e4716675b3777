"""Observation noise models: Ornstein–Uhlenbeck (the PI-NODE-SR paper's eq. 9, technical notes §6),
additive Gaussian, relative and log-normal (for concentrations, which must stay positive).

Every model is "deterministic" in the paper's sense: one fixed realisation per seed, so every
training run of every method sees the same noisy observations. A model maps the clean observed
samples (N, k) at the observation times (N,) to the noisy ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.signal import lfilter

from .times import uniform_spacing


class NoiseModel(ABC):
    """Turns clean observations into noisy ones, reproducibly."""

    @abstractmethod
    def apply(self, t: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """Noisy observations of the clean samples `clean` (N, k) taken at times t (N,)."""

    @abstractmethod
    def describe(self) -> str:
        """A short description, e.g. "relative, 1 %"."""


@dataclass(frozen=True)
class NoNoise(NoiseModel):
    """Clean observations."""

    def apply(self, t, clean):
        return np.array(clean, dtype=np.float64)

    def describe(self) -> str:
        return "none"


@dataclass(frozen=True)
class OUNoise(NoiseModel):
    """Additive OU noise per channel (`ou_noise`), stepped at the observations' uniform spacing (or
    at `dt` when given, the exact sampling step). Its scale is either `sigma` per observed state,
    or `std_fraction`: per state the sigma whose stationary std is that fraction of the state's
    clean std (ddof=0) over the training window."""

    theta: float
    seed: int
    sigma: tuple[float, ...] | None = None
    std_fraction: float | None = None
    dt: float | None = None

    def __post_init__(self):
        if (self.sigma is None) == (self.std_fraction is None):
            raise ValueError("OUNoise needs exactly one of sigma and std_fraction")

    def apply(self, t, clean):
        dt = uniform_spacing(t) if self.dt is None else self.dt
        sigma = self.sigma if self.sigma is not None else ou_sigma_for_std(self.std_fraction * clean.std(axis=0), self.theta)
        return clean + ou_noise(len(t), dt, self.theta, sigma, self.seed)

    def describe(self) -> str:
        if self.sigma is None:
            return f"OU, theta {self.theta:g}, stationary std {100 * self.std_fraction:g} % of each state's std"
        return f"OU, theta {self.theta:g}, sigma ({', '.join(f'{s:g}' for s in self.sigma)})"


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise whose std is `level` x the std (ddof=0) of each clean observed
    state over the training window: the same relative noise on states of any scale."""

    level: float
    seed: int

    def apply(self, t, clean):
        normals = np.random.default_rng(self.seed).standard_normal(clean.shape)
        return clean + self.level * clean.std(axis=0) * normals

    def describe(self) -> str:
        return f"Gaussian, std {100 * self.level:g} % of each state's std"


@dataclass(frozen=True)
class RelativeNoise(NoiseModel):
    """Multiplicative noise y (1 + level N(0, 1)): each sample's error scales with its value, so a
    species at 1e-5 keeps its decades (a zero stays zero)."""

    level: float
    seed: int

    def apply(self, t, clean):
        return clean * (1 + self.level * np.random.default_rng(self.seed).standard_normal(clean.shape))

    def describe(self) -> str:
        return f"relative, {100 * self.level:g} %"


@dataclass(frozen=True)
class LogNormalNoise(NoiseModel):
    """Log-normal noise y exp(level N(0, 1)): positive values stay positive."""

    level: float
    seed: int

    def apply(self, t, clean):
        return clean * np.exp(self.level * np.random.default_rng(self.seed).standard_normal(clean.shape))

    def describe(self) -> str:
        return f"log-normal, sigma {self.level:g}"


def ou_noise(n_samples: int, dt: float, theta: float, sigma: ArrayLike, seed: int) -> np.ndarray:
    """An OU noise realisation of shape (n_samples, len(sigma)), one independent channel per sigma.

    Euler–Maruyama at the sampling step, exactly the paper's eq. 9:

        xi_0 = 0,   xi_{k+1} = xi_k - theta * xi_k * dt + sigma * sqrt(dt) * N_k,

    i.e. an AR(1) process with coefficient (1 - theta*dt) (0.95 for theta=5, dt=0.01) and, for
    small theta*dt, stationary std sigma / sqrt(2*theta) in the channel's units. The standard
    normals N_k come from `numpy.random.default_rng(seed).standard_normal((n_samples-1, n_channels))`,
    so a seed fixes the realisation. Needs 0 < theta*dt < 2 for the recursion to be stable.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim != 1 or np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
        raise ValueError(f"sigma must be a 1-d array of finite values >= 0, got {sigma!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if not (dt > 0 and 0 < theta * dt < 2):
        raise ValueError(f"need dt > 0 and 0 < theta*dt < 2, got dt={dt}, theta={theta}")
    normals = np.random.default_rng(seed).standard_normal((n_samples - 1, sigma.size))
    increments = sigma * np.sqrt(dt) * normals
    xi = np.zeros((n_samples, sigma.size))
    # lfilter runs the recursion y_k = (1 - theta*dt) * y_{k-1} + increment_k with y_{-1} = 0.
    xi[1:] = lfilter([1.0], [1.0, -(1.0 - theta * dt)], increments, axis=0)
    return xi


def ou_sigma_for_std(std: ArrayLike, theta: float) -> np.ndarray:
    """The sigma whose OU process has stationary std `std`: sigma = std * sqrt(2*theta)."""
    return np.asarray(std, dtype=np.float64) * np.sqrt(2.0 * theta)
