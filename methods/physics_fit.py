"""physics_fit: the positive control. System identification with the known model form: the
system's own physical parameters (its `PhysicsModel`: e.g. HH's conductances and reversal
potentials) fitted to the noisy training observations through a differentiable solve of the
model from the known initial state, from several starting points.

If the pipeline (data, reference, metrics) is sound, this method must succeed wherever the
observations identify the parameters: it learns nothing but a handful of numbers. A row of it
far from perfect points at the data or the scoring, not at learning.

The fit is Levenberg–Marquardt (Marquardt 1963) on the residuals r = z_hat(t_i) - z_i over the
observation times and the observed states (optionally divided by each state's observed std), in
coordinates u where each parameter's range maps to [-1, 1] (on a log scale for a range spanning
a decade or more). z_hat is a torch solve of the model from the known initial state: fixed-step
Heun through the observation times, or the stiff, adaptive Rodas5P. The Jacobian dr/du comes
from central differences of one solve holding every row and its perturbed copies, which all take
the same steps, so it is the derivative of one smooth discrete map (it agrees with forward-mode
differentiation of the Heun solve to about 1e-8, tested) at a fraction of forward mode's cost for
a handful of parameters. Each seed draws `starts` starting points from the ranges and keeps the
one with the lowest final loss. The forecast integrates the identified model with scipy's LSODA.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt
from scipy.integrate import solve_ivp

from stiffbench.api import (
    AbstractMethod,
    AbstractModel,
    FitConfig,
    ParametrisedPhysics,
    PhysicsModel,
    PluginParams,
    TrainingTask,
)
from stiffbench.solvers.adjoint import odeint_with_grad
from stiffbench.solvers.heun import heun_steps

# Ranges at least this wide (upper / lower, both positive) are searched on a log scale.
LOG_RANGE_RATIO = 10.0
# Central-difference step in the normalised coordinates (the Jacobian of the residuals).
FD_STEP = 1e-5
# The fit has converged when no seed's best loss falls by more than CONVERGED (relative) for STALL iterations.
CONVERGED, STALL = 1e-9, 5


class PhysicsFitParams(PluginParams):
    starts: PositiveInt = Field(8, description="Starting points per seed, drawn uniformly from the parameters' "
                                "ranges (log-uniformly for ranges spanning a decade or more).")
    solver: Literal["heun", "rodas5p"] = Field(
        "heun", description="The solve of the model in the fit: 'heun' (explicit, steps through the observation "
        "times) or 'rodas5p' (stiff, adaptive, one step size shared by the batch).")
    step: Optional[PositiveFloat] = Field(
        None, description="Heun's largest step (each interval between observation times split into equal steps); "
        "None: one step per interval.")
    rtol: PositiveFloat = Field(1e-7, description="Relative tolerance of the rodas5p fit solve.")
    atol: PositiveFloat = Field(1e-9, description="Absolute tolerance of the rodas5p fit solve, on states divided by "
                                "their largest observed |value|.")
    weighting: Literal["raw", "standardised"] = Field(
        "raw", description="Residuals in the states' own units ('raw', as the paper's data loss: the state of "
        "largest scale dominates, e.g. HH's V, whose noise is small next to its range, over the noise-drowned gates) "
        "or divided by each observed state's std ('standardised': every state counts, e.g. species spanning decades).")
    damping: PositiveFloat = Field(1e-2, description="Initial Levenberg-Marquardt damping (relative to diag(J^T J)).")
    forecast_rtol: PositiveFloat = Field(1e-9, description="Relative tolerance of the LSODA forecast; its absolute "
                                         "tolerance is 1e-3 x forecast_rtol x each state's largest observed |value|.")


class PhysicsFit(AbstractMethod):
    """Levenberg–Marquardt fit of the system's physical parameters through a differentiable solve of
    its own model, best of several starts per seed; forecasts by integrating the fitted model."""

    name = "physics_fit"
    description = "Positive control: fits the system's physical parameters in its known model form (LM, several starts)."
    citation = "Marquardt (1963), J. SIAM 11:431; Nielsen (1999), IMM-REP-1999-05"
    Params = PhysicsFitParams
    batches_seeds = True
    requires = (ParametrisedPhysics,)

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> "FittedPhysics":
        if task.physics_model is None:
            raise ValueError("physics_fit needs the system's physics model (task.physics_model), which this task lacks")
        problem = _Problem(task, self.params, task.physics_model)
        u = torch.cat([problem.starts(seed) for seed in seeds])  # (seeds x starts, P)
        u, loss = _levenberg_marquardt(problem, u, self.params.damping, config, self.params.starts)
        best = loss.reshape(len(seeds), self.params.starts).nan_to_num(math.inf).argmin(1)
        rows = best + self.params.starts * torch.arange(len(seeds))
        return FittedPhysics(problem, u[rows], loss[rows].numpy(), self.params)


class _Problem:
    """The residuals of one task as a function of normalised parameters u (rows, P)."""

    def __init__(self, task: TrainingTask, p: PhysicsFitParams, model: PhysicsModel):
        self.task, self.p, self.model = task, p, model
        self.names = list(model.ranges)
        lo, hi = (np.array([model.ranges[n][i] for n in self.names]) for i in (0, 1))
        self.log = (lo > 0) & (hi >= LOG_RANGE_RATIO * lo)
        self.lo = torch.as_tensor(np.where(self.log, np.log(np.abs(lo)), lo))
        self.hi = torch.as_tensor(np.where(self.log, np.log(np.abs(hi)), hi))
        obs = task.observations
        self.columns = [task.all_state_names.index(name) for name in obs.state_names]
        self.z = torch.as_tensor(np.asarray(obs.y, np.float64))
        self.sigma = torch.as_tensor(_nonzero(np.asarray(obs.y).std(axis=0, ddof=1)))
        self.scale = _nonzero(np.abs(np.asarray(obs.y)).max(axis=0))  # of the observed states
        t_obs, t0 = np.asarray(obs.t, np.float64), task.initial_time
        self.times = ([t0] if t0 < t_obs[0] else []) + t_obs.tolist()
        self.skip = len(self.times) - len(t_obs)
        self.y0 = torch.as_tensor(np.asarray(task.y0, np.float64))

    def starts(self, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(self.p.starts, len(self.names), generator=gen, dtype=torch.float64) * 2 - 1

    def values(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter values (rows, 1) from normalised coordinates u (rows, P)."""
        raw = self.lo + (self.hi - self.lo) * (u + 1) / 2
        raw = torch.where(torch.as_tensor(self.log), raw.exp(), raw)
        return {name: raw[:, i : i + 1] for i, name in enumerate(self.names)}

    def field(self, u: torch.Tensor):
        """f(t, z) for states z (rows, n) with each row's parameter values."""
        f = self.model.field_with(self.values(u))
        return lambda t, z: f(t, z.unsqueeze(1)).squeeze(1)

    def residuals(self, u: torch.Tensor) -> torch.Tensor:
        """(rows, R): the misfit at every observation time and observed state, in the states' units
        or divided by each observed state's std (`weighting`)."""
        z_hat = self.solve(u)[:, self.skip :][..., self.columns]
        misfit = z_hat - self.z
        return (misfit / self.sigma if self.p.weighting == "standardised" else misfit).flatten(1)

    def solve(self, u: torch.Tensor) -> torch.Tensor:
        """The model's states (rows, len(times), n) from y0 at the rollout times."""
        y0 = self.y0.expand(len(u), -1)
        f = self.field(u)
        if self.p.solver == "rodas5p":
            scale = torch.as_tensor(self._state_scale())
            g = lambda t, y: f(t, y * scale) / scale  # noqa: E731  (solver coordinates: states / their scale)
            ys = odeint_with_grad(g, y0 / scale, self.times, (), "rodas5p", "backprop", rtol=self.p.rtol, atol=self.p.atol)
            return (ys * scale).transpose(0, 1)
        step_times, out_index = heun_steps(self.times, self.p.step)
        y, states = y0, [y0]
        for t, h in zip(step_times[:-1].tolist(), np.diff(step_times).tolist()):
            k1 = f(t, y)
            k2 = f(t + h, y + h * k1)
            y = y + (0.5 * h) * (k1 + k2)
            states.append(y)
        return torch.stack(states, 1)[:, torch.as_tensor(out_index)]

    def _state_scale(self) -> np.ndarray:
        """Each state's largest observed |value| (its initial |value| when unobserved, else 1)."""
        scale = _nonzero(np.abs(self.y0.numpy()))
        scale[self.columns] = self.scale
        return scale

    def residuals_and_jacobian(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """r (rows, R) and J = dr/du (rows, R, P) by central differences: every row and its 2P
        perturbed copies in one solve, where all take the same steps (Heun's fixed grid; the
        shared step size of the Rodas5P solve), so the differences are those of one smooth
        discrete map of the parameters."""
        rows, P = u.shape
        eye = torch.eye(P, dtype=u.dtype)
        shifted = torch.cat([u, *(u + FD_STEP * d for d in eye), *(u - FD_STEP * d for d in eye)])
        with torch.no_grad():
            all_r = self.residuals(shifted).reshape(2 * P + 1, rows, -1)
        J = (all_r[1 : P + 1] - all_r[P + 1 :]) / (2 * FD_STEP)
        return all_r[0], J.permute(1, 2, 0)


def _levenberg_marquardt(problem: _Problem, u: torch.Tensor, damping: float, config: FitConfig, starts: int):
    """Up to `config.epochs` iterations, each row on its own: the step solves
    (J^T J + lam diag(J^T J)) d = -J^T r; a step that lowers the row's loss is taken and lam shrinks,
    otherwise lam grows. Rows whose solve is not finite at the start are dead (loss NaN). The rows
    are seeds x `starts`; the fit stops early once no seed's best loss has fallen by more than
    CONVERGED (relative) for STALL iterations running. Returns (u, loss per row)."""
    lam = torch.full((len(u),), damping, dtype=u.dtype)
    with torch.no_grad():
        loss = problem.residuals(u).square().mean(1)
    stalled = 0
    for epoch in range(1, config.epochs + 1):
        alive = loss.isfinite()
        r, J = problem.residuals_and_jacobian(u)
        r, J = r.detach(), J.detach()
        H = J.transpose(1, 2) @ J
        g = (J.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        diag = torch.diagonal(H, dim1=1, dim2=2)
        damped = H + torch.diag_embed(lam.unsqueeze(1) * diag + 1e-12 * diag.amax(1, keepdim=True))
        step = torch.linalg.solve(torch.where(alive[:, None, None], damped, torch.eye(H.shape[1], dtype=H.dtype)),
                                  -torch.where(alive[:, None], g, 0.0))
        trial = u + step.nan_to_num(0.0)
        with torch.no_grad():
            trial_loss = problem.residuals(trial).square().mean(1)
        better = alive & trial_loss.isfinite() & (trial_loss < loss)
        best_before = _best_per_seed(loss, starts)
        u = torch.where(better[:, None], trial, u)
        loss = torch.where(better, trial_loss, loss)
        progress = _best_per_seed(loss, starts) < (1 - CONVERGED) * best_before
        stalled = 0 if bool(progress.any()) else stalled + 1
        lam = torch.where(better, lam / 3, lam * 4).clamp(1e-12, 1e12)
        finite = loss[loss.isfinite()]
        config.check(epoch, float(finite.min()) if len(finite) else math.nan)
        if stalled >= STALL:
            break
    return u, loss


def _best_per_seed(loss: torch.Tensor, starts: int) -> torch.Tensor:
    """The lowest finite loss of each seed's starts (inf where none is finite)."""
    return loss.nan_to_num(math.inf).reshape(-1, starts).amin(1)


class FittedPhysics(AbstractModel):
    """The identified models, one per seed; `values` their parameters, `loss` their final mean
    squared residual."""

    def __init__(self, problem: _Problem, u: torch.Tensor, loss: np.ndarray, params: PhysicsFitParams):
        self.problem, self.u, self.loss, self.params = problem, u.detach(), loss, params
        self.values = [{k: float(v[b, 0]) for k, v in problem.values(self.u).items()} for b in range(len(u))]

    def forecast(self, t: np.ndarray) -> np.ndarray:
        """Each fitted model integrated by LSODA over t (from the task's initial time); NaN from a failed
        integration on, and everywhere for a model whose fit never had a finite loss."""
        t = np.asarray(t, np.float64)
        n = len(self.problem.y0)
        out = np.full((len(self.u), len(t), n), np.nan)
        atol = 1e-3 * self.params.forecast_rtol * self.problem._state_scale()
        for b in range(len(self.u)):
            if not np.isfinite(self.loss[b]):
                continue
            f = self.problem.field(self.u[b : b + 1])

            def rhs(time, y):
                with torch.no_grad():
                    return f(time, torch.as_tensor(y).unsqueeze(0))[0].numpy()

            sol = solve_ivp(rhs, (t[0], t[-1]), self.problem.y0.numpy(), method="LSODA", t_eval=t,
                            rtol=self.params.forecast_rtol, atol=atol)
            out[b, : sol.y.shape[1]] = sol.y.T
        return out


def _nonzero(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 1.0)
