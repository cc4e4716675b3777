"""Collocation: the kernel smoother (hand-computed on polynomials), the derivative-matching loss, a
fit that recovers a linear flow, batching, parameters, n/a under partial observation, and the
conformance kit."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from stiffbench.api import BatchMember, FitConfig, Trajectory, missing_capabilities
from stiffbench.registry import Registry
from stiffbench.testing.conformance import check_method
from stiffbench.testing.toy import DampedOscillator
from stiffbench_methods._neural_ode import ObservationStats, VectorField
from stiffbench_methods._smoothing import GCV_SPACINGS, KernelSmoother, local_polynomial
from stiffbench_methods.collocation import Collocation, CollocationParams, CollocationTargets, derivative_matching

# A non-uniform grid on [0, 2 pi]: 200 points, each moved by up to 40 % of the mean spacing.
_SPACING = 2 * np.pi / 199
NON_UNIFORM = np.linspace(0, 2 * np.pi, 200) + np.random.default_rng(7).uniform(-0.4, 0.4, 200) * _SPACING


def test_local_linear_reproduces_a_line_and_local_quadratic_a_parabola_on_a_non_uniform_grid():
    t = NON_UNIFORM
    value, slope = KernelSmoother(bandwidth=5.0, degree=1)(t, np.stack([3 - 2 * t], 1))
    np.testing.assert_allclose(value[:, 0], 3 - 2 * t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(slope[:, 0], -2.0, rtol=0, atol=1e-10)
    value, slope = KernelSmoother(bandwidth=5.0, degree=2)(t, np.stack([1 + t - 0.5 * t * t], 1))
    np.testing.assert_allclose(value[:, 0], 1 + t - 0.5 * t * t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(slope[:, 0], 1 - t, rtol=0, atol=1e-10)


def test_local_linear_on_a_parabola_by_hand():
    # Unit grid, Epanechnikov half-width 2: an inner point sees its neighbours at u = +-1/2 with weight
    # 3/4 (1 - 1/4) = 9/16 and itself with 3/4. The symmetric window's local line through x^2 has
    # the weighted mean as value, x^2 + (2 * 9/16 * 1) / (3/4 + 2 * 9/16) = x^2 + 0.6, and the exact
    # slope 2x; its leverage is (3/4) / (15/8) = 0.4. At x = 0 the window holds 0 and 1 only (2 lies
    # on the kernel's edge, weight 0): the line through (0, 0) and (1, 1).
    x = np.arange(10.0)
    value, slope, leverage = local_polynomial(x, np.stack([x * x], 1), 2.0, 1, "epanechnikov")
    np.testing.assert_allclose(value[1:-1, 0], x[1:-1] ** 2 + 0.6, rtol=0, atol=1e-12)
    np.testing.assert_allclose(slope[1:-1, 0], 2 * x[1:-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(leverage[1:-1], 0.4, rtol=0, atol=1e-12)
    assert (value[0, 0], slope[0, 0]) == pytest.approx((0.0, 1.0), abs=1e-12)


def test_log_axis_reproduces_a_line_in_log_time():
    t = np.logspace(-3, 2, 30)
    smoother = KernelSmoother(bandwidth=5.0, degree=1)
    assert smoother.axis_for(t) == "log" and smoother.axis_for(NON_UNIFORM) == "linear"
    _, slope = smoother(t, np.stack([2 - 3 * np.log(t)], 1))
    np.testing.assert_allclose(slope[:, 0] * t, -3.0, rtol=0, atol=1e-10)  # dy/dt = -3 / t
    with pytest.raises(ValueError, match="smoothing on log time needs positive times; the first is 0"):
        KernelSmoother(axis="log")(np.arange(10.0), np.zeros((10, 1)))


def test_derivative_of_sin_on_a_non_uniform_grid():
    # The local quadratic's slope is off by about f''' h^2 mu_4 / (6 mu_2) = h^2 / 14 for the
    # Epanechnikov kernel (mu_2 = 1/5, mu_4 = 3/35): with h = 5 spacings of 0.0316, 1.8e-3 where
    # |cos| = 1 (Fan & Gijbels 1996, thm. 3.1); a local cubic's error is of order h^4.
    _, slope = KernelSmoother(bandwidth=5.0, degree=2)(NON_UNIFORM, np.sin(NON_UNIFORM)[:, None])
    assert np.max(np.abs(slope[:, 0] - np.cos(NON_UNIFORM))) < 2e-3
    _, slope = KernelSmoother(bandwidth=5.0, degree=3)(NON_UNIFORM, np.sin(NON_UNIFORM)[:, None])
    assert np.max(np.abs(slope[:, 0] - np.cos(NON_UNIFORM))) < 1e-4


def test_gcv_chooses_each_states_bandwidth():
    # A noisy line: every bandwidth is unbiased, so the widest candidate wins. A noise-free sine of
    # 12 samples per period: every bandwidth adds bias only, so the narrowest valid one wins.
    x = np.arange(300.0)
    y = np.stack([0.5 * x + np.random.default_rng(1).standard_normal(300), np.sin(2 * np.pi * x / 12)], 1)
    value, slope = KernelSmoother(degree=1)(x, y)
    wide = KernelSmoother(bandwidth=float(GCV_SPACINGS[-1]), degree=1)(x, y)
    narrow = KernelSmoother(bandwidth=float(GCV_SPACINGS[0]), degree=1)(x, y)
    np.testing.assert_array_equal(value[:, 0], wide[0][:, 0])
    np.testing.assert_array_equal(slope[:, 1], narrow[1][:, 1])


def test_too_narrow_a_bandwidth_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="at x = 0 only 2 sample.s. carry weight, a local polynomial of degree 2"):
        KernelSmoother(bandwidth=2.0, degree=2)(np.arange(10.0), np.zeros((10, 1)))


def test_targets_of_two_models():
    # y = (t^2, 3 t, 5) on [0, 1] is reproduced by any local quadratic: dz = (2 t, 3, 0). The rate
    # scales are RMS values: sqrt(mean(4 t^2)) = 2 sqrt(385 / 1100) on 11 points, 3 (where a std would
    # be 0), and for the constant the floor 1e-9 x 5 / 1 (its smoothed rate is round-off).
    t = np.linspace(0.0, 1.0, 11)
    obs = Trajectory(t, np.stack([t * t, 3 * t, 5 + 0 * t], 1), ("a", "b", "c"))
    smoothers = [KernelSmoother(bandwidth=3.0, degree=2), KernelSmoother(bandwidth=5.0, degree=2)]
    targets = CollocationTargets.of([obs, obs], smoothers, torch.float64, "cpu")
    assert targets.z.shape == targets.dz.shape == (2, 11, 3) and targets.scale.shape == (2, 1, 3)
    np.testing.assert_allclose(targets.dz.numpy(), np.broadcast_to(np.stack([2 * t, 3 + 0 * t, 0 * t], 1), (2, 11, 3)),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(targets.scale.numpy()[:, 0], [[2 * np.sqrt(385 / 1100), 3.0, 5e-9]] * 2, rtol=1e-9)
    assert [s.deriv_std.tolist() for s in targets.stats] == targets.scale[:, 0].tolist()


def test_derivative_matching_loss_by_hand():
    # Targets off the field by 0.1, 0.2 and 0 of each state's scale at the three samples: per sample
    # sum_j over 2 states, 2 x (0.01, 0.04, 0), averaged over the samples: 0.1 / 3.
    field = VectorField(CollocationParams(dtype="float64"), [ObservationStats.identity(2)], [0], "cpu")
    t = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    z = torch.tensor([[[0.5, -1.0], [0.2, 0.3], [-0.7, 0.1]]], dtype=torch.float64)
    scale = torch.tensor([[[2.0, 0.01]]], dtype=torch.float64)
    offset = torch.tensor([[[0.1], [0.2], [0.0]]], dtype=torch.float64)
    with torch.no_grad():
        dz = field.evaluator(field.rollout_params())(t, z) + offset * scale
    targets = CollocationTargets(t, z, dz, scale, [ObservationStats.identity(2)])
    assert derivative_matching(field, targets)().item() == pytest.approx(0.1 / 3, rel=1e-12)


@pytest.fixture(scope="module")
def oscillator_fit():
    """The undamped oscillator x' = v, v' = -4 x observed noise-free on [0, 7] (2.2 periods),
    forecast to t = 10; three seeds, 300 epochs."""
    system = DampedOscillator({"zeta": 0.0, "t_train": 7.0, "t_end": 10.0})
    task = system.training_task()
    model = Collocation().fit(task, [0, 1, 2], FitConfig(epochs=300))
    return system, task, model


@pytest.mark.slow
def test_recovers_a_linear_flow_well_enough_to_forecast(oscillator_fit):
    # On the observed states the learned field's RMS error is within 1 % of the true field's std
    # (seeds 0-2 reach 0.2 to 0.4 %: their losses, about 1e-5, are squared relative errors); over 1.4
    # periods past the data each seed's forecast RMSE stays within 10 % of the states' std, a phase
    # error of about 0.1 rad (seeds 0-2 reach 0.3 to 5 %).
    system, task, model = oscillator_fit
    z = torch.as_tensor(np.stack([task.observations.y] * 3), dtype=torch.float32)
    learned = model.field(0.0, z).double().numpy()
    true = system.torch_vector_field()(0.0, torch.as_tensor(task.observations.y)).numpy()
    assert np.all(np.sqrt(np.mean((learned - true) ** 2, axis=1)) < 0.01 * true.std(0))
    reference = system.reference(system.horizon)
    after = reference.t >= 7.0 - 1e-9
    forecast = model.forecast(task.forecast_t)[:, after]
    rmse = np.sqrt(np.mean((forecast - reference.y[after]) ** 2, axis=1))
    assert np.all(rmse < 0.1 * reference.y[after].std(0)), rmse


@pytest.mark.slow
def test_batched_seeds_differ(oscillator_fit):
    _, task, model = oscillator_fit
    forecast = model.forecast(task.forecast_t)
    assert not np.allclose(forecast[0], forecast[1], rtol=1e-4, atol=0)
    assert not np.allclose(forecast[1], forecast[2], rtol=1e-4, atol=0)


def test_variants_of_the_smoother_train_as_one_batch_each_as_alone():
    task = DampedOscillator().training_task()
    variants = [CollocationParams(), CollocationParams(bandwidth=4.0, degree=2, kernel="gaussian")]
    assert Collocation(variants[0]).batch_key() == Collocation(variants[1]).batch_key()
    together = Collocation.fit_batch([BatchMember(p, task, 3) for p in variants], FitConfig(epochs=20))
    for b, p in enumerate(variants):
        alone = Collocation(p).fit(task, [3], FitConfig(epochs=20))
        np.testing.assert_allclose(together.forecast(task.forecast_t)[b], alone.forecast(task.forecast_t)[0],
                                   rtol=1e-5, atol=1e-6)


def test_parameters_are_checked():
    with pytest.raises(ValidationError, match="collocation trains without a solver: gradient does not apply"):
        CollocationParams(gradient="backsolve")
    with pytest.raises(ValidationError):
        CollocationParams(bandwidth="silverman")
    with pytest.raises(ValidationError):
        CollocationParams(degree=4)


def test_partial_observation_is_not_applicable_with_the_reason():
    system = Registry().load("systems", "hh")({"observe": ["V"]})
    assert missing_capabilities(Collocation, system) == ["FullyObserved (it observes V only)"]


@pytest.mark.slow
def test_conformance(session_cache):
    check_method(Collocation, cache_dir=session_cache, strict=True)
