"""BatchedMLP: shapes, per-seed initialisation, equality with a reference nn.Sequential; the
functional network's hand-written reverse pass against autograd."""

import math

import pytest
import torch
from torch import nn

from stiffbench.nn import (
    BatchedMLP,
    MLPLayers,
    TimeMLPField,
    mlp_forward,
    mlp_layer_inputs,
    mlp_pullback,
    mlp_weight_grads,
)

SIZES = [3, 5, 7, 2]


@pytest.mark.parametrize("layer_norm", [False, True])
def test_shapes(layer_norm):
    mlp = BatchedMLP(SIZES, seeds=[0, 1, 2, 3], layer_norm=layer_norm)
    assert mlp(torch.randn(4, 6, 3)).shape == (4, 6, 2)
    assert mlp(torch.randn(4, 3)).shape == (4, 2)
    assert mlp.weights[1].shape == (4, 7, 5) and mlp.biases[1].shape == (4, 7)
    assert len(mlp.norm_weights) == (2 if layer_norm else 0)


def test_model_init_depends_only_on_its_seed():
    seeds = [4, 9, 11]
    batched = BatchedMLP(SIZES, seeds, layer_norm=True, dtype=torch.float64)
    for b, seed in enumerate(seeds):
        alone = BatchedMLP(SIZES, [seed], layer_norm=True, dtype=torch.float64)
        for p_batched, p_alone in zip(batched.parameters(), alone.parameters()):
            assert torch.equal(p_batched[b], p_alone[0])
    assert not torch.equal(batched.weights[0][0], batched.weights[0][1])


def test_init_distribution_and_dtype():
    mlp64 = BatchedMLP([400, 300, 1], [7], dtype=torch.float64)
    mlp32 = BatchedMLP([400, 300, 1], [7], dtype=torch.float32)
    w = mlp64.weights[0]
    bound = 1 / math.sqrt(400)
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert abs(w.mean()) < 0.01 * bound and abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert mlp32.weights[0].dtype == torch.float32
    assert torch.equal(mlp32.weights[0], w.float())


def _reference(mlp: BatchedMLP, b: int) -> nn.Sequential:
    layers = []
    for i, (w, bias) in enumerate(zip(mlp.weights, mlp.biases)):
        lin = nn.Linear(w.shape[2], w.shape[1], dtype=w.dtype)
        lin.weight.data.copy_(w[b])
        lin.bias.data.copy_(bias[b])
        layers.append(lin)
        if i < len(mlp.weights) - 1:
            layers.append(nn.Tanh())
            if mlp.layer_norm:
                ln = nn.LayerNorm(w.shape[1], dtype=w.dtype)
                ln.weight.data.copy_(mlp.norm_weights[i][b])
                ln.bias.data.copy_(mlp.norm_biases[i][b])
                layers.append(ln)
    return nn.Sequential(*layers)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_matches_reference_sequential(layer_norm):
    mlp = BatchedMLP(SIZES, [0, 1, 2], layer_norm=layer_norm, dtype=torch.float64)
    with torch.no_grad():  # non-trivial LayerNorm affines, so the fold into the next layer is exercised
        for p in [*mlp.norm_weights, *mlp.norm_biases]:
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    out = mlp(x)
    for b in range(3):
        torch.testing.assert_close(out[b], _reference(mlp, b)(x[b]), rtol=1e-12, atol=1e-12)


def test_gradients_equal_separate_models():
    seeds = [3, 5]
    batched = BatchedMLP(SIZES, seeds, layer_norm=True, dtype=torch.float64)
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    batched(x).square().sum().backward()
    for b, seed in enumerate(seeds):
        alone = BatchedMLP(SIZES, [seed], layer_norm=True, dtype=torch.float64)
        alone(x[b : b + 1]).square().sum().backward()
        for p_batched, p_alone in zip(batched.parameters(), alone.parameters()):
            torch.testing.assert_close(p_batched.grad[b], p_alone.grad[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("sizes", [[3, 20, 5, 17, 2], [4, 64, 128, 64, 4]], ids=["narrow", "paper"])
def test_pullback_and_weight_grads_equal_autograd(layer_norm, sizes):
    """One-sample evaluations through every code path (narrow input, hidden and output layers; GEMMs)."""
    mlp = BatchedMLP(sizes, [0, 1, 2], layer_norm, torch.float64)
    ws, bs = mlp.folded_layers()
    ws = [w.detach().requires_grad_() for w in ws]
    bs = [b.detach().requires_grad_() for b in bs]
    x = torch.randn(3, 1, sizes[0], dtype=torch.float64, requires_grad=True)
    layers = MLPLayers.of(ws, bs, layer_norm)
    out, residuals = mlp_forward(layers, x, bs[0])
    torch.testing.assert_close(out, mlp(x.detach()), rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out)
    expected = torch.autograd.grad((out * g).sum(), [x, *ws, *bs])
    with torch.no_grad():
        dx, deltas = mlp_pullback(layers, residuals, g)
        weight_grads = mlp_weight_grads(mlp_layer_inputs(layers, residuals), deltas)
    for got, want in zip([dx, *weight_grads, *deltas], expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


def test_time_field_is_the_mlp_on_shifted_state_and_time():
    mlp = BatchedMLP([4, 8, 8, 3], [0, 1], True, torch.float64)
    ws, bs = mlp.folded_layers()
    z_shift = torch.randn(2, 1, 3, dtype=torch.float64)
    t_shift = torch.rand(2, 1, 1, dtype=torch.float64)
    field = TimeMLPField(True)
    net = field.prepare((ws[0][:, :3], *ws[1:], *bs, ws[0][:, 3:], z_shift, t_shift))
    y = torch.randn(2, 5, 3, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    expected = mlp(torch.cat([y - z_shift, (t.reshape(1, -1, 1) - t_shift)], -1))
    torch.testing.assert_close(field.evaluate(net, t, y)[0], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(field.evaluate(net, 0.5, y[:, :1])[0], field.evaluate(net, t[2], y[:, :1])[0])
