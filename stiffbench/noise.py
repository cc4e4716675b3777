"""Ornstein–Uhlenbeck observation noise, as in the PI-NODE-SR paper's eq. 9 (technical notes §6).

The noise is "deterministic" in the paper's sense: one fixed realisation per seed, so every
training run of every method sees the same noisy observations.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.signal import lfilter


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
