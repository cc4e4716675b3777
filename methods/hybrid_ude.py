"""hybrid_ude: a structured hybrid, the universal differential equation of Rackauckas et al. (2020).

The system's known terms are kept and the rest is learned (`stiffbench.structure`): the known
states' equations are the system's own (HH's current balance), and each learned state relaxes as
dx/dt = (x_inf(d) - x) / tau(d) with x_inf and tau networks of its driver states d (HH's gates:
x_inf(V) by a sigmoid, so a gate stays in [0, 1], tau(V) by a softplus). The learned part cannot
leave the model form: it cannot invent a current, only the gates' kinetics.

Training, per epoch (full batch, Adam), on the noisy observations at times t_0 < ... < t_N:
- learned states: the relaxations driven by the observed drivers, integrated over the whole
  window from the known initial state, exactly for drivers frozen at each interval's midpoint:
  x_{k+1} = x_inf_k + (x_k - x_inf_k) exp(-h_k / tau_k) (no solver, one multiply-add per step);
- known states: Heun, one step per observation interval, of the known equations given those
  learned states, on segments of `segment` intervals that start from the observed known states
  (HH: V re-anchored every 1 ms; a segment's error is how well the learned gates carry the
  currents that move V, without the phase drift of a whole-window solve).
The loss is the squared error of both against the observations (`weighting`). The drivers come
from the data (teacher forcing), so an epoch costs one pass over the window instead of a solve of
the coupled system; the forecast integrates the coupled system (known and learned terms together)
by Heun from the initial state, so it is a closed-loop model trained open-loop.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt

from stiffbench.api import AbstractMethod, AbstractModel, FitConfig, FullyObserved, PluginParams, TrainingTask
from stiffbench.nn import BatchedMLP
from stiffbench.solvers.heun import heun_forecast, heun_forecast_at
from stiffbench.structure import HybridStructure, KnownTerms, require_structure

from ._neural_ode import _nonzero, heun_grid, train


class HybridUDEParams(PluginParams):
    hidden: tuple[PositiveInt, ...] = Field(
        (32, 32), min_length=1, description="Hidden-layer widths (tanh) of each network of x_inf and tau; one "
        "network per set of driver states, with two outputs per learned state it drives.")
    lr: PositiveFloat = Field(1e-2, description="Adam learning rate (full batch, one step per epoch).")
    segment: PositiveInt = Field(
        100, description="Observation intervals per segment of the known states' training solve, each segment "
        "starting from the observed known states.")
    tau_scale: Optional[PositiveFloat] = Field(
        None, description="tau at a zero network output, in the system's time unit (tau = tau_scale x "
        "softplus(o) / ln 2 + the solver step); None: a tenth of the training window's span.")
    weighting: Literal["raw", "standardised"] = Field(
        "raw", description="Errors in the states' own units ('raw', as the paper's data loss: HH's V, whose noise "
        "is small next to its range, dominates the noise-drowned gates) or divided by each state's observed std.")
    step: Optional[PositiveFloat] = Field(
        None, description="Largest Heun step of the forecast, which also floors tau (Heun is stable on a "
        "relaxation for step / tau <= 2); None: the smallest interval between observation times.")


class HybridUDE(AbstractMethod):
    """Universal differential equation (Rackauckas, Ma, Martensen, Warner, Zubov, Supekar, Skinner,
    Ramadhan & Edelman, "Universal differential equations for scientific machine learning",
    arXiv:2001.04385, 2020): the system's known terms kept, each learned state's steady state and
    time constant fitted as networks of its drivers (see the module docstring); one set of networks
    per seed, all seeds one batch."""

    name = "hybrid_ude"
    description = ("Structured hybrid (UDE): the system's known terms kept, the rest learned as relaxations "
                   "x_inf(d), tau(d) (HH: the gates' kinetics as networks of V).")
    citation = "Rackauckas et al. (2020), arXiv:2001.04385"
    Params = HybridUDEParams
    requires = (KnownTerms, FullyObserved)
    batches_seeds = True

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> "HybridModel":
        structure = require_structure(task, self.name)
        kinetics = Kinetics(structure, task, self.params, list(seeds))
        losses = _Objective(kinetics, task, self.params)
        history = train(kinetics, losses, len(seeds), self.params.lr, config)
        return HybridModel(kinetics, task, history)


class Kinetics(torch.nn.Module):
    """The learned relaxations of B models: per set of driver states, one `BatchedMLP` from the
    standardised drivers to (x_inf, tau) of the states they drive."""

    def __init__(self, structure: HybridStructure, task: TrainingTask, p: HybridUDEParams, seeds: list[int]):
        super().__init__()
        self.structure = structure
        self.n_models = len(seeds)
        obs = task.observations
        self.mean = torch.as_tensor(obs.y.mean(0), dtype=torch.float64)
        self.std = torch.as_tensor(_nonzero(obs.y.std(0)), dtype=torch.float64)
        spacing = np.diff(np.concatenate([[task.initial_time], obs.t]))
        self.step = float(p.step if p.step is not None else spacing[spacing > 0].min())
        self.tau_scale = float(p.tau_scale if p.tau_scale is not None else (obs.t[-1] - task.initial_time) / 10)
        groups: dict[tuple[str, ...], list[str]] = {}
        for name, relaxation in structure.learned.items():
            groups.setdefault(relaxation.drivers, []).append(name)
        self.groups = [(structure.index(drivers), structure.index(states), [structure.learned[s].bounds for s in states])
                       for drivers, states in groups.items()]
        self.nets = torch.nn.ModuleList(
            BatchedMLP([len(drivers), *p.hidden, 2 * len(states)], seeds, dtype=torch.float64)
            for drivers, states, _ in self.groups)
        self.learned = [i for _, states, _ in self.groups for i in states]
        self.known = structure.index(structure.known_states)

    def steady_and_tau(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_inf and tau of the learned states (in `self.learned` order), (B, ..., n_learned) each,
        at full states z (B, ..., n) (only the drivers are read)."""
        steady, tau = [], []
        for net, (drivers, states, bounds) in zip(self.nets, self.groups):
            d = (z[..., drivers] - self.mean[drivers]) / self.std[drivers]
            out = net(d.reshape(d.shape[0], -1, d.shape[-1])).reshape(*d.shape[:-1], 2 * len(states))
            o_inf, o_tau = out[..., : len(states)], out[..., len(states):]
            for j, (state, bound) in enumerate(zip(states, bounds)):
                if bound is None:
                    steady.append(self.mean[state] + self.std[state] * o_inf[..., j])
                else:
                    steady.append(bound[0] + (bound[1] - bound[0]) * torch.sigmoid(o_inf[..., j]))
            tau.append(self.tau_scale / math.log(2) * torch.nn.functional.softplus(o_tau) + self.step)
        return torch.stack(steady, -1), torch.cat(tau, -1)

    def field(self, t, z: torch.Tensor) -> torch.Tensor:
        """dz/dt of the coupled hybrid for states z (B, n): the known terms and the relaxations."""
        steady, tau = self.steady_and_tau(z)
        dz = torch.empty_like(z)
        dz[..., self.known] = self.structure.known_field(t, z)
        dz[..., self.learned] = (steady - z[..., self.learned]) / tau
        return dz


