"""Batched networks: B independent models evaluated in one batched matrix product per layer.

`BatchedMLP` holds the parameters. `MLPLayers` with `mlp_forward` / `mlp_pullback` /
`mlp_weight_grads` is the same network as pure functions with a hand-written reverse pass: an ODE
rollout evaluates the network thousands of times on one sample per model, where recording an
autograd graph per evaluation costs more than the arithmetic (see `stiffbench.solvers.heun`).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import nn

aten = torch.ops.aten

LAYER_NORM_EPS = 1e-5

# Below this width a one-sample layer is written as multiply-and-sum, which the compiler fuses
# with its neighbours, instead of a batched GEMM call whose fixed cost then dominates.
_NARROW = 16


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
        layers = MLPLayers(tuple(weights_t), None, tuple(biases), self.layer_norm)
        h = mlp_forward(layers, h, biases[0])[0]
        return h.squeeze(1) if single else h


# ----------------------------------------------------------------------------------------------
# The folded network as pure functions, with a hand-written reverse pass
# ----------------------------------------------------------------------------------------------

class MLPLayers(NamedTuple):
    """Folded linear layers of B tanh MLPs (LayerNorm without affine after each hidden tanh).

    w    : (B, in, out) per layer
    w_t  : the same transposed, (B, out, in), contiguous; read by one-sample evaluations (inputs
           of shape (B, 1, in)) and their pullback; None: transposed on the fly
    b    : (B, 1, out) per layer; `mlp_forward` takes the first layer's bias as an argument instead
    """

    w: tuple[torch.Tensor, ...]
    w_t: tuple[torch.Tensor, ...] | None
    b: tuple[torch.Tensor, ...]
    layer_norm: bool

    @classmethod
    def of(cls, w: Sequence[torch.Tensor], b: Sequence[torch.Tensor], layer_norm: bool) -> "MLPLayers":
        """Layers with contiguous transposes, for many one-sample evaluations."""
        w = tuple(w)
        return cls(w, tuple(x.transpose(1, 2).contiguous() for x in w), tuple(b), layer_norm)

    def transposed(self, i: int) -> torch.Tensor:
        return self.w[i].transpose(1, 2) if self.w_t is None else self.w_t[i]


def _linear(x: torch.Tensor, w: torch.Tensor, w_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """bias + x @ w for x (B, M, p), w (B, p, q), w_t = w^T.

    A one-sample product (M = 1) with a narrow side is a short multiply-and-sum along contiguous
    memory (w's rows when p is narrow, w_t's when q is); everything else is one batched GEMM
    (baddbmm even without a bias: the compiler would turn a one-row bmm into a slow reduction loop).
    """
    if x.shape[1] == 1 and min(w.shape[1:]) < _NARROW:
        y = (x.transpose(1, 2) * w).sum(1, keepdim=True) if w.shape[1] < _NARROW else (x * w_t).sum(-1).unsqueeze(1)
        return y if bias is None else y + bias
    return torch.baddbmm(x.new_zeros(()) if bias is None else bias, x, w)


def mlp_forward(
    layers: MLPLayers, x: torch.Tensor, first_bias: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The network on x (B, M, in) -> (B, M, out), and what `mlp_pullback` needs.

    Residuals: x, then per hidden layer its tanh output u, its LayerNorm statistics over the
    features (mean, rstd) and normalised output v (the next layer's input); without LayerNorm
    only u (= v).
    """
    a = _linear(x, layers.w[0], layers.transposed(0), first_bias)
    residuals = [x]
    for i in range(1, len(layers.w)):
        u = torch.tanh(a)
        if layers.layer_norm:
            v, mean, rstd = torch.native_layer_norm(u, u.shape[-1:], None, None, LAYER_NORM_EPS)
            residuals += [u, mean, rstd, v]
        else:
            v = u
            residuals.append(u)
        a = _linear(v, layers.w[i], layers.transposed(i), layers.b[i])
    return a, tuple(residuals)


