"""Fixed-step Heun: hand value, order 2, stability bound, exact discrete gradient, NaN handling;
the discrete-adjoint rollout against autograd through the plain one, eager and compiled; grids
through arbitrary output times (`heun_steps`) and the solvers on such given steps."""

import math

import numpy as np
import pytest
import torch

import stiffbench.solvers._compile as _compile
import stiffbench.solvers.heun as heun
from stiffbench.nn import BatchedMLP, TimeMLPField
from stiffbench.solvers.heun import (
    heun_adjoint_rollout,
    heun_adjoint_rollout_at,
    heun_forecast,
    heun_forecast_at,
    heun_rollout,
    heun_step,
    heun_steps,
)


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


def mlp_field(layer_norm: bool, hidden=(20, 5, 17), n=3, seeds=(0, 1, 2)):
    """A TimeMLPField with random folded layers (non-trivial shifts) and its parameter tuple."""
    mlp = BatchedMLP([n + 1, *hidden, n], list(seeds), layer_norm, torch.float64)
    ws, bs = mlp.folded_layers()
    gen = torch.Generator().manual_seed(1)
    shifts = (torch.randn(len(seeds), 1, n, generator=gen, dtype=torch.float64),
              torch.rand(len(seeds), 1, 1, generator=gen, dtype=torch.float64))
    params = [ws[0][:, :n], *ws[1:], *bs, ws[0][:, n:]]
    return TimeMLPField(layer_norm), tuple(p.detach().clone().requires_grad_() for p in params) + shifts


def adjoint_and_autograd(field, params, y0, n_steps, compile=False):
    """(states, gradients of a random functional w.r.t. y0 and params) by both rollouts."""
    y0 = y0.clone().requires_grad_()
    out = heun_adjoint_rollout(field, params, y0, 0.3, 0.05, n_steps, compile)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    wrt = (y0, *params[:-2])
    grads = torch.autograd.grad((out * weights).sum(), wrt)
    net = field.prepare(params)
    ref = heun_rollout(lambda t, y: field.evaluate(net, t, y)[0], y0.unsqueeze(1), 0.3, 0.05, n_steps)
    ref = ref.squeeze(2).transpose(0, 1)
    return out, ref, grads, torch.autograd.grad((ref * weights).sum(), wrt)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_adjoint_rollout_equals_autograd_through_the_steps(layer_norm, monkeypatch):
    """Narrow and wide layers, two full chunks and a shorter last one."""
    monkeypatch.setattr(heun, "CHUNK_STEPS", 4)
    field, params = mlp_field(layer_norm)
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, ref, grads, ref_grads = adjoint_and_autograd(field, params, y0, 11)
    assert out.shape == (3, 12, 3)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-11 * r.abs().max().item())


def test_adjoint_rollout_models_are_independent():
    field, params = mlp_field(True)
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    both = heun_adjoint_rollout(field, params, y0, 0.0, 0.05, 9)
    alone = heun_adjoint_rollout(field, tuple(p[1:2] for p in params), y0[1:2], 0.0, 0.05, 9)
    torch.testing.assert_close(both[1:2], alone, rtol=1e-14, atol=1e-14)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_compiled_adjoint_rollout_equals_eager(monkeypatch):
    monkeypatch.setattr(heun, "CHUNK_STEPS", 2)  # a small graph: compiles in seconds
    field, params = mlp_field(True)
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, ref, grads, ref_grads = adjoint_and_autograd(field, params, y0, 7, compile=True)
    assert not _compile.compile_failed, _compile.compile_failed
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())


