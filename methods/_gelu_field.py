"""A batched GELU MLP of B models and the stiff neural ODE's scaled vector field built on it.

`stiffbench.nn` writes its forward-mode jets for tanh; this network is GELU (Kim et al. 2021), so it
has its own plain-tensor forward pass and jet: every operation is elementary, hence differentiable
by autograd, by `torch.func` (Rodas5P's reverse-mode Jacobian in the forecast) and by forward mode
(the batched discrete adjoint linearises the Rodas5P step, jet included).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU in its tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): Flux/NNlib's `gelu`,
    which the paper's networks use (torch's gelu(approximate='tanh'), written out so that every
    derivative order is plain tensor arithmetic)."""
    return 0.5 * x * (1 + torch.tanh(_GELU_C * (x + _GELU_A * x * x * x)))


def gelu_slope(x: torch.Tensor) -> torch.Tensor:
    """d gelu / dx = 0.5 (1 + th) + 0.5 x (1 - th^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), th the tanh above."""
    th = torch.tanh(_GELU_C * (x + _GELU_A * x * x * x))
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * _GELU_C * (1 + 3 * _GELU_A * x * x)


def glorot_layers(sizes: Sequence[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One model's (weight (in, out), bias (out,)) per layer, float64: weights Glorot-uniform
    U(-sqrt(6 / (in + out)), +sqrt(6 / (in + out))), biases zero (Flux's `Dense` default, the paper's),
    drawn from `torch.Generator().manual_seed(seed)` alone, so a model's start does not depend on its batch."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        layers.append((w, torch.zeros(fan_out, dtype=torch.float64)))
    return layers


def mlp(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """B GELU MLPs on x (B, M, in) -> (B, M, out); params = (w_0..w_L (B, in, out), b_0..b_L (B, 1, out)),
    GELU after every layer but the last. One batched product per layer."""
    depth = len(params) // 2
    h = x
    for i in range(depth):
        h = torch.baddbmm(params[depth + i], h, params[i])
        if i < depth - 1:
            h = gelu(h)
    return h


def mlp_jet(params: Sequence[torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`mlp` on x (B, M, in) and its Jacobian (B, M, out, in), by forward mode along the in unit
    directions: each layer maps the tangents (B, M, in, width) with the same weights, so the
    Jacobian costs about one evaluation on in times as many rows."""
    depth = len(params) // 2
    h = torch.baddbmm(params[depth], x, params[0])
    dh = params[0].unsqueeze(1).expand(-1, x.shape[1], -1, -1)  # (B, M, in, H_1): d h / d x_k, row k
    for i in range(1, depth):
        dh = gelu_slope(h).unsqueeze(-2) * dh
        h = torch.baddbmm(params[depth + i], gelu(h), params[i])
        dh = torch.matmul(dh, params[i].unsqueeze(1))
    return h, dh.transpose(-1, -2)


class ScaledGELUField(nn.Module):
    """Kim et al.'s scaled field dy/dt = NN(y / y_scale) * y_scale / t_scale of B models, integrated in
    the scaled coordinates u = y / y_scale, where it reads du/dt = NN(u) / t_scale: the same ODE, with
    every state O(1) for the solver's tolerances. 1 / t_scale is folded into the last layer.

    Offers what `NeuralODEModel` reads of a field (`rollout_params`, `evaluator`, `to_solver`,
    `from_solver`), so the forecast is the neural ODEs' own, and Rodas5P's `jet`.
    """

    def __init__(self, hidden: Sequence[int], y_scale: np.ndarray, t_scale: float, seeds: Sequence[int], device):
        super().__init__()
        n = y_scale.shape[-1]
        sizes = [n, *hidden, n]
        per_model = [glorot_layers(sizes, int(seed)) for seed in seeds]
        as_t = lambda x: torch.as_tensor(x, dtype=torch.float64, device=device)  # noqa: E731
        self.weights = nn.ParameterList(nn.Parameter(as_t(torch.stack([m[i][0] for m in per_model])))
                                        for i in range(len(sizes) - 1))
        self.biases = nn.ParameterList(nn.Parameter(as_t(torch.stack([m[i][1] for m in per_model])).unsqueeze(1))
                                       for i in range(len(sizes) - 1))
        self.register_buffer("y_scale", as_t(y_scale))  # (B, n)
        self.t_scale = float(t_scale)

    def to_solver(self, y: torch.Tensor) -> torch.Tensor:
        """States (B, ..., n) to scaled coordinates u = y / y_scale."""
        return y / self.y_scale.reshape(len(y), *[1] * (y.dim() - 2), -1)

    def from_solver(self, u: torch.Tensor) -> torch.Tensor:
        """Scaled coordinates (B, ..., n) back to states."""
        return u * self.y_scale.reshape(len(u), *[1] * (u.dim() - 2), -1)

    def rollout_params(self) -> tuple[torch.Tensor, ...]:
        """(w_0..w_L, b_0..b_L) of du/dt = NN(u) / t_scale, the last layer divided by t_scale."""
        ws, bs = list(self.weights), list(self.biases)
        return (*ws[:-1], ws[-1] / self.t_scale, *bs[:-1], bs[-1] / self.t_scale)

    @staticmethod
    def evaluator(params: tuple[torch.Tensor, ...]):
        """f(t, u) = du/dt with the given `rollout_params`, for u (B, n) or (B, M, n); autonomous, t unused."""

        def f(t, u):
            return mlp(params, u.unsqueeze(1)).squeeze(1) if u.dim() == 2 else mlp(params, u)

        return f

    @staticmethod
    def jet(params: tuple[torch.Tensor, ...]):
        """(f, J, f_t)(t, u) for Rodas5P at u (B, n) or (B, M, n) by `mlp_jet`; f_t = 0 (autonomous)."""

        def jet(t, u):
            if u.dim() == 2:
                out, J = mlp_jet(params, u.unsqueeze(1))
                return out.squeeze(1), J.squeeze(1), torch.zeros_like(u)
            out, J = mlp_jet(params, u)
            return out, J, torch.zeros_like(u)

        return jet
