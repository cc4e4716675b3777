"""Collocation: a neural ODE regressed on derivatives estimated from the smoothed data, no solver in
the loop.

Stage 1 smooths each observed state with a local polynomial kernel smoother and takes its
derivative (`_smoothing.KernelSmoother`); stage 2 fits the vector field f_theta to the pairs
(smoothed state, smoothed derivative) at the observation times. Each epoch costs one network
evaluation on the samples, whatever the system's stiffness. The forecast integrates the learned
field from the task's initial state with the neural ODE's solver.

Stage 2 works on any neural ODE's batched field: a neural ODE method pre-trains its
`VectorField` on the targets of its observations before its own trajectory fit with

    field, batch, losses = cls.objective(members, device, compile, config.max_steps)
    targets = CollocationTargets.of([m.task.observations for m in members], [KernelSmoother()] * len(members),
                                    batch.t.dtype, batch.t.device)
    train(field, derivative_matching(field, targets), len(members), lr, replace(config, epochs=..., checkpoint=None))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence, Union

import numpy as np
import torch
from pydantic import PositiveFloat, model_validator

from stiffbench.api import BatchMember, FullyObserved, Trajectory, param

from ._neural_ode import (
    NeuralODEMethod,
    NeuralODEParams,
    ObservationStats,
    TrainingBatch,
    VectorField,
    _nonzero,
    torch_dtype,
)
from ._smoothing import KernelSmoother


class CollocationParams(NeuralODEParams):
    """The neural ODE's parameters (solver and step: the forecast's), plus the smoother's."""

    autonomous: bool = param(
        True, description="True: dz/dt = f_theta(z). False: f_theta(z, t), as the paper's eq. 4; derivative "
        "matching can then be met through the time input alone, which says nothing past the training window."
    )
    bandwidth: Union[PositiveFloat, Literal["gcv"]] = param(
        "gcv", description="The smoothing kernel's scale in median sample spacings on the smoothing axis (the "
        "Epanechnikov kernel's half-width, the Gaussian's standard deviation). 'gcv': per state, the candidate "
        "3 x 2^(k/4), k = 0..16 (3 to 48 spacings), with the least generalised cross-validation score of the "
        "smoothed values (Craven & Wahba 1979); it assumes uncorrelated noise. A number: that multiple for every state."
    )
    degree: int = param(
        3, ge=1, le=3, description="Degree of the local polynomial. 3: with the GCV bandwidth its derivatives are "
        "closer to the true vector field than degree 2's on 9 of the ladder's 14 systems (degree 2's on fhn, "
        "vdp at mu = 1, 100 and 1000, and hh); higher degrees need wider kernels and amplify noise."
    )
    kernel: Literal["epanechnikov", "gaussian"] = param(
        "epanechnikov", description="Smoothing kernel: Epanechnikov 3/4 (1 - u^2) on |u| < 1, or Gaussian cut at "
        "|u| = 3."
    )
    time_axis: Literal["auto", "linear", "log"] = param(
        "auto", description="Axis the kernel smooths along: 'linear' (t), 'log' (log t, for log-spaced "
        "observations), or 'auto': log when every observation time is positive and they are more evenly spaced on "
        "log t than on t."
    )

    @model_validator(mode="after")
    def _no_training_solver(self):
        if self.gradient != "backprop":
            raise ValueError("collocation trains without a solver: gradient does not apply (leave it unset)")
        return self

    def smoother(self) -> KernelSmoother:
        return KernelSmoother(self.bandwidth, self.degree, self.kernel, self.time_axis)


# A rate that would change a state by less than this fraction of its RMS over the observations' time
# span counts as none (a state observed constant, whose smoothed rate is round-off).
RATE_FLOOR = 1e-9


def rate_scale(z: np.ndarray, dz: np.ndarray, span: float) -> np.ndarray:
    """Per state, the RMS of the rates dz (N, n): the size of an uncentred target (a std would vanish
    for a state changing at a constant rate), at least RATE_FLOOR x the RMS of z (N, n) per `span`
    of time; 1 for a state that is zero throughout."""
    rms = lambda a: np.sqrt(np.mean(a * a, axis=0))  # noqa: E731
    return _nonzero(np.maximum(rms(dz), RATE_FLOOR * rms(z) / span))


