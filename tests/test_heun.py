"""Fixed-step Heun: hand value, order 2, stability bound, exact discrete gradient, NaN handling."""

import math

import numpy as np
import torch

from stiffbench.solvers.heun import heun_forecast, heun_rollout


def test_one_step_hand_value():
    # dy/dt = -3 y, h = 0.1: y1 = 2 (1 - 0.3 + 0.045) = 1.49
    out = heun_rollout(lambda t, y: -3.0 * y, torch.tensor([2.0], dtype=torch.float64), 0.0, 0.1, 1)
    assert out.shape == (2, 1)
    assert out[0, 0] == 2.0
    assert math.isclose(out[1, 0].item(), 1.49, rel_tol=1e-15)


def test_order_two_non_autonomous():
    # dy/dt = -2 t y, y(0) = 1: y(t) = exp(-t^2); exercises the time argument
    def error(n):
        y = heun_rollout(lambda t, y: -2 * t * y, torch.tensor([1.0], dtype=torch.float64), 0.0, 1.0 / n, n)
        return abs(y[-1, 0].item() - math.exp(-1.0))

    errors = [error(n) for n in (20, 40, 80)]
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(1.9 < p < 2.1 for p in orders), orders


def test_stability_bound_on_real_axis():
    lam = -100.0
    y0 = torch.tensor([1.0], dtype=torch.float64)
    stable = heun_rollout(lambda t, y: lam * y, y0, 0.0, 1.9 / -lam, 200)
    unstable = heun_rollout(lambda t, y: lam * y, y0, 0.0, 2.1 / -lam, 200)
    assert stable[-1].abs() < 1 and unstable[-1].abs() > 1e3


def test_gradient_matches_finite_differences():
    def loss(k, a):
        f = lambda t, y: -k * y + a * torch.sin(t + y)  # noqa: E731
        y = heun_rollout(f, torch.tensor([0.5, -1.0], dtype=torch.float64), 0.3, 0.05, 40)
        return y.square().sum()

    k = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(loss(k, a), (k, a))
    eps = 1e-6
    with torch.no_grad():
        fd_k = (loss(k + eps, a) - loss(k - eps, a)) / (2 * eps)
        fd_a = (loss(k, a + eps) - loss(k, a - eps)) / (2 * eps)
    torch.testing.assert_close(grads[0], fd_k, rtol=1e-7, atol=0)
    torch.testing.assert_close(grads[1], fd_a, rtol=1e-7, atol=0)


def test_forecast_equals_rollout_without_graph():
    w = torch.tensor(2.0, requires_grad=True)
    f = lambda t, y: torch.stack([y[..., 1], -w * y[..., 0]], -1)  # noqa: E731
    y0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fc = heun_forecast(f, y0, 0.0, 0.01, 300)
    assert not fc.requires_grad and fc.shape == (301, 2, 2)
    torch.testing.assert_close(fc, heun_rollout(f, y0, 0.0, 0.01, 300).detach(), rtol=0, atol=0)


def test_forecast_nan_from_first_non_finite_state_per_trajectory():
    # row 0: dy/dt = y^2 from 1 blows up at t = 1; row 1: dy/dt = -y^2 decays as 1 / (1 + t)
    sign = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    y0 = torch.ones(2, 2, dtype=torch.float64)
    fc = heun_forecast(lambda t, y: sign * y**2, y0, 0.0, 0.01, 500).numpy()
    bad = ~np.isfinite(fc[:, 0]).all(axis=-1)
    first = int(np.argmax(bad))
    assert 90 < first < 500 and bad[first:].all() and np.isnan(fc[first:, 0]).all()
    assert np.isfinite(fc[:, 1]).all()
    np.testing.assert_allclose(fc[-1, 1], 1 / 6, rtol=1e-4)


def test_forecast_stops_early_when_all_diverge():
    calls = []

    def f(t, y):
        calls.append(t)
        return y**2

    fc = heun_forecast(f, torch.tensor([1.0], dtype=torch.float64), 0.0, 0.01, 100_000, check_every=50)
    assert torch.isnan(fc[-1]).all() and len(calls) < 1000
