"""A linear ODE baseline: dy/dt = A y + b fitted to the observations by least squares.

The fit uses the integral form of the ODE (Schaeffer & McCalla 2017, Phys. Rev. E 96:023302),

    y(t_k) - y(t_0) = A int_{t_0}^{t_k} y dt + b (t_k - t_0),

with the integrals by the trapezoidal rule over the observation times. Integrating smooths the
noise that differentiating the data would amplify, and any increasing times work (uniform or
log-spaced). States are divided by their largest observed magnitude first, so that states of very
different scales weigh alike. The forecast is exact for the fitted model: with the generator
M = [[A, b], [0, 0]], y(t) is the top of exp(M (t - t0)) [y0; 1], one matrix exponential per
time (torch, float64). Where A has an eigenvalue of positive real part the forecast grows
exponentially; where it overflows to Inf, the cell's status is `diverged`. With `stable`, those
real parts are set to 0 after the fit (A = V diag(lambda) V^-1 rebuilt), so that the forecast
cannot grow exponentially: a growing spiral becomes a closed orbit of the same frequency.

A closed-form fit has no epochs: it solves one least-squares problem, reported as epoch 1. It is
deterministic, so every seed gets the same model.
"""

import numpy as np
import torch
from pydantic import Field
from stiffbench.api import AbstractMethod, AbstractModel, FullyObserved, PluginParams


class LinearODEParams(PluginParams):
    stable: bool = Field(False, description="clip the fitted eigenvalues' real parts at 0 (no exponential growth)")


class LinearODEModel(AbstractModel):
    """The fitted dy/dt = A y + b in scaled states u = y / scale, forecasting from y0 at t0."""

    def __init__(self, A, b, scale, y0, t0, n_seeds):
        self.A_scaled, self.b_scaled, self.scale = A, b, scale
        self.y0, self.t0, self.n_seeds = y0, t0, n_seeds

    @property
    def A(self):
        """The fitted matrix in the system's units (A_ij = A_scaled_ij scale_i / scale_j)."""
        return self.A_scaled * self.scale[:, None] / self.scale[None, :]

    @property
    def b(self):
        """The fitted constant in the system's units."""
        return self.b_scaled * self.scale

    def forecast(self, t):
        n = len(self.scale)
        generator = np.zeros((n + 1, n + 1))
        generator[:n, :n], generator[:n, n] = self.A_scaled, self.b_scaled
        start = torch.as_tensor(np.append(self.y0 / self.scale, 1.0))
        steps = torch.as_tensor(np.asarray(t, dtype=np.float64) - self.t0)
        # Batched over the times; an unstable fit overflows to Inf here rather than raising.
        u = torch.linalg.matrix_exp(torch.as_tensor(generator) * steps[:, None, None]) @ start
        y = u[:, :n].numpy() * self.scale
        return np.repeat(y[None], self.n_seeds, axis=0)


class LinearODE(AbstractMethod):
    """dy/dt = A y + b by one least-squares solve in integral form (see the module docstring)."""

    name = "linear_ode"
    description = "Linear ODE dy/dt = A y + b fitted by least squares in integral form (a baseline)."
    Params = LinearODEParams
    requires = (FullyObserved,)  # it fits every state's equation, so it needs every state observed
    batches_seeds = True

    def fit(self, task, seeds, config):
        t, y = task.observations.t, task.observations.y
        scale = np.max(np.abs(y), axis=0)
        scale[scale == 0] = 1.0
        u = y / scale
        steps = np.diff(t)[:, None]
        integrals = np.vstack([np.zeros((1, u.shape[1])), np.cumsum(steps * (u[1:] + u[:-1]) / 2, axis=0)])
        regressors, targets = np.hstack([integrals, (t - t[0])[:, None]]), u - u[0]
        coef = np.linalg.lstsq(regressors, targets, rcond=None)[0]
        A, b = coef[:-1].T, coef[-1]
        if self.params.stable:
            A = without_growth(A)
        loss = float(np.mean((regressors @ coef - targets) ** 2))  # mean squared residual, scaled states
        config.check(1, loss)  # reports progress and raises once the cell's budget is spent
        return LinearODEModel(A, b, scale, np.asarray(task.y0, dtype=np.float64), task.initial_time, len(seeds))


def without_growth(A):
    """A with the real parts of its eigenvalues clipped at 0; A itself when none is positive."""
    eigenvalues, vectors = np.linalg.eig(A)
    if np.all(eigenvalues.real <= 0):
        return A
    clipped = np.minimum(eigenvalues.real, 0) + 1j * eigenvalues.imag
    return (vectors @ np.diag(clipped) @ np.linalg.inv(vectors)).real
