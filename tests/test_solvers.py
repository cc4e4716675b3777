"""Solvers and gradient modes: convergence orders, dense output, HH against the stiff reference,
stiff stability, exact discrete gradients, the adjoints, batching and the step guard."""

import math

import numpy as np
import pytest
import torch

from stiffbench.solvers._adaptive import StepLimitExceeded
from stiffbench.solvers.adjoint import odeint_with_grad
from stiffbench.solvers.heun import heun_rollout
from stiffbench.solvers.rk4 import rk4_rollout
from stiffbench.solvers.rodas5p import Rodas5P, rodas5p_rollout, rodas5p_solve
from stiffbench.solvers.tsit5 import Tsit5, tsit5_rollout, tsit5_solve

F64 = torch.float64
ROLLOUTS = {"heun": (heun_rollout, 2), "rk4": (rk4_rollout, 4), "tsit5": (tsit5_rollout, 5),
            "rodas5p": (rodas5p_rollout, 5)}
GRAD_SOLVERS = ["heun", "tsit5", "rodas5p"]  # the solvers of odeint_with_grad
ADAPTIVE = {"tsit5": (Tsit5, tsit5_solve), "rodas5p": (Rodas5P, rodas5p_solve)}


def exact(t):
    """y(t) = (sin t + e^-t, cos t e^(-t/2)), the solution of `smooth_field` from y(0)."""
    t = torch.as_tensor(t, dtype=F64)
    return torch.stack([torch.sin(t) + torch.exp(-t), torch.cos(t) * torch.exp(-t / 2)], -1)


def smooth_field(t, y):
    """Non-autonomous and nonlinear: y' = exact'(t) + g(t, y - exact(t)) with g(t, 0) = 0."""
    t = torch.as_tensor(t, dtype=F64)
    e, r = exact(t), y - exact(t)
    de = torch.stack([torch.cos(t) - torch.exp(-t), -torch.exp(-t / 2) * (torch.sin(t) + 0.5 * torch.cos(t))], -1)
    g = torch.stack([-2 * r[..., 0] + r[..., 1] ** 2 + y[..., 1] * r[..., 0], -r[..., 1] * (1 + y[..., 0] ** 2)], -1)
    return de + g


def slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


@pytest.mark.parametrize("name", ROLLOUTS)
def test_fixed_step_convergence_order(name):
    rollout, order = ROLLOUTS[name]
    ns = (10, 20, 40, 80)
    errors = [(rollout(smooth_field, exact(0.0), 0.0, 2.0 / n, n)[-1] - exact(2.0)).abs().max().item() for n in ns]
    assert abs(slope([2.0 / n for n in ns], errors) - order) < 0.4, errors


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_is_fourth_order(name):
    # A 4th-order interpolant has local error O(h^5) at fixed theta; the ends are the step's states.
    solver = ADAPTIVE[name][0]()
    hs, errors = (0.2, 0.1, 0.05, 0.025), []
    for h in hs:
        y = exact(0.3)
        step = solver.step(smooth_field, 0.3, y, h, solver.init(smooth_field, 0.3, y))
        errors.append((solver.interpolate(y, step.y, step.dense, 0.5) - exact(0.3 + h / 2)).abs().max().item())
        torch.testing.assert_close(solver.interpolate(y, step.y, step.dense, 0.0), y, rtol=0, atol=1e-15)
        torch.testing.assert_close(solver.interpolate(y, step.y, step.dense, 1.0), step.y, rtol=0, atol=1e-14)
    assert 4.4 < slope(hs, errors) < 6, errors


@pytest.mark.slow
@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_agrees_with_stiff_reference_on_hh(name, hh_reference):
    system, ref = hh_reference
    idx = slice(0, 2001, 10)  # [0, 20] ms every 0.1 ms
    y0 = torch.tensor(ref.y[0], dtype=F64)
    sol = ADAPTIVE[name][1](system.torch_vector_field(), y0, torch.tensor(ref.t[idx]), rtol=1e-7, atol=1e-9)
    err = np.abs(sol.ys.numpy() - ref.y[idx]).max(axis=0)
    assert err[0] < 5e-3 and err[1:].max() < 5e-5, err
    assert sol.n_steps < 1000


