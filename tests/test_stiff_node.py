"""Stiff neural ODE: the scales and the scaled field by hand, the batched GELU network against a
per-seed loop and its Jacobian against autograd, a short fit on a stiff linear system, n/a under
partial observation, and the conformance kit."""

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev

from stiffbench.api import BatchMember, FitConfig, TrainingTask, Trajectory, missing_capabilities
from stiffbench.registry import Registry
from stiffbench.testing.conformance import check_method
from stiffbench_methods._gelu_field import ScaledGELUField, gelu, gelu_slope
from stiffbench_methods.stiff_node import StiffNODE, StiffNODEParams, state_scales


def test_state_scales_by_hand():
    y = np.array([[1.0, -2.0, 0.0], [3.0, 0.5, 0.0], [2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(state_scales(y, "max"), [3.0, 2.0, 1.0])  # a state observed all 0 gets 1
    np.testing.assert_array_equal(state_scales(y, "range"), [2.0, 2.5, 1.0])


def test_gelu_is_the_tanh_form_and_its_slope_its_derivative():
    x = torch.linspace(-4, 4, 81, dtype=torch.float64, requires_grad=True)
    assert gelu(torch.tensor(0.5, dtype=torch.float64)).item() == pytest.approx(
        0.25 * (1 + math.tanh(math.sqrt(2 / math.pi) * (0.5 + 0.044715 * 0.125))), rel=1e-15)
    torch.testing.assert_close(gelu(x), torch.nn.functional.gelu(x, approximate="tanh"), rtol=1e-14, atol=1e-15)
    (slope,) = torch.autograd.grad(gelu(x).sum(), x)
    torch.testing.assert_close(gelu_slope(x), slope, rtol=1e-13, atol=1e-15)


def _task(t_obs, y_obs, y0, forecast_t) -> TrainingTask:
    names = tuple(f"y{j + 1}" for j in range(len(y0)))
    return TrainingTask("hand", Trajectory(np.asarray(t_obs), np.asarray(y_obs), names), np.asarray(y0),
                        np.asarray(forecast_t), t0=0.0)


def test_the_field_is_nn_of_the_scaled_state_times_y_scale_over_t_scale():
    # One state, one hidden unit: NN(x) = 2 gelu(x) + 0.5. Observations up to |y| = 4 over a window of
    # span 10 (initial time 0, last observation 10): dy/dt at y = 2 is 4 (2 gelu(2 / 4) + 0.5) / 10.
    task = _task([1.0, 5.0, 10.0], [[-4.0], [1.0], [3.0]], [0.0], [0.0, 10.0, 20.0])
    field, _, _ = StiffNODE.objective([BatchMember(StiffNODEParams(hidden=(1,)), task, 0)], "cpu", 100)
    with torch.no_grad():
        for w, value in zip([*field.weights, *field.biases], [1.0, 2.0, 0.0, 0.5]):
            w.fill_(value)
    assert field.y_scale.tolist() == [[4.0]] and field.t_scale == 10.0
    y = torch.tensor([[2.0]], dtype=torch.float64)
    du_dt = field.evaluator(field.rollout_params())(0.0, field.to_solver(y))
    g = 0.25 * (1 + math.tanh(math.sqrt(2 / math.pi) * (0.5 + 0.044715 * 0.125)))  # gelu(0.5)
    assert field.from_solver(du_dt).item() == pytest.approx(4 * (2 * g + 0.5) / 10, rel=1e-14)
    # range scaling: max - min = 7
    field, _, _ = StiffNODE.objective([BatchMember(StiffNODEParams(y_scale="range"), task, 0)], "cpu", 100)
    assert field.y_scale.tolist() == [[7.0]]


def test_batched_network_equals_each_seed_alone_and_its_jet_is_the_jacobian():
    y_scale = np.array([[1.0, 1e-3, 1e3]] * 3)
    batched = ScaledGELUField((5, 5), y_scale, 10.0, [3, 5, 7], "cpu")
    u = torch.randn(3, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = batched.evaluator(batched.rollout_params())(None, u)
    for b, seed in enumerate([3, 5, 7]):
        alone = ScaledGELUField((5, 5), y_scale[:1], 10.0, [seed], "cpu")
        torch.testing.assert_close(out[b : b + 1], alone.evaluator(alone.rollout_params())(None, u[b : b + 1]),
                                   rtol=1e-15, atol=0)
    assert not torch.equal(out[0], out[1])  # the seeds differ
    params = batched.rollout_params()
    f, J, f_t = batched.jet(params)(None, u)
    torch.testing.assert_close(f, out, rtol=0, atol=0)
    f_one = lambda x: batched.evaluator(params)(None, x.reshape(3, 1, 3)).reshape(3, 3)  # noqa: E731
    expected = jacrev(f_one)(u[:, 0]).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (B, out, in)
    torch.testing.assert_close(J[:, 0], expected, rtol=1e-12, atol=1e-18)
    assert torch.equal(f_t, torch.zeros_like(u))


def _stiff_linear_task() -> TrainingTask:
    """y1' = -1000 (y1 - y2), y2' = -y2 from (0, 1): eigenvalues -1000 and -1, so y1 rises within 1e-3
    and then decays with y2: y1 = 1000 / 999 (e^-t - e^-1000t), y2 = e^-t. 20 log-spaced observations
    from 1e-4 to 5."""
    t = np.logspace(-4, np.log10(5.0), 20)
    y = np.stack([1000 / 999 * (np.exp(-t) - np.exp(-1000 * t)), np.exp(-t)], 1)
    return _task(t, y, [0.0, 1.0], np.concatenate([[0.0], np.logspace(-4, 1, 11)]))


def test_a_short_fit_decreases_every_models_loss_on_a_stiff_linear_system():
    task = _stiff_linear_task()
    model = StiffNODE({"hidden": (8, 8)}).fit(task, [0, 1], FitConfig(epochs=40))
    history = model.loss_history
    assert history.shape == (40, 2) and np.isfinite(history).all()
    assert np.all(history[-1] < 0.9 * history[0]), history[[0, -1]]
    forecast = model.forecast(task.forecast_t)
    assert forecast.shape == (2, 12, 2) and np.isfinite(forecast).all()
    np.testing.assert_array_equal(forecast[:, 0], [[0.0, 1.0]] * 2)


def test_variants_of_the_scaling_train_as_one_batch_each_as_alone():
    task = _stiff_linear_task()
    by_max, by_range = StiffNODEParams(hidden=(4,)), StiffNODEParams(hidden=(4,), y_scale="range")
    assert StiffNODE(by_max).batch_key() == StiffNODE(by_range).batch_key()
    assert StiffNODE(by_max).batch_key() != StiffNODE(StiffNODEParams(hidden=(4,), lr=1e-3)).batch_key()
    batch = StiffNODE.fit_batch([BatchMember(by_max, task, 0), BatchMember(by_range, task, 1)], FitConfig(epochs=3))
    for b, (params, seed) in enumerate([(by_max, 0), (by_range, 1)]):
        alone = StiffNODE(params).fit(task, [seed], FitConfig(epochs=3))
        np.testing.assert_allclose(batch.loss_history[:, b], alone.loss_history[:, 0], rtol=1e-12)
        np.testing.assert_allclose(batch.forecast(task.forecast_t)[b], alone.forecast(task.forecast_t)[0],
                                   rtol=1e-10, atol=1e-14)


def test_partial_observation_is_not_applicable_with_the_reason():
    system = Registry().load("systems", "hh")({"observe": ["V"]})
    assert missing_capabilities(StiffNODE, system) == ["FullyObserved (it observes V only)"]


def test_conformance(session_cache):
    check_method(StiffNODE, cache_dir=session_cache, strict=True)
