"""Vanilla neural ODE: the paper's data-only baseline (section 3.6), trained on eq. 7 alone."""

from __future__ import annotations

from stiffbench.api import FullyObserved

from ._neural_ode import NeuralODEMethod, NeuralODEParams


class VanillaNODE(NeuralODEMethod):
    """dz/dt = f_theta(z, t) fitted to the observations through a rollout of its solver; no physics."""

    name = "vanilla_node"
    description = "Neural ODE f_theta(z, t) trained on the data loss only (ODE-solver rollout, Adam)."
    Params = NeuralODEParams
    requires = (FullyObserved,)