def prothero_robinson(t, y):
    """y' = L (y - phi(t)) + phi'(t), phi = (sin t, cos t), L = diag(-1e4, -1): solution phi."""
    t = torch.as_tensor(t, dtype=F64)
    lam = torch.tensor([-1e4, -1.0], dtype=F64)
    return lam * (y - torch.stack([torch.sin(t), torch.cos(t)])) + torch.stack([torch.cos(t), -torch.sin(t)])


@pytest.mark.slow
def test_rodas5p_is_efficient_and_stable_on_stiff_problem():
    y0, t_out = torch.tensor([0.0, 1.0], dtype=F64), torch.linspace(0, 2, 5, dtype=F64)
    stiff = rodas5p_solve(prothero_robinson, y0, t_out, rtol=1e-6, atol=1e-8)
    explicit = tsit5_solve(prothero_robinson, y0, t_out, rtol=1e-6, atol=1e-8)
    truth = torch.stack([torch.sin(t_out), torch.cos(t_out)], -1)
    assert (stiff.ys - truth).abs().max() < 1e-5 and (explicit.ys - truth).abs().max() < 1e-5
    assert stiff.n_steps < 60 and explicit.n_steps > 20 * stiff.n_steps, (stiff.n_steps, explicit.n_steps)
    # |h lambda| = 1000: A-stable, stiffly accurate Rodas5P stays on the solution; Tsit5 explodes.
    fixed = rodas5p_rollout(prothero_robinson, y0, 0.0, 0.1, 20)
    assert (fixed[-1] - truth[-1]).abs().max() < 1e-4
    assert not (tsit5_rollout(prothero_robinson, y0, 0.0, 0.1, 20)[-1].abs() < 1e3).all()


def tiny_mlp(seed=0):
    """Parameters of a 3-6-2 tanh MLP on [y; t] (float64) and the vector field they define."""
    gen = torch.Generator().manual_seed(seed)
    params = tuple(0.6 * torch.randn(*s, generator=gen, dtype=F64) for s in ((6, 3), (6,), (2, 6), (2,)))

    def field(p):
        w1, b1, w2, b2 = p

        def f(t, y):
            t = torch.as_tensor(t, dtype=F64).expand(*y.shape[:-1], 1)
            return torch.tanh(torch.cat([y, t], -1) @ w1.T + b1) @ w2.T + b2

        return f

    return params, field


Y0 = torch.tensor([[0.5, -0.3], [1.0, 0.2]], dtype=F64)
T_OUT = torch.linspace(0.0, 1.0, 6, dtype=F64)
OPTIONS = {"heun": {"dt": 0.01}, "tsit5": {"rtol": 1e-9, "atol": 1e-11}, "rodas5p": {"rtol": 1e-9, "atol": 1e-11}}


def loss_and_grad(solver, grad_mode, params, field, options=None):
    """A scalar loss of the solution and its gradient (flattened) w.r.t. (y0, *params)."""
    leaves = [Y0.clone().requires_grad_(), *(p.clone().requires_grad_() for p in params)]
    ys = odeint_with_grad(field(leaves[1:]), leaves[0], T_OUT, leaves[1:], solver, grad_mode,
                          **(options or OPTIONS[solver]))
    loss = (ys**2).sum() + ys[-1, :, 0].sum()
    return loss.detach(), torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, leaves)])


def directional_fd(solver, params, field, direction, eps=1e-6):
    """Central difference of the loss along `direction` over (y0, *params)."""
    def loss(s):
        sizes = [Y0.numel(), *(p.numel() for p in params)]
        steps = torch.split(s * direction, sizes)
        y0 = Y0 + steps[0].view_as(Y0)
        p = [q + d.view_as(q) for q, d in zip(params, steps[1:])]
        ys = odeint_with_grad(field(p), y0, T_OUT, (), solver, "backprop", **OPTIONS[solver])
        return (ys**2).sum() + ys[-1, :, 0].sum()

    with torch.no_grad():
        return (loss(eps) - loss(-eps)) / (2 * eps)


