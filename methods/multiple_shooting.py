"""Multiple shooting for the neural ODE: short segments with free initial states, joined by a penalty.

Single shooting on oscillatory data "may result in a flattened out trajectory" (Turan & Jäschke
2021): the loss over one long rollout has a wide basin around the mean state, where the learned
field relaxes to a fixed point. Splitting the training window into short segments, each started
from its own free initial state, makes every segment's fit a short-horizon problem; a continuity
penalty joins the segments into one trajectory as training proceeds.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import PositiveFloat, PositiveInt, model_validator
from torch import nn

from stiffbench.api import BatchMember, FullyObserved, param


from ._neural_ode import (
    NeuralODEMethod,
    NeuralODEModel,
    NeuralODEParams,
    ObservationStats,
    TrainingBatch,
    VectorField,
    data_loss,
    torch_dtype,
    train,
)


class MultipleShootingParams(NeuralODEParams):
    """The neural ODE's parameters, plus the segmentation and the continuity weight."""

    group_size: PositiveInt = param(
        10, description="Observation intervals per segment (DiffEqFlux's group_size). The training window's "
        "observations are cut into ceil((N - 1) / group_size) segments of this length; the last one ends at the "
        "last observation and may overlap its predecessor."
    )
    continuity: PositiveFloat = param(
        100.0, description="Weight of the continuity penalty (DiffEqFlux's continuity_term = 100): the mean over "
        "segment joints of the squared, std-normalised gap between a segment's end and the next segment's "
        "initial state."
    )

    @model_validator(mode="after")
    def _heun_only(self):
        if self.solver != "heun" or self.gradient != "backprop":
            raise ValueError("multiple_shooting integrates its segments with heun and backprop (solver 'heun', "
                             "gradient 'backprop')")
        return self


def segment_starts(n_obs: int, group_size: int) -> np.ndarray:
    """Start indices of the segments over observations 0..n_obs-1: 0, G, 2G, ..., the last one
    moved back so that it ends exactly at the last observation (n_obs - 1 - G)."""
    if n_obs - 1 < group_size:
        raise ValueError(f"group_size {group_size} exceeds the {n_obs - 1} observation intervals")
    count = math.ceil((n_obs - 1) / group_size)
    starts = np.arange(count) * group_size
    starts[-1] = n_obs - 1 - group_size
    return starts


class ShootingModule(nn.Module):
    """The vector fields and the free initial states of segments 1..K-1 (segment 0 starts at y0)."""

    def __init__(self, field: VectorField, starts: torch.Tensor):
        super().__init__()
        self.field = field
        self.starts = nn.Parameter(starts)


def heun_segments(f: Callable, u0: torch.Tensor, t0: torch.Tensor, dt: torch.Tensor, substeps: int) -> torch.Tensor:
    """Heun's method on K segments at once: u0 (B, K, n) at their start times t0 (K,), through
    intervals dt (K, G) (each segment its own), each split into `substeps` equal steps; the states
    at every interval's end, start included, (B, K, G + 1, n). Differentiated by autograd."""
    u, t, out = u0, t0, [u0]
    for j in range(dt.shape[1]):
        h = (dt[:, j] / substeps)[:, None]  # (K, 1), broadcast over models and states
        for _ in range(substeps):
            k1 = f(t, u)
            k2 = f(t + h[:, 0], u + h * k1)
            u, t = u + 0.5 * h * (k1 + k2), t + h[:, 0]
        out.append(u)
    return torch.stack(out, 2)


