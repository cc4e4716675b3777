"""Timing of linear_ode with pytest-benchmark (timed with --benchmark-enable; otherwise run once)."""

import numpy as np
import torch
from stiffbench.api import FitConfig
from stiffbench.testing.toy import DampedOscillator

from stiffbench_example_method.linear_ode import LinearODE

torch.set_num_threads(1)  # as in the runner's workers; timings with more threads vary with the machine's load


def test_fit_and_forecast_20001_times(benchmark):
    """The fit on the toy's 41 observations and a forecast over 20001 times to t = 1000."""
    task = DampedOscillator({"t_end": 1000.0}).training_task()

    def fit_and_forecast():
        return LinearODE().fit(task, [0], FitConfig(epochs=1)).forecast(task.forecast_t)

    forecast = benchmark(fit_and_forecast)
    assert forecast.shape == (1, 20001, 2) and np.isfinite(forecast).all()
