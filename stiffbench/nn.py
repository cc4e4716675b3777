"""Batched networks: B independent models evaluated in one batched matrix product per layer."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BatchedMLP(nn.Module):
    """B independent tanh MLPs with stacked parameters (weights (B, out, in), biases (B, out)).

    sizes      : layer widths [in, *hidden, out]; tanh on every hidden layer, linear output.
    seeds      : one seed per model; model b is initialised from `torch.Generator().manual_seed(seeds[b])`
                 alone, so its initial weights do not depend on the batch it is in. Weights and biases
                 are drawn from nn.Linear's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), in float64
                 and then cast, so float32 and float64 models start from the same (rounded) weights.
    layer_norm : if True, LayerNorm after each hidden activation (normalisation over the features,
                 eps 1e-5, then a per-model elementwise weight (init 1) and bias (init 0)), as
                 nn.LayerNorm does for a single model.

    Because every operation acts on one model's slice only, each model's outputs and gradients are
    those it would have alone, and a model that goes non-finite leaves the others untouched.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        seeds: Sequence[int],
        layer_norm: bool = False,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive widths, got {list(sizes)}")
        if len(seeds) < 1:
            raise ValueError("at least one seed is needed")
        self.sizes = tuple(int(s) for s in sizes)
        self.n_models = len(seeds)
        self.layer_norm = layer_norm
        per_model = [self._init_one(int(seed)) for seed in seeds]
        factory = dict(dtype=dtype, device=device)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([m[i][0] for m in per_model]).to(**factory)) for i in range(len(self.sizes) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([m[i][1] for m in per_model]).to(**factory)) for i in range(len(self.sizes) - 1)
        )
        hidden = self.sizes[1:-1] if layer_norm else ()
        self.norm_weights = nn.ParameterList(nn.Parameter(torch.ones(self.n_models, w, **factory)) for w in hidden)
        self.norm_biases = nn.ParameterList(nn.Parameter(torch.zeros(self.n_models, w, **factory)) for w in hidden)

    def _init_one(self, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        layers = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(fan_out, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            b = (torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            layers.append((w, b))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, in) -> (B, N, out), or (B, in) -> (B, out)."""
        return self.evaluate(x, *self.folded_layers())

    def folded_layers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The linear layers as (weights_t (B, in, out), biases (B, 1, out)), each LayerNorm's affine
        (gamma, beta) folded into the next layer: W diag(gamma), b + W beta.

        The fold is differentiable, so gradients reach the raw parameters unchanged (up to rounding);
        a caller that evaluates the network many times (an ODE rollout) folds once and saves the
        per-evaluation affine op and its backward.
        """
        weights_t = [w.transpose(1, 2) for w in self.weights]
        biases = [b.unsqueeze(1) for b in self.biases]
        for i, (gamma, beta) in enumerate(zip(self.norm_weights, self.norm_biases)):
            biases[i + 1] = torch.baddbmm(biases[i + 1], beta.unsqueeze(1), weights_t[i + 1])
            weights_t[i + 1] = gamma.unsqueeze(-1) * weights_t[i + 1]
        return [w.contiguous() for w in weights_t], biases

    def evaluate(
        self, x: torch.Tensor, weights_t: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The network with given linear layers (from `folded_layers`, possibly further folded with
        fixed input/output affine maps by the caller): weights_t[i] (B, in, out), biases[i]
        broadcastable to (B, N, out). x: (B, N, in) -> (B, N, out), or (B, in) -> (B, out)."""
        single = x.dim() == 2
        h = x.unsqueeze(1) if single else x
        last = len(weights_t) - 1
        for i, (w, b) in enumerate(zip(weights_t, biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.tanh(h)
                if self.layer_norm:
                    h = F.layer_norm(h, h.shape[-1:])
        return h.squeeze(1) if single else h