class _Objective:
    """losses() -> (B,): the open-loop training loss of the module docstring."""

    def __init__(self, kinetics: Kinetics, task: TrainingTask, p: HybridUDEParams):
        obs = task.observations
        t = np.concatenate([[task.initial_time], obs.t]) if task.initial_time < obs.t[0] else np.asarray(obs.t)
        z = np.asarray(obs.y, np.float64)
        if len(t) > len(z):  # the initial state precedes the first observation
            z = np.concatenate([np.asarray(task.y0, np.float64)[None], z])
        self.kinetics, self.skip = kinetics, len(t) - len(obs.t)
        self.t = torch.as_tensor(t, dtype=torch.float64)
        self.h = self.t.diff()
        self.z = torch.as_tensor(z)
        self.y0 = torch.as_tensor(np.asarray(task.y0, np.float64))
        scale = kinetics.std if p.weighting == "standardised" else torch.ones_like(kinetics.std)
        self.weight = scale.reciprocal().square()
        n_intervals = len(t) - 1
        self.m = min(p.segment, n_intervals)
        self.starts = torch.arange(n_intervals // self.m) * self.m

    def learned_states(self) -> torch.Tensor:
        """The learned states (B, N, n_learned) over the window, driven by the observed drivers."""
        k = self.kinetics
        mid = 0.5 * (self.z[1:] + self.z[:-1])
        steady, tau = k.steady_and_tau(mid.expand(k.n_models, *mid.shape))
        decay = torch.exp(-self.h[:, None] / tau)
        shift = (1 - decay) * steady
        x = self.y0[k.learned].expand(decay.shape[0], -1)
        out = [x]
        for i in range(decay.shape[1]):
            x = torch.addcmul(shift[:, i], decay[:, i], x)
            out.append(x)
        return torch.stack(out, 1)

    def __call__(self) -> torch.Tensor:
        k = self.kinetics
        x = self.learned_states()
        learned_error = ((x - self.z[:, k.learned]).square() * self.weight[k.learned])[:, self.skip:].sum(-1).mean(-1)
        state = self.z[self.starts].expand(x.shape[0], -1, -1).clone()
        known_error = x.new_zeros(x.shape[0])
        for j in range(self.m):
            i = self.starts + j
            h = self.h[i][:, None]
            state[..., k.learned] = x[:, i]
            slope = k.structure.known_field(self.t[i], state)
            ahead = state.clone()
            ahead[..., k.known] = state[..., k.known] + h * slope
            ahead[..., k.learned] = x[:, i + 1]
            known = state[..., k.known] + 0.5 * h * (slope + k.structure.known_field(self.t[i + 1], ahead))
            state = ahead.clone()
            state[..., k.known] = known
            known_error = known_error + ((known - self.z[i + 1][:, k.known]).square() * self.weight[k.known]).sum(-1).mean(-1)
        return learned_error + known_error / self.m


class HybridModel(AbstractModel):
    """Trained hybrids; the forecast integrates the coupled system by Heun from the initial state
    (steps of at most `step` through the forecast times). A model whose training loss was ever
    non-finite forecasts NaN."""

    def __init__(self, kinetics: Kinetics, task: TrainingTask, loss_history: np.ndarray):
        self.kinetics = kinetics.eval().requires_grad_(False)
        self.t0 = task.initial_time
        self.y0 = torch.as_tensor(np.asarray(task.y0, np.float64))
        self.loss_history = loss_history
        self.diverged = ~np.isfinite(loss_history).all(axis=0)

    def forecast(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        if t.ndim != 1 or len(t) == 0 or abs(t[0] - self.t0) > 1e-9 * max(1.0, abs(self.t0)):
            raise ValueError(f"the forecast grid must start at the initial time {self.t0}")
        y0 = self.y0.expand(self.kinetics.n_models, -1).clone()
        if len(t) == 1:
            traj = y0[None]
        else:
            dt, out_index = heun_grid(t.tolist(), self.kinetics.step)
            traj = heun_forecast(self.kinetics.field, y0, self.t0, dt, len(t) - 1) if out_index is None \
                else heun_forecast_at(self.kinetics.field, y0, dt)[torch.as_tensor(out_index)]
        out = traj.transpose(0, 1).to(torch.float64).numpy().copy()
        out[self.diverged] = np.nan
        return out