@pytest.mark.parametrize("solver", GRAD_SOLVERS)
def test_backprop_gradient_matches_finite_differences(solver):
    params, field = tiny_mlp()
    _, grad = loss_and_grad(solver, "backprop", params, field)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        direction = torch.randn(grad.numel(), generator=gen, dtype=F64)
        fd = directional_fd(solver, params, field, direction)
        assert math.isclose(grad @ direction, fd, rel_tol=1e-5), (float(grad @ direction), float(fd))


@pytest.mark.parametrize("solver", GRAD_SOLVERS)
def test_interpolating_adjoint_matches_backprop_and_finite_differences(solver):
    params, field = tiny_mlp()
    _, exact_grad = loss_and_grad(solver, "backprop", params, field)
    _, grad = loss_and_grad(solver, "interpolating", params, field)
    tol = 1e-4 if solver == "heun" else 1e-6  # Heun's continuous adjoint: O(dt^2) from the discrete one
    assert (grad - exact_grad).norm() < tol * exact_grad.norm()
    direction = torch.randn(grad.numel(), generator=torch.Generator().manual_seed(2), dtype=F64)
    assert math.isclose(grad @ direction, directional_fd(solver, params, field, direction), rel_tol=10 * tol)


def test_heun_interpolating_adjoint_error_is_second_order():
    params, field = tiny_mlp()
    gaps = []
    for dt in (0.04, 0.02):
        exact_grad = loss_and_grad("heun", "backprop", params, field, {"dt": dt})[1]
        gaps.append((loss_and_grad("heun", "interpolating", params, field, {"dt": dt})[1] - exact_grad).norm())
    assert 3.0 < gaps[0] / gaps[1] < 5.0, gaps


@pytest.mark.parametrize("solver", ["heun", "tsit5"])
def test_backsolve_adjoint_roughly_agrees(solver):
    params, field = tiny_mlp()
    _, exact_grad = loss_and_grad(solver, "backprop", params, field)
    _, grad = loss_and_grad(solver, "backsolve", params, field)
    assert (grad - exact_grad).norm() < 1e-3 * exact_grad.norm()


def test_backsolve_has_no_stiff_solver():
    params, field = tiny_mlp()
    with pytest.raises(ValueError, match="no Rosenbrock"):
        loss_and_grad("rodas5p", "backsolve", params, field)


@pytest.mark.parametrize("name", ROLLOUTS)
def test_batch_equals_each_member_alone(name):
    rollout = ROLLOUTS[name][0]
    params, field = tiny_mlp()
    y0 = torch.tensor([[[0.5, -0.3], [1.0, 0.2]], [[-0.7, 0.1], [0.0, 2.0]]], dtype=F64)  # (2, 2, n)
    batch = rollout(field(params), y0, 0.1, 0.05, 20)
    for i in range(2):
        for j in range(2):
            torch.testing.assert_close(batch[:, i, j], rollout(field(params), y0[i, j], 0.1, 0.05, 20),
                                       rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_max_steps_guard(name):
    y0 = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(StepLimitExceeded, match="max_steps=5"):
        ADAPTIVE[name][1](prothero_robinson, y0, [0.0, 2.0], rtol=1e-10, atol=1e-12, max_steps=5)


def test_invalid_inputs_are_rejected():
    f = lambda t, y: -y  # noqa: E731
    y0 = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match="float64"):
        rodas5p_solve(f, y0.float(), [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        tsit5_solve(f, y0, [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="valid solvers: heun, tsit5, rodas5p"):
        odeint_with_grad(f, y0, [0.0, 1.0], solver="dopri5")
    with pytest.raises(ValueError, match="valid modes"):
        odeint_with_grad(f, y0, [0.0, 1.0], grad_mode="adjoint")
    with pytest.raises(TypeError, match="tsit5 takes the options"):
        odeint_with_grad(f, y0, [0.0, 1.0], solver="tsit5", dt=0.1)
    with pytest.raises(ValueError, match="Heun grid"):
        odeint_with_grad(f, y0, [0.0, 0.015], dt=0.01)