def test_failed_compilation_warns_and_runs_eagerly(monkeypatch):
    def broken(fn):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(_compile, "compiled", broken)
    monkeypatch.setattr(_compile, "compile_failed", [])
    monkeypatch.setattr(heun, "CHUNK_STEPS", 2)
    field, params = mlp_field(False)
    y0 = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = heun_adjoint_rollout(field, params, y0, 0.0, 0.05, 5, compile=True)
    torch.testing.assert_close(out, heun_adjoint_rollout(field, params, y0, 0.0, 0.05, 5), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# Given steps
# ----------------------------------------------------------------------------------------------


def test_heun_steps_hand_values():
    step_times, out_index = heun_steps([0.0, 1.0, 3.0], 1.0)
    np.testing.assert_array_equal(step_times, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out_index, [0, 1, 3])
    step_times, out_index = heun_steps([0.0, 1.0, 3.0], None)
    np.testing.assert_array_equal(step_times, [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(out_index, [0, 1, 2])
    # 1 / 0.8 and 2 / 0.8 round up to 2 and 3 equal steps
    step_times, out_index = heun_steps([0.0, 1.0, 3.0], 0.8)
    np.testing.assert_allclose(step_times, [0.0, 0.5, 1.0, 5 / 3, 7 / 3, 3.0], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(out_index, [0, 2, 5])
    assert step_times.dtype == np.float64 and step_times[3] == 1.0 + 1 * 2.0 / 3
    step_times, out_index = heun_steps([2.5], 0.1)
    np.testing.assert_array_equal(step_times, [2.5])
    np.testing.assert_array_equal(out_index, [0])


def test_heun_steps_rounding_slack_and_exact_outputs():
    # (0.4 - 0.1) / 0.1 = 3.0000000000000004: three steps, not four
    step_times, out_index = heun_steps([0.1, 0.4], 0.1)
    np.testing.assert_allclose(step_times, [0.1, 0.2, 0.3, 0.4], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(out_index, [0, 3])
    t_out = np.logspace(-5, 5, 11)
    step_times, out_index = heun_steps(t_out, 7.0)
    np.testing.assert_array_equal(step_times[out_index], t_out)
    assert (np.diff(step_times) <= 7.0 * (1 + 1e-9)).all() and (np.diff(step_times) > 0).all()


@pytest.mark.parametrize("t_out, max_step", [([], None), ([0.0, 0.0], None), ([1.0, 0.5], 0.1),
                                             ([[0.0, 1.0]], None), ([0.0, np.nan], None),
                                             ([0.0, 1.0], 0.0), ([0.0, 1.0], -1.0), ([0.0, 1.0], np.nan)])
def test_heun_steps_rejects_bad_input(t_out, max_step):
    with pytest.raises(ValueError, match="t_out|max_step"):
        heun_steps(t_out, max_step)


def log_spaced_steps():
    """14 steps from 1e-3 to 1 (h from 2.2e-3 to 0.098): log-spaced outputs, the last two intervals split."""
    return heun_steps(np.logspace(-3, 0, 7), 0.1)[0]


def heun_loop(f, y0, step_times):
    """Autograd through plain Heun steps on the given grid, (S + 1, *y0.shape)."""
    y, states = y0, [y0]
    for t, t_next in zip(step_times[:-1].tolist(), step_times[1:].tolist()):
        y = heun_step(f, t, y, t_next - t)
        states.append(y)
    return torch.stack(states)


def adjoint_at_and_autograd(field, params, y0, step_times, compile=False):
    """(states, reference states, gradients of a random functional w.r.t. y0 and params, reference
    gradients) by `heun_adjoint_rollout_at` and by autograd through `heun_loop`."""
    y0 = y0.clone().requires_grad_()
    out = heun_adjoint_rollout_at(field, params, y0, step_times, compile)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    wrt = (y0, *params[:-2])
    grads = torch.autograd.grad((out * weights).sum(), wrt)
    net = field.prepare(params)
    ref = heun_loop(lambda t, y: field.evaluate(net, t, y)[0], y0.unsqueeze(1), step_times)
    ref = ref.squeeze(2).transpose(0, 1)
    return out, ref, grads, torch.autograd.grad((ref * weights).sum(), wrt)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_adjoint_rollout_at_equals_autograd_through_the_steps(layer_norm, monkeypatch):
    """Log-spaced steps, three full chunks and a shorter last one."""
    monkeypatch.setattr(heun, "CHUNK_STEPS", 4)
    field, params = mlp_field(layer_norm)
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step_times = log_spaced_steps()
    assert len(step_times) == 15 and np.ptp(np.diff(step_times)) > 0.09
    out, ref, grads, ref_grads = adjoint_at_and_autograd(field, params, y0, step_times)
    assert out.shape == (3, 15, 3)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())


def test_forecast_at_equals_the_plain_steps():
    field, params = mlp_field(True)
    net = field.prepare(tuple(p.detach() for p in params))
    f = lambda t, y: field.evaluate(net, t, y)[0]  # noqa: E731
    y0 = torch.randn(3, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step_times = log_spaced_steps()
    fc = heun_forecast_at(f, y0, step_times)
    assert fc.shape == (15, 3, 1, 3)
    torch.testing.assert_close(fc, heun_loop(f, y0, step_times), rtol=0, atol=0)


def test_uniform_step_times_agree_with_the_uniform_path():
    field, params = mlp_field(True)
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step_times = 0.3 + 0.05 * np.arange(12)
    weights = torch.randn(3, 12, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    results = []
    for rollout in (lambda y: heun_adjoint_rollout(field, params, y, 0.3, 0.05, 11),
                    lambda y: heun_adjoint_rollout_at(field, params, y, step_times)):
        y = y0.clone().requires_grad_()
        out = rollout(y)
        results.append((out, *torch.autograd.grad((out * weights).sum(), (y, *params[:-2]))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13 * b.abs().max().item())
    f = lambda t, y: -3.0 * y + t  # noqa: E731
    torch.testing.assert_close(heun_forecast_at(f, y0, step_times), heun_forecast(f, y0, 0.3, 0.05, 11),
                               rtol=1e-14, atol=1e-14)


def test_given_steps_are_checked():
    field, params = mlp_field(False)
    for bad in ([0.0, 0.1, 0.1], [0.2, 0.1], [[0.0, 0.1]]):
        with pytest.raises(ValueError, match="step_times"):
            heun_adjoint_rollout_at(field, params, torch.zeros(3, 3, dtype=torch.float64), bad)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_compiled_adjoint_rollout_at_equals_eager(monkeypatch):
    """Two grids of the same length share one compiled chunk: the step sizes are tensors."""
    monkeypatch.setattr(heun, "CHUNK_STEPS", 2)
    field, params = mlp_field(True)
    y0 = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for step_times in (np.logspace(-2, 0, 6), np.linspace(0.1, 0.4, 6)):
        out, ref, grads, ref_grads = adjoint_at_and_autograd(field, params, y0, step_times, compile=True)
        assert not _compile.compile_failed, _compile.compile_failed
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())
