"""The batched backsolve adjoint for Heun: torchdiffeq's odeint_adjoint gradient per model, the
forward states of the discrete-adjoint rollout, its (third-order) distance from the exact discrete
gradient on a smooth field and a closed form on a linear one, batch independence, compilation;
the same on given steps (torchdiffeq's grid_constructor), with outputs at every step or fewer."""

from typing import NamedTuple

import numpy as np
import pytest
import torch
from torchdiffeq import odeint_adjoint

import stiffbench.solvers._compile as _compile
import stiffbench.solvers.heun as heun
from stiffbench.nn import BatchedMLP, TimeMLPField
from stiffbench.solvers.heun import heun_adjoint_rollout, heun_adjoint_rollout_at, heun_steps
from stiffbench.solvers.heun_backsolve import heun_backsolve_rollout, heun_backsolve_rollout_at

B, N_STATES, T0 = 3, 4, 0.3


def paper_like_mlp(seed: int = 0):
    """B layer-normed MLPs (float64) with perturbed norm affines, and random input shifts."""
    mlp = BatchedMLP([N_STATES + 1, 8, 16, N_STATES], [seed, seed + 1, seed + 2], True, torch.float64)
    gen = torch.Generator().manual_seed(seed + 10)
    with torch.no_grad():
        for p in [*mlp.norm_weights, *mlp.norm_biases]:
            p += 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
    shifts = (torch.randn(B, 1, N_STATES, generator=gen, dtype=torch.float64),
              torch.rand(B, 1, 1, generator=gen, dtype=torch.float64))
    return mlp, shifts


