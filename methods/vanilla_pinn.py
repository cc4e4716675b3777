"""Vanilla PINN: the paper's physics-informed baseline (section 3.6) -- a network t -> z(t) fitted to
the observations and to the unweighted ODE residual dz/dt - f(t, z) (no scale-aware normalisation)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat
from torch import nn

from stiffbench.api import AbstractMethod, AbstractModel, FitConfig, FullyObserved, KnownPhysics, TrainingTask
from stiffbench.nn import BatchedMLP, MLPLayers, mlp_jet

from ._neural_ode import NetworkParams, ObservationStats, data_loss, require_physics, torch_dtype, train

FORECAST_CHUNK = 8192


class VanillaPINNParams(NetworkParams):
    normalise: bool = Field(
        True,
        description="Input (t - mean_t) / std_t of the training times; output z = mean_z + std_z * out with the "
        "training observations' per-channel mean/std; False: raw t in, raw z out.",
    )
    lam: NonNegativeFloat = Field(1.0, description="Weight of the residual loss: L = L_data + lam * L_res.")
    collocation: Literal["observations", "uniform"] = Field(
        "observations",
        description="Collocation points of the residual: the observation times, or a fixed uniform grid of "
        "n_collocation points over the training window.",
    )
    n_collocation: int = Field(2000, ge=2, description="Number of uniform collocation points (collocation='uniform').")


class TimeNet(nn.Module):
    """z(t) of B models: BatchedMLP([1, *hidden, n]) with normalised input and output."""

    def __init__(self, params: VanillaPINNParams, stats: ObservationStats, seeds: Sequence[int], device):
        super().__init__()
        n = len(stats.z_mean)
        dtype = torch_dtype(params.dtype)
        self.mlp = BatchedMLP([1, *params.hidden, n], seeds, params.layer_norm, dtype, device)
        norm = params.normalise
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype, device=device)  # noqa: E731
        self.register_buffer("t_mean", as_t(stats.t_mean if norm else 0.0))
        self.register_buffer("t_std", as_t(stats.t_std if norm else 1.0))
        self.register_buffer("z_mean", as_t(stats.z_mean if norm else np.zeros(n)))
        self.register_buffer("z_std", as_t(stats.z_std if norm else np.ones(n)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B, M) -> z (B, M, n)."""
        return self.z_mean + self.z_std * self.mlp(((t - self.t_mean) / self.t_std).unsqueeze(-1))

    def with_derivative(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z(t) and dz/dt, t (M,) -> (B, M, n) each, differentiable in the parameters (for the residual loss).

        Forward mode, written out (`mlp_jet`): each z[b, k] depends on t[b, k] only, so one tangent
        per sample, the first layer's time column, gives every derivative at about the cost of one
        more evaluation; n reverse-mode passes with create_graph cost about 3x more per epoch.
        Plain tensor operations, so autograd's parameter gradient through it is exact (tested);
        torch.func.jvp's is not here: its LayerNorm tangent does not backpropagate correctly.
        """
        x = ((t.expand(self.mlp.n_models, -1) - self.t_mean) / self.t_std).unsqueeze(-1)
        weights_t, biases = self.mlp.folded_layers()
        layers = MLPLayers(tuple(weights_t), None, tuple(biases), self.mlp.layer_norm)
        tangents = (weights_t[0] / self.t_std).expand(-1, x.shape[1], -1)
        out, d_out = mlp_jet(layers, x, biases[0], tangents)
        return self.z_mean + self.z_std * out, self.z_std * d_out


class VanillaPINN(AbstractMethod):
    """L = L_data (eq. 7) + lam * (1/M) sum_k sum_j r_kj^2, r = dz/dt - f_true(t, z(t)) at M collocation points."""

    name = "vanilla_pinn"
    description = "PINN t -> z(t) trained on the data loss plus the unweighted ODE residual."
    Params = VanillaPINNParams
    batches_seeds = True
    requires = (KnownPhysics, FullyObserved)

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> "PINNModel":
        p = self.params
        physics = require_physics(task, self.name)
        device, dtype = torch.device(config.device), torch_dtype(p.dtype)
        obs = task.observations
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype, device=device)  # noqa: E731
        t_obs, z_obs = as_t(obs.t), as_t(obs.y)
        stats = ObservationStats.of(obs)
        net = TimeNet(p, stats, seeds, device)
        obs_std = as_t(stats.z_std)
        on_obs = p.collocation == "observations"
        t_col = t_obs if on_obs else as_t(np.linspace(obs.t[0], obs.t[-1], p.n_collocation))

        def losses() -> torch.Tensor:
            z, dz = net.with_derivative(t_col)
            residual = dz - physics(t_col, z)
            fit_z = z if on_obs else net(t_obs.expand(len(seeds), -1))
            return data_loss(fit_z, z_obs, p.data_loss, obs_std) + p.lam * residual.square().sum(-1).mean(-1)

        history = train(net, losses, len(seeds), p.lr, config)
        return PINNModel(net, history)


class PINNModel(AbstractModel):
    """Trained PINNs; the forecast is the network evaluated at the forecast times (any grid).

    loss_history : (epochs run, n_seeds); a model whose loss was ever non-finite forecasts NaN.
    """

    def __init__(self, net: TimeNet, loss_history: np.ndarray):
        self.net = net.eval().requires_grad_(False)
        self.loss_history = loss_history
        self.diverged = ~np.isfinite(loss_history).all(axis=0)

    def forecast(self, t: np.ndarray) -> np.ndarray:
        like = self.net.z_mean
        t = torch.as_tensor(np.asarray(t, np.float64), dtype=like.dtype, device=like.device)
        chunks = [self.net(c.expand(self.net.mlp.n_models, -1)) for c in t.split(FORECAST_CHUNK)]
        out = torch.cat(chunks, dim=1).to("cpu", torch.float64).numpy().copy()
        out[self.diverged] = np.nan
        return out
