"""Conformance checks every plugin must pass (in the spirit of `optuna.testing`).

Plugin authors either call the `check_*` functions from their own tests or subclass the
pytest classes at the bottom and set the plugin class:

    from stiffbench.testing.conformance import MethodConformance
    class TestMyMethod(MethodConformance):
        method_cls = MyMethod

Method checks train on the tiny `DampedOscillator` (2 states, 41 training samples) for a few
epochs, so they take seconds. `check_system` computes the system's reference over its whole
horizon (cached under `cache_dir`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from pydantic import ValidationError

from ..api import (
    AbstractMethod,
    AbstractMetric,
    AbstractSystem,
    FitConfig,
    KnownPhysics,
    Spiking,
    Trajectory,
    missing_capabilities,
)
from .toy import DampedOscillator


def _check_params(cls) -> None:
    cls.Params()  # defaults must validate
    with pytest.raises(ValidationError):
        cls.Params(definitely_not_a_parameter=1)  # unknown keys are errors
    assert isinstance(cls.description, str) and cls.description.strip(), "description must be a non-empty string"


def check_system(cls: type[AbstractSystem], cache_dir=None) -> None:
    """Defaults validate; the task, grids, windows and capabilities are consistent."""
    _check_params(cls)
    system = cls()
    names = system.state_names
    assert isinstance(names, tuple) and len(names) > 0 and len(set(names)) == len(names)
    task = system.training_task(cache_dir)
    obs = task.observations
    assert obs.state_names == names and task.y0.shape == (len(names),)
    assert np.isfinite(obs.y).all() and np.all(np.diff(obs.t) > 0)
    assert task.forecast_t[0] == pytest.approx(obs.t[0]) and task.forecast_t[-1] >= system.horizon - 1e-9
    assert np.allclose(np.diff(task.forecast_t), task.dt, rtol=1e-6)
    windows = system.evaluation_windows()
    assert windows and all(w.t0 < w.t1 for w in windows) and len({w.name for w in windows}) == len(windows)
    ref = system.reference(system.horizon, cache_dir)
    assert ref.state_names == names and np.isfinite(ref.y).all()
    assert len(ref.t) == len(task.forecast_t) and np.allclose(ref.t, task.forecast_t)
    assert np.allclose(ref.y[0], task.y0), "the reference must start at the task's initial state"
    if isinstance(system, KnownPhysics):
        import torch

        z = torch.as_tensor(np.stack([task.y0, task.y0]), dtype=torch.float64)
        dz = system.torch_vector_field()(torch.tensor(0.0, dtype=torch.float64), z)
        assert dz.shape == z.shape and torch.isfinite(dz).all()
    if isinstance(system, Spiking):
        assert system.voltage_state in names


def check_method(cls: type[AbstractMethod], params: dict | None = None, epochs: int = 3) -> None:
    """Forecast shape and finiteness on the toy task; the same seed gives the same forecast;
    a batch of seeds equals the seeds trained alone (for methods that batch)."""
    _check_params(cls)
    system = DampedOscillator()
    method = cls(params or {})
    assert not missing_capabilities(method, system), "the toy system offers KnownPhysics only"
    task = system.training_task()
    if KnownPhysics in cls.requires:
        from dataclasses import replace

        task = replace(task, physics=system.torch_vector_field())
    seeds = [3, 5] if cls.batches_seeds else [3]
    forecast = np.asarray(method.fit(task, seeds, FitConfig(epochs=epochs)).forecast(task.forecast_t))
    assert forecast.shape == (len(seeds), len(task.forecast_t), len(system.state_names))
    assert np.isfinite(forecast).all(), "a few epochs on the toy oscillator must not diverge"
    again = np.asarray(cls(params or {}).fit(task, seeds[-1:], FitConfig(epochs=epochs)).forecast(task.forecast_t))
    np.testing.assert_allclose(again[0], forecast[-1], rtol=1e-4, atol=1e-6)


def check_metric(cls: type[AbstractMetric], system: AbstractSystem, trajectory: Trajectory) -> None:
    """Returns exactly its keys as floats or None; deterministic; identical inputs give finite values."""
    _check_params(cls)
    metric = cls()
    if missing_capabilities(metric, system):
        return
    keys = metric.result_keys(system)
    assert keys and len(set(keys)) == len(keys)
    noisy = Trajectory(trajectory.t, trajectory.y * 1.01 + 0.1, trajectory.state_names)
    for pred in (trajectory, noisy):
        values = metric.compute(pred, trajectory, system)
        assert set(values) == set(keys), f"{cls.name} returned {sorted(values)}, declared {sorted(keys)}"
        assert all(v is None or type(v) is float for v in values.values())
        assert values == metric.compute(pred, trajectory, system)


class SystemConformance:
    """Subclass and set `system_cls` to run the system checks under pytest."""

    system_cls: ClassVar[type[AbstractSystem]]

    def test_system_conformance(self, tmp_path):
        check_system(self.system_cls, cache_dir=tmp_path)


class MethodConformance:
    """Subclass and set `method_cls` (and optionally `params`) to run the method checks."""

    method_cls: ClassVar[type[AbstractMethod]]
    params: ClassVar[dict] = {}

    def test_method_conformance(self):
        check_method(self.method_cls, self.params)
