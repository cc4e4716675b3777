"""Kernel smoothing of noisy samples and their time derivative: local polynomial regression.

At each sample time x_i the samples are fitted, by least squares weighted with K((x - x_i) / h),
by a polynomial of `degree` in (x - x_i); its constant term is the smoothed value at x_i and its
linear term the smoothed derivative (Fan & Gijbels 1996, "Local Polynomial Modelling and Its
Applications", ch. 3). A local polynomial of degree p reproduces every polynomial of degree <= p
exactly, value and derivative, on any spacing, near the ends too.

The bandwidth h is a multiple of the samples' median spacing, fixed or chosen per state by
generalised cross-validation (GCV, Craven & Wahba 1979, Numer. Math. 31:377): the candidate
minimising mean((y - y_hat)^2) / (1 - tr(S) / N)^2, S the smoother's hat matrix. GCV assumes
uncorrelated noise; under autocorrelated noise it picks the narrowest candidates.

The smoothing axis x is the time t, or log t for log-spaced samples: there a bandwidth fixed on t
would span thousands of samples late and none early, while on log t it spans the same number of
samples everywhere; the derivative along log t is converted by dz/dt = (dz/d log t) / t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Where each kernel's weights end, in bandwidths: the Epanechnikov kernel vanishes at |u| = 1; the
# Gaussian is cut at 3 standard deviations (a weight below 1.2 % of its peak).
_SUPPORT = {"epanechnikov": 1.0, "gaussian": 3.0}

# GCV's candidate bandwidths, in median spacings: 3 to 48, four per doubling.
GCV_SPACINGS = 3.0 * 2.0 ** (np.arange(17) / 4)


class BandwidthTooSmall(ValueError):
    """Fewer samples carry weight at some point than the local polynomial has coefficients."""


def kernel_weights(u: np.ndarray, kernel: str) -> np.ndarray:
    """K(u): Epanechnikov 3/4 (1 - u^2) on |u| < 1, or the standard normal density cut at |u| = 3."""
    if kernel == "epanechnikov":
        return np.where(np.abs(u) < 1.0, 0.75 * (1.0 - u * u), 0.0)
    return np.where(np.abs(u) <= _SUPPORT["gaussian"], np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi), 0.0)


def spacing_spread(x: np.ndarray) -> float:
    """Largest over smallest spacing of increasing samples (1 on a uniform grid)."""
    gaps = np.diff(x)
    return float(gaps.max() / gaps.min())


@dataclass(frozen=True)
class KernelSmoother:
    """Local polynomial smoothing of samples y(t) and of dy/dt at the sample times.

    bandwidth : the kernel's scale h in median spacings of the samples on the smoothing axis (the
                Epanechnikov kernel's half-width, the Gaussian's standard deviation), or 'gcv':
                per state, the candidate of `GCV_SPACINGS` with the least GCV score (candidates
                too narrow for the degree skipped)
    degree    : degree of the local polynomial; at least degree + 1 samples must carry weight at
                every sample time
    kernel    : 'epanechnikov' or 'gaussian'
    axis      : 'linear' (t), 'log' (log t; every time must be positive), or 'auto': log t when
                every time is positive and the samples are more evenly spaced on log t than on t
                (`spacing_spread`), else t
    """

    bandwidth: float | Literal["gcv"] = "gcv"
    degree: int = 3
    kernel: Literal["epanechnikov", "gaussian"] = "epanechnikov"
    axis: Literal["auto", "linear", "log"] = "auto"

    def axis_for(self, t: np.ndarray) -> str:
        """The smoothing axis used for times t: 'linear' or 'log'."""
        if self.axis != "auto":
            return self.axis
        return "log" if t[0] > 0 and spacing_spread(np.log(t)) < spacing_spread(t) else "linear"

    def __call__(self, t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed values and time derivatives, each shaped like y (len(t), n), at the times t
        (strictly increasing)."""
        t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
        if t.ndim != 1 or len(t) < self.degree + 1 or not np.all(np.diff(t) > 0):
            raise ValueError(f"smoothing needs at least {self.degree + 1} strictly increasing times")
        log_axis = self.axis_for(t) == "log"
        if log_axis and not t[0] > 0:
            raise ValueError(f"smoothing on log time needs positive times; the first is {t[0]:g}")
        x = np.log(t) if log_axis else t
        spacing = float(np.median(np.diff(x)))
        if self.bandwidth == "gcv":
            value, slope = gcv_local_polynomial(x, y, spacing * GCV_SPACINGS, self.degree, self.kernel)
        else:
            value, slope, _ = local_polynomial(x, y, self.bandwidth * spacing, self.degree, self.kernel)
        return value, slope / t[:, None] if log_axis else slope


