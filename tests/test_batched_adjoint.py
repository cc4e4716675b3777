"""solve_independent_adjoint: the same states as solve_independent, and the gradient of backprop
through its loop (solve_independent_backprop; parameters and start states) from the batched discrete adjoint, for Rodas5P (whose
linearisation runs the network's jet on many samples per model) and Tsit5 (first same as last)."""

import numpy as np
import pytest
import torch

import stiffbench.solvers.batched_adjoint as batched_adjoint
from stiffbench.nn import BatchedMLP, TimeMLPField
from stiffbench.solvers.batched_adjoint import (
    _adjoint_recursion,
    _sample_index,
    solve_independent_adjoint,
    solve_independent_backprop,
)
from stiffbench.solvers.rodas5p import Rodas5P
from stiffbench.solvers.tsit5 import Tsit5

F64 = torch.float64
N = 3


def neural_models(name: str, layer_norm: bool, seeds=(0, 1, 2), input_scale=(0.5, 4.0, 30.0)):
    """(params, build, leaves) for len(seeds) small time-dependent networks: params() gives the
    folded parameters (a fresh graph from the leaves each time); input_scale stretches each
    model's state inputs, so the models need very different numbers of steps."""
    gen = torch.Generator().manual_seed(7)
    mlp = BatchedMLP([N + 1, 16, 32, N], list(seeds), layer_norm, F64)
    field = TimeMLPField(layer_norm)
    z_shift = torch.randn(len(seeds), 1, N, dtype=F64, generator=gen)
    t_shift = torch.rand(len(seeds), 1, 1, dtype=F64, generator=gen)
    scale = torch.tensor(input_scale, dtype=F64).reshape(-1, 1, 1)

    def params():
        ws, bs = mlp.folded_layers()
        return (ws[0][:, :N] * scale, *ws[1:], *bs, ws[0][:, N:], z_shift, t_shift)

    def build(ps):
        net = field.prepare(ps)

        def f(t, z):
            single = z.dim() == 2
            out = field.evaluate(net, t, z.unsqueeze(1) if single else z)[0]
            return out.squeeze(1) if single else out

        def jet(t, z):
            if z.dim() == 3:
                return field.jet(net, t, z, per_sample=True)
            out, J, f_t = field.jet(net, t, z.unsqueeze(1))
            return out.squeeze(1), J, f_t

        return (Rodas5P(jet=jet) if name == "rodas5p" else Tsit5()), f

    return params, build, list(mlp.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rodas5p", "tsit5"])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_same_states_and_gradients_as_backprop_through_the_loop(name, layer_norm, monkeypatch):
    monkeypatch.setattr(batched_adjoint, "SAMPLES_PER_PASS", 5)  # several passes per model
    params, build, leaves = neural_models(name, layer_norm)
    y0 = torch.tensor([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6], [-0.2, 0.3, 0.1]], dtype=F64, requires_grad=True)
    t_out = np.linspace(0.0, 3.0, 31).tolist()
    target = torch.sin(torch.arange(31 * 3 * N, dtype=F64)).reshape(31, 3, N)
    reference = solve_independent_backprop(build, params(), y0, t_out, rtol=1e-6, atol=1e-8)
    ref_grads = torch.autograd.grad((reference - target).square().sum(), [*leaves, y0])

    counts = []
    integrate = batched_adjoint.integrate
    monkeypatch.setattr(batched_adjoint, "integrate", lambda *a, **k: (r := integrate(*a, **k), counts.append(r[1].counts))[0])
    ys = solve_independent_adjoint(build, params(), y0, t_out, rtol=1e-6, atol=1e-8)
    grads = torch.autograd.grad((ys - target).square().sum(), [*leaves, y0])

    assert torch.equal(ys, reference)  # the same loop
    steps = counts[0]
    # several passes per model, the last one padded, and different step counts
    assert steps.min() > 5 and len(set(steps.tolist())) == 3 and any(steps % 5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)


def test_only_what_needs_a_gradient_gets_one():
    params, build, leaves = neural_models("rodas5p", True, seeds=(0,), input_scale=(1.0,))
    y0 = torch.tensor([[0.5, -0.3, 0.2]], dtype=F64)
    ys = solve_independent_adjoint(build, params(), y0, [0.0, 0.5, 1.0], rtol=1e-6, atol=1e-8)
    assert ys.shape == (3, 1, N) and ys.requires_grad
    grads = torch.autograd.grad(ys.sum(), leaves)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert torch.equal(solve_independent_adjoint(build, params(), y0, [1.0])[0], y0)


def test_sample_index_pads_each_model_to_whole_passes(monkeypatch):
    monkeypatch.setattr(batched_adjoint, "SAMPLES_PER_PASS", 4)
    counts = np.array([3, 5, 4])  # the table holds model 0's steps at 0-2, model 1's at 3-7, model 2's at 8-11
    assert _sample_index(counts, 0).tolist() == [[0, 1, 2, -1]]
    assert _sample_index(counts, 1).tolist() == [[3, 4, 5, 6, 7, -1, -1, -1]]
    assert _sample_index(counts, 2).tolist() == [[8, 9, 10, 11]]


def test_adjoint_recursion_by_hand():
    """One trajectory of 2 steps and one of 1 (padded): a_1 = g_1; a_0 = g_0 + e_1 + M_1^T a_1;
    start = e_0 + M_0^T a_0, with n = 2."""
    m_t = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[2.0, 0.0], [1.0, 1.0]]],
                        [[[3.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]]]], dtype=F64)
    e = torch.tensor([[[1.0, 1.0], [0.5, -1.0]], [[2.0, 0.0], [0.0, 0.0]]], dtype=F64)
    g_new = torch.tensor([[[0.0, 1.0], [1.0, 2.0]], [[1.0, -1.0], [0.0, 0.0]]], dtype=F64)
    valid = torch.tensor([[True, True], [True, False]])
    a, start = _adjoint_recursion(m_t, e, g_new, valid)
    # trajectory 0: a_1 = (1, 2); M_1^T a_1 = (2*1 + 0*2, 1*1 + 1*2) = (2, 3); a_0 = (0, 1) + (0.5, -1) + (2, 3)
    assert a[0].tolist() == [[2.5, 3.0], [1.0, 2.0]]
    # start = (1, 1) + (1*2.5 + 2*3, 0*2.5 + 1*3) = (9.5, 4)
    assert start[0].tolist() == [9.5, 4.0]
    # trajectory 1: a_0 = g_0 = (1, -1); start = (2, 0) + 3 * (1, -1)
    assert a[1].tolist() == [[1.0, -1.0], [0.0, 0.0]]
    assert start[1].tolist() == [5.0, -3.0]
