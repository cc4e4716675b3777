"""PI-NODE-SR: neural ODE with the scale-aware physics residual (paper eqs. 6-8)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat

from stiffbench.api import KnownPhysics, TrainingTask

from ._neural_ode import NeuralODEMethod, NeuralODEParams, Penalty, TrainingData, require_physics


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
    derivatives from being swamped by the voltage's (section 3.4.2).
    """

    name = "pinode_sr"
    description = "Physics-informed neural ODE with scale-aware residuals (PI-NODE-SR, eq. 8)."
    Params = PINODESRParams
    requires = (KnownPhysics,)

    def penalty(self, task: TrainingTask, data: TrainingData) -> Penalty:
        physics = require_physics(task, self.name)
        lam, t = self.params.lam, data.t
        s = data.z.new_tensor(data.stats.deriv_std)

        if self.params.residual_points == "observations":
            target = physics(t, data.z).detach() / s

            def residual_loss(f, z_hat):
                z = data.z.expand(z_hat.shape[0], -1, -1)
                return lam * (f(t, z) / s - target).square().sum(-1).mean(-1)
        else:

            def residual_loss(f, z_hat):
                return lam * ((f(t, z_hat) - physics(t, z_hat)) / s).square().sum(-1).mean(-1)

        return residual_loss