def local_polynomial(x: np.ndarray, y: np.ndarray, h: float, degree: int, kernel: str) \
        -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The local polynomial fit of y (N, n) at each of the increasing points x (N,): its value and
    its slope dy/dx at x_i, each (N, n), and the leverages S_ii (N,). h: the kernel's scale in x's
    units; BandwidthTooSmall where fewer than degree + 1 samples carry weight.

    The fit at x_i uses the samples within the kernel's support, in the scaled coordinate
    u = (x - x_i) / h (a well-conditioned basis 1, u, ..., u^degree); slope = coefficient of u / h;
    S_ii = K(0) [G^-1]_00, G the weighted Gram matrix of the basis."""
    n_points = len(x)
    lo = np.searchsorted(x, x - _SUPPORT[kernel] * h, side="left")
    hi = np.searchsorted(x, x + _SUPPORT[kernel] * h, side="right")
    index = lo[:, None] + np.arange(int((hi - lo).max()))  # (N, K): each point's neighbours, padded
    inside = index < hi[:, None]
    index = np.minimum(index, n_points - 1)
    u = (x[index] - x[:, None]) / h
    w = kernel_weights(u, kernel) * inside
    support = np.count_nonzero(w > 0, axis=1)
    if support.min() < degree + 1:
        i = int(np.argmin(support))
        raise BandwidthTooSmall(
            f"the smoothing bandwidth is too small: at x = {x[i]:g} only {support[i]} sample(s) carry weight, a "
            f"local polynomial of degree {degree} needs {degree + 1}; raise the bandwidth")
    basis = u[..., None] ** np.arange(degree + 1)  # (N, K, degree + 1)
    gram_inverse = np.linalg.inv(np.einsum("nk,nki,nkj->nij", w, basis, basis))
    coefficients = gram_inverse @ np.einsum("nk,nki,nkm->nim", w, basis, y[index])  # (N, degree + 1, n)
    leverage = kernel_weights(np.zeros(1), kernel)[0] * gram_inverse[:, 0, 0]
    return coefficients[:, 0], coefficients[:, 1] / h, leverage


def gcv_local_polynomial(x: np.ndarray, y: np.ndarray, candidates: np.ndarray, degree: int, kernel: str) \
        -> tuple[np.ndarray, np.ndarray]:
    """`local_polynomial`'s value and slope with each state's bandwidth the candidate (in x's units)
    of least GCV score; the narrowest wins ties. ValueError when every candidate is too small."""
    value, slope = np.empty_like(y), np.empty_like(y)
    best = np.full(y.shape[1], np.inf)
    for h in candidates:
        try:
            v, s, leverage = local_polynomial(x, y, h, degree, kernel)
        except BandwidthTooSmall:
            continue
        freedom = 1.0 - leverage.mean()
        score = np.mean((y - v) ** 2, axis=0) / freedom**2 if freedom > 0 else np.full(y.shape[1], np.inf)
        better = score < best
        best[better], value[:, better], slope[:, better] = score[better], v[:, better], s[:, better]
    if not np.isfinite(best).all():
        raise ValueError(f"no GCV candidate bandwidth leaves {degree + 1} samples in every window: lower the degree "
                         "or give a bandwidth")
    return value, slope
