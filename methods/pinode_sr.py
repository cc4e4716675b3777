"""PI-NODE-SR: neural ODE with the scale-aware physics residual (paper eqs. 6-8)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat

from stiffbench.api import BatchMember, FullyObserved, KnownPhysics
from stiffbench.api import VectorField as VectorFieldFn

from ._neural_ode import NeuralODEMethod, NeuralODEParams, Penalty, TrainingBatch, require_physics


class PINODESRParams(NeuralODEParams):
    lam: NonNegativeFloat = Field(
        1.5,
        description="Weight lambda of the physics loss in L = L_data + lambda L_phys (eq. 6); "
        "1.5 is the best value in the paper's ablation (section 5.1).",
    )
    residual_points: Literal["observations", "trajectory"] = Field(
        "observations",
        description="Where the residual r_i = f_theta(z_i, t_i) - f_true(t_i, z_i) is evaluated: at the noisy "
        "observations (as the public reproduction does) or at the predicted trajectory states z_hat_i.",
    )


class PINODESR(NeuralODEMethod):
    """L = L_data + lam * (1/N) sum_i sum_j (r_ij / s_j)^2, s_j = std of the observed derivative of state j.

    Dividing each residual component by its own derivative scale keeps the slow, small gating
    derivatives from being swamped by the voltage's (section 3.4.2). Variants differing in lam
    (and normalise) train as one batch.
    """

    name = "pinode_sr"
    description = "Physics-informed neural ODE with scale-aware residuals (PI-NODE-SR, eq. 8)."
    Params = PINODESRParams
    requires = (KnownPhysics, FullyObserved)
    member_fields = frozenset({"normalise", "lam"})

    @classmethod
    def penalty(cls, members: Sequence[BatchMember], batch: TrainingBatch) -> Penalty:
        physics = [require_physics(m.task, cls.name) for m in members]
        t = batch.t
        lam = t.new_tensor([m.params.lam for m in members])
        s = t.new_tensor(np.array([st.deriv_std for st in batch.stats])).unsqueeze(1)

        def weighted(residual: torch.Tensor) -> torch.Tensor:
            return lam * residual.square().sum(-1).mean(-1)

        if members[0].params.residual_points == "observations":
            target = per_member(physics, t, batch.z).detach() / s
            return lambda f, z_hat: weighted(f(t, batch.z) / s - target)
        return lambda f, z_hat: weighted((f(t, z_hat) - per_member(physics, t, z_hat)) / s)


def per_member(fields: Sequence[VectorFieldFn], t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """fields[b](t, z[b]) stacked over b, calling each distinct field once on all its members' states."""
    groups: dict[int, list[int]] = {}
    for b, f in enumerate(fields):
        groups.setdefault(id(f), []).append(b)
    out: list[torch.Tensor | None] = [None] * len(fields)
    for rows in groups.values():
        for b, value in zip(rows, fields[rows[0]](t, z[rows])):
            out[b] = value
    return torch.stack(out)