@dataclass(frozen=True)
class CollocationTargets:
    """Stage 1 for B models at shared observation times t (N,): the smoothed states z and their
    time derivatives dz (B, N, n), each model's per-state `rate_scale` (B, 1, n), and its
    `ObservationStats` of the smoothed data for the field's normalisation (deriv_std: the rate scale)."""

    t: torch.Tensor
    z: torch.Tensor
    dz: torch.Tensor
    scale: torch.Tensor
    stats: list[ObservationStats]

    @classmethod
    def of(cls, observations: Sequence[Trajectory], smoothers: Sequence[KernelSmoother], dtype: torch.dtype,
           device) -> "CollocationTargets":
        t = np.asarray(observations[0].t, np.float64)
        if any(not np.array_equal(obs.t, t) for obs in observations):
            raise ValueError("collocation targets of one batch need shared observation times")
        smoothed = [smoother(t, obs.y) for smoother, obs in zip(smoothers, observations)]
        z = np.stack([value for value, _ in smoothed])
        dz = np.stack([derivative for _, derivative in smoothed])
        scale = np.stack([rate_scale(zb, dzb, t[-1] - t[0]) for zb, dzb in zip(z, dz)])
        t_std = float(_nonzero(np.array(t.std(ddof=1))))
        stats = [ObservationStats(z_mean=zb.mean(0), z_std=_nonzero(zb.std(0, ddof=1)), t_mean=float(t.mean()),
                                  t_std=t_std, deriv_std=sb) for zb, sb in zip(z, scale)]
        as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        return cls(as_t(t), as_t(z), as_t(dz), as_t(scale)[:, None], stats)


def derivative_matching(field: VectorField, targets: CollocationTargets) -> Callable[[], torch.Tensor]:
    """losses() -> (B,): per model, the mean over samples i of sum_j ((f_j(t_i, z_i) - dz_ij) / s_j)^2,
    the field f evaluated in state coordinates at the smoothed states, s_j the state's `rate_scale`:
    every state weighs alike however many decades apart the states' rates lie."""

    def losses() -> torch.Tensor:
        f = field.evaluator(field.rollout_params(solver_coordinates=False))
        return ((f(targets.t, targets.z) - targets.dz) / targets.scale).square().sum(-1).mean(-1)

    return losses


class Collocation(NeuralODEMethod):
    """Two-stage collocation (Roesch, Rackauckas & Stumpf, Stat. Appl. Genet. Mol. Biol. 20(2):37, 2021,
    doi:10.1515/sagmb-2020-0025): each state smoothed by a local polynomial kernel smoother, with its
    time derivative (`KernelSmoother`: `bandwidth`, `degree`, `kernel`, `time_axis`); the neural ODE's
    batched field (normalised by the smoothed data's statistics when `normalise`) fitted by Adam to
    those derivatives (`derivative_matching`), one model per seed. No solver in training: `compile`
    does not apply and `max_steps` bounds the adaptive forecast's solves only. The forecast is the
    neural ODE's: `solver` (with `step`) from the initial state, NaN for a model whose training loss
    turned non-finite.
    """

    name = "collocation"
    citation = "Roesch, Rackauckas & Stumpf (2021), Stat. Appl. Genet. Mol. Biol. 20(2):37 (doi:10.1515/sagmb-2020-0025)"
    description = "Neural ODE fitted to derivatives of kernel-smoothed data (two-stage collocation); no solver in training."
    Params = CollocationParams
    requires = (FullyObserved,)
    member_fields = frozenset({"normalise", "bandwidth", "degree", "kernel", "time_axis"})

    @classmethod
    def objective(cls, members: Sequence[BatchMember], device: str, compile: bool, max_steps: int | None = None):
        """The members' untrained `VectorField`, their data, and losses() -> (B,), the derivative
        matching of stage 2 on stage 1's targets."""
        if len({cls(m.params).batch_key() for m in members}) != 1:
            raise ValueError(f"{cls.__name__}: the members' parameters differ beyond {sorted(cls.member_fields)}")
        p = members[0].params
        dtype, device = torch_dtype(p.dtype), torch.device(device)
        batch = TrainingBatch.of([m.task for m in members], dtype, device)
        targets = CollocationTargets.of([m.task.observations for m in members], [m.params.smoother() for m in members],
                                        dtype, device)
        identity = ObservationStats.identity(len(targets.stats[0].z_mean))
        stats = [s if m.params.normalise else identity for m, s in zip(members, targets.stats)]
        scales = batch.observed_max() if p.state_scale == "observed_max" else None
        field = VectorField(p, stats, [m.seed for m in members], device, scales)
        return field, batch, derivative_matching(field, targets)