def _per_hidden(layers: MLPLayers) -> int:
    """Residuals per hidden layer in `mlp_forward`'s layout: (u, mean, rstd, v), or (u,)."""
    return 4 if layers.layer_norm else 1


def mlp_layer_inputs(layers: MLPLayers, residuals: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Each layer's input (x, then every hidden layer's output) from `mlp_forward`'s residuals."""
    return residuals[:: _per_hidden(layers)]


def mlp_pullback(
    layers: MLPLayers, residuals: tuple[torch.Tensor, ...], g: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Reverse pass of a one-sample `mlp_forward` for the output cotangent g (B, 1, out).

    Returns (dL/dx, deltas) where deltas[i] = dL/d(pre-activation of layer i), shape (B, 1, out_i),
    which is also the gradient of layer i's bias. The same arithmetic as autograd's, reordered.
    """
    deltas = [g]
    d = g
    k = _per_hidden(layers)
    for i in range(len(layers.w) - 1, 0, -1):
        dv = _linear(d, layers.transposed(i), layers.w[i])
        u, *stats = residuals[1 + k * (i - 1) : 1 + k * i]
        if layers.layer_norm:
            mean, rstd, _ = stats
            dv = aten.native_layer_norm_backward(dv, u, u.shape[-1:], mean, rstd, None, None, [True, False, False])[0]
        d = aten.tanh_backward(dv, u)
        deltas.append(d)
    return _linear(d, layers.transposed(0), layers.w[0]), tuple(reversed(deltas))


def mlp_jet(
    layers: MLPLayers, x: torch.Tensor, first_bias: torch.Tensor, tangents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network on x (B, M, in) and its directional derivatives along tangents given as their
    first-layer pre-activations (the rows of w_0 for unit directions), broadcasting against the
    samples: K directions at one sample, x (B, 1, in) with tangents (B, K, H_1); one direction
    per sample, tangents (B, M, H_1); or the same K directions at each of M samples, tangents
    (B, 1, K, H_1). Returns (out (B, M, out), d_out (B, K or M, out), or (B, M, K, out)).

    Forward mode, written out: tanh' = 1 - u^2 and LayerNorm's derivative without affine,
    dv = rstd (du - mean(du) - v mean(v du)); each layer then maps the tangents with one batched
    GEMM, so a full Jacobian costs about one extra evaluation on K samples. Plain tensor operations:
    differentiable by autograd (second derivatives, for the parameter gradient of a Rosenbrock step
    or a PINN's residual). The LayerNorm statistics are computed here with plain operations too:
    torch.native_layer_norm's mean and rstd outputs are not differentiable, so a tangent built from
    its rstd silently loses rstd's dependence on the parameters (0.015-0.05 % off per parameter
    tensor in the Rodas5P gradient of the paper's trained network when computed that way).
    """
    per_sample = tangents.dim() == 4  # K directions at each sample: sample quantities get a K axis
    at_samples = (lambda z: z.unsqueeze(-2)) if per_sample else (lambda z: z)  # noqa: E731
    a = _linear(x, layers.w[0], layers.transposed(0), first_bias)
    da = tangents
    for i in range(1, len(layers.w)):
        u = torch.tanh(a)
        du = (1 - at_samples(u).square()) * da
        if layers.layer_norm:
            centred = u - u.mean(-1, keepdim=True)
            rstd = torch.rsqrt(centred.square().mean(-1, keepdim=True) + LAYER_NORM_EPS)
            v = centred * rstd
            v_k = at_samples(v)
            du = at_samples(rstd) * (du - du.mean(-1, keepdim=True) - v_k * (v_k * du).mean(-1, keepdim=True))
            u = v
        a = _linear(u, layers.w[i], layers.transposed(i), layers.b[i])
        if per_sample:
            da = torch.bmm(du.flatten(1, 2), layers.w[i]).unflatten(1, du.shape[1:3])
        else:
            da = torch.bmm(du, layers.w[i])
    return a, da


def mlp_weight_grads(inputs: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Weight gradients sum_e input_e^T delta_e of every layer from the layers' inputs and deltas
    over E evaluations, (B, E, in_i) and (B, E, out_i); one batched GEMM per layer."""
    return tuple(torch.bmm(x.transpose(1, 2), d) for x, d in zip(inputs, deltas))


class TimeMLPField(NamedTuple):
    """dy/dt = MLP([y - z_shift; t - t_shift]) of B models as an `AdjointField` for `heun_adjoint_rollout`.

    params: (w_0, ..., w_L, b_0, ..., b_L, w_time, z_shift, t_shift) with folded layers w_i
    (B, in, out), b_i (B, 1, out) as from `BatchedMLP.folded_layers`, except that w_0 (B, n, H)
    lacks the time input, whose weights are w_time (B, 1, H). The shifts z_shift (B, 1, n) and
    t_shift (B, 1, 1) are constants (no gradient): centring the inputs before the first layer,
    rather than folding the shift into its bias, keeps the float32 weight gradients as accurate as
    those of the unfolded network when the data vary little about their mean.
    """

    layer_norm: bool

    def prepare(self, params: tuple[torch.Tensor, ...]):
        n = (len(params) - 3) // 2
        return MLPLayers.of(params[:n], params[n : 2 * n], self.layer_norm), *params[2 * n :]

    def evaluate(self, net, t, y):
        layers, w_time, z_shift, t_shift = net
        return mlp_forward(layers, y - z_shift, time_bias(layers.b[0], w_time, t, t_shift))

    def pullback(self, net, residuals, g):
        """Cotangents: every layer's input and delta, for `param_grads`."""
        dy, deltas = mlp_pullback(net[0], residuals, g)
        return dy, (*mlp_layer_inputs(net[0], residuals), *deltas)

    def jet(self, net, t, y, per_sample: bool = False):
        """(dy/dt (B, 1, n), J = d(dy/dt)/dy (B, n, n), d(dy/dt)/dt (B, n)) at one sample per model
        y (B, 1, n), forward mode (`mlp_jet`) along the n state directions and time. per_sample: at
        each of M samples y (B, M, n), with t (B, M, 1): dy/dt (B, M, n), J (B, M, n, n) and
        d(dy/dt)/dt (B, M, n)."""
        layers, w_time, z_shift, t_shift = net
        n = y.shape[-1]
        tangents = torch.cat([layers.w[0], w_time.expand(-1, 1, -1)], 1)
        if per_sample:
            tangents = tangents.unsqueeze(1)
        out, d_out = mlp_jet(layers, y - z_shift, time_bias(layers.b[0], w_time, t, t_shift), tangents)
        return out, d_out[..., :n, :].transpose(-1, -2), d_out[..., n, :]

    def param_grads(self, net, times, cotangents):
        layers, _, _, t_shift = net
        inputs, deltas = cotangents[: len(layers.w)], cotangents[len(layers.w) :]
        b_grads = tuple(d.sum(1, keepdim=True) for d in deltas)
        t_grad = (deltas[0] * (times.reshape(1, -1, 1) - t_shift)).sum(1, keepdim=True)
        return (*mlp_weight_grads(inputs, deltas), *b_grads, t_grad, None, None)


def time_bias(b: torch.Tensor, w_time: torch.Tensor, t, t_shift: torch.Tensor) -> torch.Tensor:
    """b + (t - t_shift) w_time for b, w_time (B, 1, H), t_shift (B, 1, 1) and t a float or a 0-d
    tensor -> (B, 1, H), times (M,) -> (B, M, H), one time per model (B, 1) -> (B, 1, H), or one
    per sample (B, M, 1) -> (B, M, H)."""
    if isinstance(t, torch.Tensor) and t.dim() < 3:
        t = t.unsqueeze(-1) if t.dim() == 2 else t.reshape(-1, 1)
    return b + (t - t_shift) * w_time