class MultipleShootingNODE(NeuralODEMethod):
    """Neural ODE dz/dt = f_theta(z[, t]) trained by multiple shooting (Turan & Jäschke, IEEE Control
    Systems Letters 6:1364, 2022, arXiv:2109.06786; DiffEqFlux.jl's multiple_shoot): the training
    window's observations are cut into segments of `group_size` intervals; segment 0 starts at the
    known initial state, every other one at a free initial state (initialised to its noisy
    observation and trained with the network). Loss per model: the data loss over every segment's
    points, start included (eq. 7 with `data_loss`), plus `continuity` x the mean squared
    std-normalised gap at the joints. Heun through the observation times (any spacing; each
    interval split into ceil(largest interval / `step`) equal substeps), differentiated by autograd; the forecast is one rollout from
    the initial state, as the other neural ODEs'.
    """

    name = "multiple_shooting"
    citation = "Turan & Jäschke (2022), IEEE Control Syst. Lett. 6:1364 (arXiv:2109.06786)"
    description = "Neural ODE trained by multiple shooting: short segments with free initial states and a continuity penalty."
    Params = MultipleShootingParams
    requires = (FullyObserved,)

    @classmethod
    def objective(cls, members: Sequence[BatchMember], device: str, compile: bool, max_steps: int | None = None):
        """The members' untrained `ShootingModule`, their data, and losses() -> (B,). Eager autograd:
        `compile` and `max_steps` (adaptive solvers only) do not apply."""
        p = members[0].params
        if len({cls(m.params).batch_key() for m in members}) != 1:
            raise ValueError(f"{cls.__name__}: the members' parameters differ beyond {sorted(cls.member_fields)}")
        batch = TrainingBatch.of([m.task for m in members], torch_dtype(p.dtype), torch.device(device))
        times = np.asarray(batch.times)  # the observation times, after the initial time when it precedes them
        intervals = np.diff(times)
        substeps = 1 if p.step is None else max(1, math.ceil(intervals.max() / p.step - 1e-9))
        starts = segment_starts(len(times), p.group_size)
        identity = ObservationStats.identity(len(batch.stats[0].z_mean))
        stats = [s if m.params.normalise else identity for m, s in zip(members, batch.stats)]
        scales = batch.observed_max() if p.state_scale == "observed_max" else None
        field = VectorField(p, stats, [m.seed for m in members], device, scales)
        # the nodes: the observations, after the known initial state when it precedes them
        nodes = batch.z if not batch.skip else torch.cat([batch.y0.unsqueeze(1), batch.z], 1)
        module = ShootingModule(field, field.to_solver(nodes[:, starts[1:]]).clone())
        y0 = field.to_solver(batch.y0).unsqueeze(1)
        t_starts = batch.t.new_tensor(times[starts])
        index = starts[:, None] + np.arange(p.group_size + 1)  # (K, G+1) node indices of each segment
        steps = batch.t.new_tensor(intervals[index[:, :-1]])  # (K, G)
        observed = nodes[:, torch.as_tensor(index, device=nodes.device)]  # (B, K, G+1, n)
        obs_std = batch.obs_std()
        # the joint after segment k: the state of segment k at the next segment's start
        joint = torch.as_tensor(starts[1:] - starts[:-1], device=nodes.device)

        def losses() -> torch.Tensor:
            f = field.evaluator(field.rollout_params())
            u0 = torch.cat([y0, module.starts], 1)
            z = field.from_solver(heun_segments(f, u0, t_starts, steps, substeps))  # (B, K, G+1, n)
            B, K, L, n = z.shape
            fit = data_loss(z.reshape(B, K * L, n), observed.reshape(B, K * L, n), p.data_loss, obs_std)
            ends = z[:, torch.arange(K - 1, device=z.device), joint]  # (B, K-1, n)
            gap = ((ends - field.from_solver(module.starts)) / obs_std).square().sum(-1).mean(-1) if K > 1 else 0.0
            return fit + p.continuity * gap

        return module, batch, losses

    @classmethod
    def fit_batch(cls, members: Sequence[BatchMember], config) -> NeuralODEModel:
        p = members[0].params
        module, batch, losses = cls.objective(members, config.device, False, config.max_steps)
        history = train(module, losses, len(members), p.lr, config)
        return NeuralODEModel(module.field, batch.y0, batch.t0, history, p, config.max_steps)
