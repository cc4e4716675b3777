"""Multiple shooting for the neural ODE: short segments with free initial states, joined by a penalty.

Single shooting on oscillatory data "may result in a flattened out trajectory" (Turan & Jäschke
2021): the loss over one long rollout has a wide basin around the mean state, where the learned
field relaxes to a fixed point. Splitting the training window into short segments, each started
from its own free initial state, makes every segment's fit a short-horizon problem; a continuity
penalty joins the segments into one trajectory as training proceeds. With `grow_every`, the
segments grow during training (doubling until one spans the window), so that the fit moves from
short-horizon problems towards the trajectory the forecast integrates.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

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
    grow_every: Optional[PositiveInt] = param(
        None, added=True, description="Segments growing during training: every this many epochs the segment length "
        "doubles (group_size, 2 group_size, 4 group_size, ...) until one segment spans the window, which is then "
        "single shooting from the initial state; the free initial states of the longer segments' starts carry "
        "their trained values over. None: the segments keep group_size."
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


def growing_stages(n_obs: int, group_size: int, grow_every: int | None) -> list[tuple[np.ndarray, int]]:
    """(segment starts, intervals per segment) of each stage of training (`segment_starts`): one
    stage of group_size intervals without growth; with it, group_size x 2^j for j = 0, 1, ... until
    one segment spans the n_obs - 1 intervals (the last stage is then the single segment from 0)."""
    if grow_every is None:
        return [(segment_starts(n_obs, group_size), group_size)]
    stages, size = [], group_size
    while size < n_obs - 1:
        stages.append((segment_starts(n_obs, size), size))
        size *= 2
    return stages + [(np.zeros(1, np.int64), n_obs - 1)]


class ShootingModule(nn.Module):
    """The vector fields, the free initial states at the observation nodes `nodes` (the starts of
    every stage's segments but the first; segment 0 starts at y0), and the epochs trained so far
    (a buffer, so that a resumed training continues in its stage)."""

    def __init__(self, field: VectorField, starts: torch.Tensor):
        super().__init__()
        self.field = field
        self.starts = nn.Parameter(starts)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))


class _Stage(NamedTuple):
    """One segmentation's tensors: which free states start its segments 1..K-1, their start times,
    each segment's intervals and observations, and each joint's position in the earlier segment."""

    free: torch.Tensor
    t_starts: torch.Tensor
    steps: torch.Tensor
    observed: torch.Tensor
    joint: torch.Tensor


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
    std-normalised gap at the joints. With `grow_every`, the segments double in length every that
    many epochs, ending in single shooting (`growing_stages`); a free state keeps its trained value
    while a start at its node remains. Heun through the observation times (any spacing; each
    interval split into ceil(largest interval / `step`) equal substeps), differentiated by autograd;
    the forecast is one rollout from the initial state, as the other neural ODEs'.
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
        stages = growing_stages(len(times), p.group_size, p.grow_every)
        identity = ObservationStats.identity(len(batch.stats[0].z_mean))
        stats = [s if m.params.normalise else identity for m, s in zip(members, batch.stats)]
        scales = batch.observed_max() if p.state_scale == "observed_max" else None
        field = VectorField(p, stats, [m.seed for m in members], device, scales)
        # the nodes: the observations, after the known initial state when it precedes them
        nodes = batch.z if not batch.skip else torch.cat([batch.y0.unsqueeze(1), batch.z], 1)
        free_nodes = np.unique(np.concatenate([starts[1:] for starts, _ in stages]))
        module = ShootingModule(field, field.to_solver(nodes[:, free_nodes]).clone())
        y0 = field.to_solver(batch.y0).unsqueeze(1)
        obs_std = batch.obs_std()

        def stage(starts: np.ndarray, size: int) -> _Stage:
            index = starts[:, None] + np.arange(size + 1)  # (K, G+1) node indices of each segment
            return _Stage(
                free=torch.as_tensor(np.searchsorted(free_nodes, starts[1:]), device=nodes.device),
                t_starts=batch.t.new_tensor(times[starts]),
                steps=batch.t.new_tensor(intervals[index[:, :-1]]),  # (K, G)
                observed=nodes[:, torch.as_tensor(index, device=nodes.device)],  # (B, K, G+1, n)
                # the joint after segment k: the state of segment k at the next segment's start
                joint=torch.as_tensor(starts[1:] - starts[:-1], device=nodes.device),
            )

        segmentations = [stage(starts, size) for starts, size in stages]

        def losses() -> torch.Tensor:
            s = segmentations[min(len(segmentations) - 1, int(module.epochs_done) // (p.grow_every or 1))]
            module.epochs_done += 1
            f = field.evaluator(field.rollout_params())
            starts = module.starts[:, s.free]
            u0 = torch.cat([y0, starts], 1)
            z = field.from_solver(heun_segments(f, u0, s.t_starts, s.steps, substeps))  # (B, K, G+1, n)
            B, K, L, n = z.shape
            fit = data_loss(z.reshape(B, K * L, n), s.observed.reshape(B, K * L, n), p.data_loss, obs_std)
            ends = z[:, torch.arange(K - 1, device=z.device), s.joint]  # (B, K-1, n)
            gap = ((ends - field.from_solver(starts)) / obs_std).square().sum(-1).mean(-1) if K > 1 else 0.0
            return fit + p.continuity * gap

        return module, batch, losses

    @classmethod
    def fit_batch(cls, members: Sequence[BatchMember], config) -> NeuralODEModel:
        p = members[0].params
        module, batch, losses = cls.objective(members, config.device, False, config.max_steps)
        history = train(module, losses, len(members), p.lr, config)
        return NeuralODEModel(module.field, batch.y0, batch.t0, history, p, config.max_steps)
