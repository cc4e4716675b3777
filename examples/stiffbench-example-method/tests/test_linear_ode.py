"""linear_ode against the conformance kit and against fits whose answers are known by hand."""

import time

import numpy as np
import pytest
from stiffbench.api import BudgetExceeded, FitConfig, TrainingTask, Trajectory
from stiffbench.testing.conformance import MethodConformance
from stiffbench.testing.toy import DampedOscillator

from stiffbench_example_method.linear_ode import LinearODE


class TestLinearODEConformance(MethodConformance):
    method_cls = LinearODE
    strict = True  # also the 3-state chain over six decades with log-spaced observations


def task_from(t, y, forecast_t):
    """A fully observed task of the samples y(t), forecasting from y[0]."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float).reshape(len(t), -1)
    names = tuple(f"y{j}" for j in range(y.shape[1]))
    return TrainingTask("hand", Trajectory(t, y, names), y[0].copy(), np.asarray(forecast_t, dtype=float))


def test_a_straight_line_is_fitted_exactly_on_uneven_times():
    # y = 1 + 2t: dy/dt = 0 y + 2. The trapezoidal rule integrates a line exactly, so the fit is.
    t = [0.0, 0.5, 1.0, 2.0]
    model = LinearODE().fit(task_from(t, [1 + 2 * s for s in t], [0.0, 3.0]), [0], FitConfig(epochs=1))
    assert model.A == pytest.approx(np.zeros((1, 1)), abs=1e-12) and model.b == pytest.approx([2.0])
    assert model.forecast(np.array([0.0, 3.0]))[0, :, 0] == pytest.approx([1.0, 7.0])


def test_the_damped_oscillator_matrix_is_recovered():
    # x' = v, v' = -omega^2 x - 2 zeta omega v with omega = 2, zeta = 0.1; the trapezoidal rule at
    # dt = 0.05 errs by about (omega dt)^2 / 12 = 8e-4 relative.
    system = DampedOscillator()
    model = LinearODE().fit(system.training_task(), [0, 1], FitConfig(epochs=1))
    assert model.A == pytest.approx(np.array([[0.0, 1.0], [-4.0, -0.4]]), abs=4e-3)
    assert model.b == pytest.approx([0.0, 0.0], abs=1e-12)
    t = system.grid(system.horizon)
    forecast = model.forecast(t)
    assert forecast.shape == (2, len(t), 2) and np.array_equal(forecast[0], forecast[1])  # deterministic
    assert np.max(np.abs(forecast[0] - system.exact(t))) < 0.01  # |x| <= 1


def test_stable_turns_a_growing_spiral_into_a_closed_orbit():
    # y = e^{t/10} (cos 2t, sin 2t) solves dy/dt = [[0.1, -2], [2, 0.1]] y, eigenvalues 0.1 +- 2i.
    # Clipping the real parts leaves [[0, -2], [2, 0]]: a rotation, so |y(t)| stays |y0| = 1.
    t = np.linspace(0.0, 3.0, 601)
    task = task_from(t, np.exp(t / 10)[:, None] * np.stack([np.cos(2 * t), np.sin(2 * t)], 1), [0.0])
    growing = LinearODE().fit(task, [0], FitConfig(epochs=1))
    assert growing.A == pytest.approx(np.array([[0.1, -2.0], [2.0, 0.1]]), abs=1e-4)  # trapezoidal error
    stable = LinearODE({"stable": True}).fit(task, [0], FitConfig(epochs=1))
    assert stable.A == pytest.approx(np.array([[0.0, -2.0], [2.0, 0.0]]), abs=1e-4)
    late = np.array([100.0, 100.5])
    assert np.linalg.norm(stable.forecast(late)[0], axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert np.linalg.norm(growing.forecast(late)[0], axis=1) == pytest.approx(np.exp(late / 10), rel=1e-3)


def test_an_unstable_fit_forecasts_nan_or_inf_rather_than_raising():
    # y = e^t: the forecast e^1000 overflows (NaN/Inf), which the runner records as `diverged`.
    t = np.linspace(0.0, 1.0, 101)
    model = LinearODE().fit(task_from(t, np.exp(t), [0.0]), [0], FitConfig(epochs=1))
    forecast = model.forecast(np.array([1.0, 1000.0]))[0, :, 0]
    assert forecast[0] == pytest.approx(np.e, rel=1e-3) and not np.isfinite(forecast[1])


def test_the_fit_reports_one_epoch_and_respects_the_budget():
    task = DampedOscillator().training_task()
    reported = []
    LinearODE().fit(task, [0], FitConfig(epochs=5, progress=lambda epoch, loss: reported.append((epoch, loss))))
    assert len(reported) == 1 and reported[0][0] == 1 and 0 <= reported[0][1] < 1e-4
    with pytest.raises(BudgetExceeded):
        LinearODE().fit(task, [0], FitConfig(epochs=5, deadline=time.monotonic() - 1.0))