def rollout_params(mlp: BatchedMLP, shifts, out_scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    """`TimeMLPField`'s parameters, differentiable with respect to the raw ones; out_scale
    multiplies the output layer (a stiffer field for a larger scale)."""
    ws, bs = mlp.folded_layers()
    ws[-1], bs[-1] = out_scale * ws[-1], out_scale * bs[-1]
    return (ws[0][:, :N_STATES], *ws[1:], *bs, ws[0][:, N_STATES:], *shifts)


def random_inputs(n_steps: int, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    y0 = torch.randn(B, N_STATES, generator=gen, dtype=torch.float64)
    return y0, torch.randn(B, n_steps + 1, N_STATES, generator=gen, dtype=torch.float64)


def rollout_grads(rollout, mlp, shifts, out_scale, y0, weights, dt, n_steps):
    """Gradients of sum(weights * states) with respect to y0 and every raw parameter."""
    y0 = y0.clone().requires_grad_()
    out = rollout(TimeMLPField(True), rollout_params(mlp, shifts, out_scale), y0, T0, dt, n_steps)
    return torch.autograd.grad((weights * out).sum(), (y0, *mlp.parameters()))


def torchdiffeq_grads(mlp, shifts, out_scale, y0, weights, dt, n_steps):
    """The same gradients from torchdiffeq's odeint_adjoint (heun2, step_size dt), one model at a time."""
    t = T0 + torch.arange(n_steps + 1, dtype=torch.float64) * dt
    return odeint_adjoint_grads(mlp, shifts, out_scale, y0, weights, t, {"step_size": dt})


def odeint_adjoint_grads(mlp, shifts, out_scale, y0, weights, t, options):
    """Gradients of sum(weights * states at t) by odeint_adjoint(method="heun2", options=options),
    one model at a time, with respect to y0 and every raw parameter."""
    field, raw = TimeMLPField(True), tuple(mlp.parameters())
    grads = [torch.zeros_like(y0), *(torch.zeros_like(p) for p in raw)]
    for b in range(B):
        def f(t, y, b=b):
            net = field.prepare(tuple(p[b : b + 1] for p in rollout_params(mlp, shifts, out_scale)))
            return field.evaluate(net, t, y.view(1, 1, -1))[0].view(-1)

        yb = y0[b].clone().requires_grad_()
        states = odeint_adjoint(f, yb, t, method="heun2", options=options, adjoint_params=raw)
        gb = torch.autograd.grad((weights[b] * states).sum(), (yb, *raw))
        grads[0][b] = gb[0]
        for g, x in zip(grads[1:], gb[1:]):
            g += x  # model b's rows only
    return grads


def max_rel_diff(grads, refs) -> float:
    return max(((g - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, refs))


@pytest.mark.parametrize("out_scale, n_steps", [(1.0, 50), (100.0, 20)], ids=["smooth", "stiff"])
def test_gradient_equals_torchdiffeq_backsolve(out_scale, n_steps):
    """Every raw parameter and y0, chunks of 8 steps and a shorter last one. On the stiff field
    (largest |h lambda| 0.2 to 1.0 along the trajectories) the backsolve gradient is 3% from the
    exact discrete one (5e-8 on the smooth one)."""
    mlp, shifts = paper_like_mlp()
    y0, weights = random_inputs(n_steps)
    args = (mlp, shifts, out_scale, y0, weights, 0.01, n_steps)
    grads = rollout_grads(heun_backsolve_rollout, *args)
    refs = torchdiffeq_grads(*args)
    for g, r in zip(grads, refs):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())
    if out_scale > 1:
        assert max_rel_diff(rollout_grads(heun_adjoint_rollout, *args), refs) > 1e-2


def test_distance_to_exact_discrete_gradient_is_third_order():
    """Smooth field, loss on the states at fixed times (every 0.2 up to T0 + 0.8): the relative
    difference from the exact discrete gradient shrinks by 2^3 per halving of dt (measured 8.0)."""
    mlp, shifts = paper_like_mlp()
    y0, at_times = random_inputs(4)
    diffs = []
    for dt in (0.02, 0.01, 0.005):
        n_steps, every = round(0.8 / dt), round(0.2 / dt)
        weights = torch.zeros(B, n_steps + 1, N_STATES, dtype=torch.float64)
        weights[:, ::every] = at_times
        args = (mlp, shifts, 1.0, y0, weights, dt, n_steps)
        backsolve, exact = rollout_grads(heun_backsolve_rollout, *args), rollout_grads(heun_adjoint_rollout, *args)
        diffs.append(max_rel_diff(backsolve, exact))
    ratios = [a / b for a, b in zip(diffs, diffs[1:])]
    assert all(7 < r < 9 for r in ratios), (diffs, ratios)
    assert 1e-9 < diffs[-1] < 1e-6, diffs  # far above rounding (1e-15)


class LinearField(NamedTuple):
    """dy/dt = theta y of B scalar models, params (theta (B, 1, 1),), as an `AdjointField`."""

    def prepare(self, params):
        return params[0]

    def evaluate(self, net, t, y):
        return net * y, (y,)

    def pullback(self, net, residuals, g):
        return net * g, (g * residuals[0],)

    def param_grads(self, net, times, cotangents):
        return (cotangents[0].sum(1, keepdim=True),)


def test_linear_field_closed_forms():
    """L = y_N for dy/dt = theta y, x = h theta, R = 1 + x + x^2/2: both adjoints give dL/dy0 = R^N;
    dL/dtheta is N h y0 R^(N-1) (1 + x) exactly but N h y0 R^N (1 - x^2/2) by backsolve (each step
    adds h/2 (a y_{k+1} + a (1 + x) y_{k+1} (1 - x)), stage 2 seeing a' = a (1 + x) at the
    re-integrated state y' = y_{k+1} (1 - x)), a relative difference of x^3 (2 + x) / (4 (1 + x)).
    At x = -1 (|h lambda| = 1) R is at its minimum, so the exact gradient vanishes while
    backsolve's does not."""
    h, n_steps, x = 0.1, 12, torch.tensor([-1.0, -0.4, 0.3], dtype=torch.float64)
    theta = (x / h).reshape(-1, 1, 1).requires_grad_()
    y0 = torch.tensor([[0.7], [-1.2], [2.0]], dtype=torch.float64)
    r = 1 + x + x**2 / 2
    expected_exact = n_steps * h * y0[:, 0] * r ** (n_steps - 1) * (1 + x)
    expected_backsolve = n_steps * h * y0[:, 0] * r**n_steps * (1 - x**2 / 2)
    cases = [(heun_adjoint_rollout, expected_exact), (heun_backsolve_rollout, expected_backsolve)]
    for rollout, expected in cases:
        y = y0.clone().requires_grad_()
        out = rollout(LinearField(), (theta,), y, 0.0, h, n_steps)
        g_y0, g_theta = torch.autograd.grad(out[:, -1].sum(), (y, theta))
        torch.testing.assert_close(g_y0[:, 0], r**n_steps, rtol=1e-13, atol=0)
        torch.testing.assert_close(g_theta.reshape(-1), expected, rtol=1e-13, atol=1e-16)
    assert expected_exact[0] == 0 and abs(expected_backsolve[0]) > 1e-4
    ratio = expected_backsolve[1:] / expected_exact[1:]
    torch.testing.assert_close(ratio, 1 - x[1:] ** 3 * (2 + x[1:]) / (4 * (1 + x[1:])), rtol=1e-13, atol=0)


def leaf_params():
    """`TimeMLPField`'s parameters as leaves (the shifts without gradient)."""
    mlp, shifts = paper_like_mlp()
    params = rollout_params(mlp, shifts)
    return tuple(p.detach().clone().requires_grad_() for p in params[:-2]) + params[-2:]


def test_forward_states_equal_discrete_adjoint_rollout():
    params = leaf_params()
    y0, _ = random_inputs(50)
    field = TimeMLPField(True)
    out = heun_backsolve_rollout(field, params, y0, T0, 0.01, 50)
    assert out.shape == (B, 51, N_STATES)
    torch.testing.assert_close(out, heun_adjoint_rollout(field, params, y0, T0, 0.01, 50), rtol=0, atol=1e-12)


def leaf_grads(params, y0, weights, n_steps, compile=False):
    y0 = y0.clone().requires_grad_()
    out = heun_backsolve_rollout(TimeMLPField(True), params, y0, T0, 0.01, n_steps, compile)
    return out, torch.autograd.grad((weights * out).sum(), (y0, *params[:-2]))


def test_models_are_independent():
    params = leaf_params()
    y0, weights = random_inputs(19)
    _, both = leaf_grads(params, y0, weights, 19)
    alone_params = tuple(p[1:2].detach().clone().requires_grad_(p.requires_grad) for p in params)
    _, alone = leaf_grads(alone_params, y0[1:2], weights[1:2], 19)
    for g, a in zip(both, alone):
        torch.testing.assert_close(g[1:2], a, rtol=1e-12, atol=1e-12 * a.abs().max().item())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_compiled_equals_eager(monkeypatch):
    monkeypatch.setattr(heun, "CHUNK_STEPS", 1)  # the smallest graphs: compile in seconds
    params = leaf_params()
    y0, weights = random_inputs(3)
    out, grads = leaf_grads(params, y0, weights, 3, compile=True)
    assert not _compile.compile_failed, _compile.compile_failed
    ref_out, ref_grads = leaf_grads(params, y0, weights, 3)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())


# ----------------------------------------------------------------------------------------------
# Given steps
# ----------------------------------------------------------------------------------------------


def grid_constructor(step_times):
    """torchdiffeq's grid_constructor stepping on step_times: the boundaries within the interval
    it is asked for, in its direction (the backward pass asks for each output interval reversed)."""
    grid = torch.as_tensor(step_times)

    def construct(func, y0, t):
        inside = grid[(grid >= t.min()) & (grid <= t.max())]
        return inside if t[0] < t[-1] else inside.flip(0)

    return construct


def given_step_grads(rollout, mlp, shifts, out_scale, y0, weights, step_times, outputs, **kwargs):
    """Gradients of sum(weights * states at step_times[outputs]) w.r.t. y0 and every raw parameter;
    kwargs: the rollout's further arguments."""
    y0 = y0.clone().requires_grad_()
    out = rollout(TimeMLPField(True), rollout_params(mlp, shifts, out_scale), y0, step_times, **kwargs)
    return torch.autograd.grad((weights * out[:, outputs]).sum(), (y0, *mlp.parameters()))


@pytest.mark.parametrize("out_scale", [1.0, 30.0], ids=["smooth", "stiff"])
def test_gradient_on_given_steps_equals_torchdiffeq_backsolve(out_scale):
    """Log-spaced output times split into steps of at most 0.05 (14 steps, h from 1e-3 to 0.05),
    chunks of 8 and a shorter last one. Outputs at every step: the re-integrated state restarts
    from the stored one at each step, as for the uniform grid; outputs at the log-spaced times
    only: it is carried over the steps between them, a different gradient."""
    mlp, shifts = paper_like_mlp()
    t_out = T0 + np.array([0.0, 1e-3, 1e-2, 0.1, 0.3, 0.6])
    step_times, out_index = heun_steps(t_out, 0.05)
    assert len(step_times) == 15 and (out_index == [0, 1, 2, 4, 8, 14]).all()
    y0, weights = random_inputs(len(step_times) - 1)
    st = torch.as_tensor(step_times)
    options = {"grid_constructor": grid_constructor(st)}
    args = (mlp, shifts, out_scale, y0)
    every = given_step_grads(heun_backsolve_rollout_at, *args, weights, step_times, slice(None))
    every_ref = odeint_adjoint_grads(*args, weights, st, options)
    weights = weights[:, out_index]
    sparse = given_step_grads(heun_backsolve_rollout_at, *args, weights, step_times, out_index,
                              out_index=out_index)
    sparse_ref = odeint_adjoint_grads(*args, weights, st[out_index], options)
    for grads, refs in ((every, every_ref), (sparse, sparse_ref)):
        for g, r in zip(grads, refs):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())
    # the same loss, the state reset at every step: 1.6e-7 (smooth), 2% (stiff) from carrying it
    reset = given_step_grads(heun_backsolve_rollout_at, *args, weights, step_times, out_index)
    assert max_rel_diff(sparse, reset) > 1e-8


