"""Stiff neural ODE (Kim et al. 2021): a GELU network whose output is scaled per state by y_scale / t_scale,
trained through a stiff solver on the mean absolute error of the scaled states.

Without the scaling a network of O(1) outputs cannot express rates that differ by decades between
states and from the time scale of the data (ROBER: y2 ~ 1e-5 beside y1, y3 ~ 1, over 1e-5..1e5 s),
and a loss in raw units ignores the small states. Dividing each state by its scale and the time by
the window's length makes every state and the whole window O(1) for the network and the loss.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt

from stiffbench.api import AbstractMethod, BatchMember, FitConfig, FullyObserved, PluginParams, TrainingTask
from stiffbench.solvers.batched_adjoint import solve_independent_adjoint
from stiffbench.solvers.rodas5p import Rodas5P

from ._gelu_field import ScaledGELUField
from ._neural_ode import NeuralODEModel, TrainingBatch, _nonzero, train


class StiffNODEParams(PluginParams):
    """Network, optimiser, scaling and solver tolerances; the defaults are the paper's ROBER set-up
    where it states them."""

    hidden: tuple[PositiveInt, ...] = Field(
        (5, 5, 5, 5, 5, 5), min_length=1,
        description="Hidden-layer widths of the GELU MLP: the paper's ROBER network, 6 hidden layers of 5 units "
        "(its POLLU network: 3 of 10).",
    )
    lr: PositiveFloat = Field(
        5e-3, description="Adam learning rate, the paper's (its AdamW's decay of 1e-6 per step is left out: over "
        "1000 epochs it shrinks the weights by 0.1 %); full batch, one step per epoch."
    )
    y_scale: Literal["max", "range"] = Field(
        "max", description="Each state's scale y_scale, from the training observations: 'max', its largest "
        "|value| (the paper's ROBER); 'range', max - min (the paper's POLLU). A state observed constant (scale "
        "0) gets 1."
    )
    rtol: PositiveFloat = Field(
        1e-4, description="Relative tolerance of Rodas5P, in training and forecast, on the scaled states y / y_scale "
        "(the paper's solver runs at OrdinaryDiffEq's default rtol 1e-3); its error stays well below the paper's "
        "fit level of 5e-3 in scaled MAE."
    )
    atol: PositiveFloat = Field(
        1e-7, description="Absolute tolerance of Rodas5P on the scaled states y / y_scale, i.e. atol x y_scale in "
        "each state's units."
    )
    max_steps: PositiveInt = Field(
        10_000, description="Attempted steps (accepted plus rejected) allowed to one Rodas5P solve: a training "
        "solve past it raises StepLimitExceeded (status timeout), a forecast is NaN from the chunk that runs out "
        "(the suite's max_solver_steps applies where smaller). A field whose forecast overflows drives the step "
        "to 0 and is rejected until this budget is spent, so it bounds the cost of every diverging forecast."
    )

    @property
    def solver(self) -> str:
        """The training and forecast solver (what `NeuralODEModel` reads): always Rodas5P."""
        return "rodas5p"


def state_scales(y: np.ndarray, mode: str) -> np.ndarray:
    """Per state of observations y (N, n): max |y| ('max') or max - min ('range'), 1 where that is 0."""
    scale = np.abs(y).max(0) if mode == "max" else y.max(0) - y.min(0)
    return _nonzero(scale)


class StiffNODE(AbstractMethod):
    """Stiff neural ODE (Kim, Ji, Deng, Ma & Rackauckas, "Stiff neural ordinary differential equations",
    Chaos 31:093122, 2021): dy/dt = NN(y / y_scale) * y_scale / t_scale with NN a GELU MLP (`hidden`),
    y_scale per state from the observations (`y_scale`), t_scale the training window's span from the
    initial time to the last observation (the paper's t_end for a window starting at 0). Loss per
    model: the mean absolute error of y / y_scale over the observation times and states (the paper's
    MAE on scaled states). Trained by Adam (`lr`) through Rodas5P (a stiff Rosenbrock method, standing
    in for the paper's Tsit5/Rosenbrock23 switch) with each model's own step-size control, the gradient
    by the batched discrete adjoint (`solve_independent_adjoint`); one model per seed, all seeds one
    batch. float64 throughout (Rodas5P's stages need it). The forecast is the neural ODEs'
    (`NeuralODEModel`): Rodas5P from the initial state, NaN from a failed solve on and for a model
    whose training loss turned non-finite.
    """

    name = "stiff_node"
    citation = "Kim, Ji, Deng, Ma & Rackauckas (2021), Chaos 31:093122 (doi:10.1063/5.0060697)"
    description = "Stiff neural ODE: GELU MLP with outputs scaled by y_scale / t_end, MAE on scaled states, Rodas5P."
    Params = StiffNODEParams
    requires = (FullyObserved,)
    batches_seeds = True

    def batch_key(self) -> tuple[str, str, str]:
        """Variants differing only in `y_scale` (a per-model buffer) train as one batch."""
        return (type(self).__module__, type(self).__qualname__, self.params.model_dump_json(exclude={"y_scale"}))

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> NeuralODEModel:
        return self.fit_batch([BatchMember(self.params, task, seed) for seed in seeds], config)

    @classmethod
    def fit_batch(cls, members: Sequence[BatchMember], config: FitConfig) -> NeuralODEModel:
        p = members[0].params
        max_steps = p.max_steps if config.max_steps is None else min(p.max_steps, config.max_steps)
        field, batch, losses = cls.objective(members, config.device, max_steps)
        history = train(field, losses, len(members), p.lr, config)
        return NeuralODEModel(field, batch.y0, batch.t0, history, p, max_steps)

    @classmethod
    def objective(cls, members: Sequence[BatchMember], device: str, max_steps: int):
        """The members' untrained `ScaledGELUField`, their data, and losses() -> (B,), each model's MAE
        on the scaled states at the observation times; `max_steps` per training solve."""
        if len({cls(m.params).batch_key() for m in members}) != 1:
            raise ValueError(f"{cls.__name__}: the members' parameters differ beyond y_scale")
        p = members[0].params
        batch = TrainingBatch.of([m.task for m in members], torch.float64, torch.device(device))
        observed = batch.z.to("cpu").numpy()
        y_scale = np.stack([state_scales(z, m.params.y_scale) for z, m in zip(observed, members)])
        field = ScaledGELUField(p.hidden, y_scale, batch.times[-1] - batch.t0, [m.seed for m in members], device)
        u0, target = field.to_solver(batch.y0), field.to_solver(batch.z)

        def build(params: tuple[torch.Tensor, ...]):
            return Rodas5P(jet=field.jet(params)), field.evaluator(params)

        def losses() -> torch.Tensor:
            u = solve_independent_adjoint(build, field.rollout_params(), u0, batch.times, rtol=p.rtol, atol=p.atol,
                                          max_steps=max_steps)
            return (u.transpose(0, 1)[:, batch.skip:] - target).abs().mean((1, 2))

        return field, batch, losses