def test_uniform_given_steps_agree_with_the_uniform_path():
    params = leaf_params()
    y0, weights = random_inputs(19)
    step_times = T0 + 0.01 * np.arange(20)
    field = TimeMLPField(True)
    results = []
    for rollout in (lambda y: heun_backsolve_rollout(field, params, y, T0, 0.01, 19),
                    lambda y: heun_backsolve_rollout_at(field, params, y, step_times),
                    lambda y: heun_backsolve_rollout_at(field, params, y, step_times, out_index=np.arange(20))):
        y = y0.clone().requires_grad_()
        out = rollout(y)
        results.append((out, *torch.autograd.grad((weights * out).sum(), (y, *params[:-2]))))
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13 * b.abs().max().item())


def test_forward_states_on_given_steps_equal_discrete_adjoint_rollout():
    params = leaf_params()
    y0, _ = random_inputs(1)
    step_times, out_index = heun_steps(T0 + np.logspace(-3, -0.5, 6), 0.05)
    field = TimeMLPField(True)
    out = heun_backsolve_rollout_at(field, params, y0, step_times, out_index=out_index)
    assert out.shape == (B, len(step_times), N_STATES)
    torch.testing.assert_close(out, heun_adjoint_rollout_at(field, params, y0, step_times), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_compiled_on_given_steps_equals_eager(monkeypatch):
    """Outputs at the first and last boundary only: the carried state crosses the chunks."""
    monkeypatch.setattr(heun, "CHUNK_STEPS", 1)  # the smallest graphs: compile in seconds
    params = leaf_params()
    y0, weights = random_inputs(3)
    step_times = T0 + np.array([0.0, 0.01, 0.03, 0.06])
    results = []
    for compile in (True, False):
        y = y0.clone().requires_grad_()
        out = heun_backsolve_rollout_at(TimeMLPField(True), params, y, step_times, compile, out_index=[0, 3])
        results.append((out, *torch.autograd.grad((weights * out).sum(), (y, *params[:-2]))))
    assert not _compile.compile_failed, _compile.compile_failed
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * b.abs().max().item())
