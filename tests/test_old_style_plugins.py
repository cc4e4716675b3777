"""Plugins written against the API before the protocol layer keep working unchanged: a system that
implements reference / training_task / evaluation_windows itself (uniform grid, TrainingTask built
positionally with its dt), a Spiking system that only names its voltage_state, a method that reads
task.dt and fits one seed at a time, and a metric with static keys. They run through the runner
and render, with the built-in metrics, exactly as they did."""

import numpy as np
import pytest

from stiffbench.api import (
    AbstractMethod,
    AbstractMetric,
    AbstractModel,
    AbstractSystem,
    PluginParams,
    Spiking,
    TrainingTask,
    Trajectory,
    Window,
)
from stiffbench.leaderboard import build
from stiffbench.registry import PluginSpec, Registry
from stiffbench.runner import Runner, metric_instances
from stiffbench.store import Store
from stiffbench.suite import Suite

DT = 0.1


def pulse_train(t):
    """A 'voltage' at -65 with a 1 ms wide spike to +30 every 10 ms (at 5, 15, 25, ...), and a slow gate."""
    phase = np.mod(t - 5.0, 10.0)
    v = np.where(np.minimum(phase, 10.0 - phase) <= 0.5, 30.0, -65.0)
    return np.stack([v, 0.5 + 0.1 * np.sin(t)], axis=1)


class OldSpikingSystem(AbstractSystem, Spiking):
    name = "old_spiking"
    description = "A hand-written spiking system in the pre-protocol style."
    state_names = ("V", "g")
    voltage_state = "V"

    class Params(PluginParams):
        horizon: float = 60.0

    def grid(self, t_end):
        return np.arange(round(t_end / DT) + 1) * DT

    def reference(self, t_end, cache_dir=None):
        t = self.grid(t_end)
        return Trajectory(t, pulse_train(t), self.state_names)

    def training_task(self, cache_dir=None):
        obs = self.reference(20.0)
        return TrainingTask(self.name, obs, obs.y[0].copy(), self.grid(self.horizon), DT)

    def evaluation_windows(self):
        return [Window("extrapolation", 20.0, self.params.horizon)]


class _Delayed(AbstractModel):
    def __init__(self, delay, n):
        self.delay, self.n = delay, n

    def forecast(self, t):
        return np.stack([pulse_train(np.asarray(t) - self.delay)] * self.n)


class OldMethod(AbstractMethod):
    """Forecasts the true pulse train delayed by one sampling step: it reads task.dt."""

    name = "old_method"
    description = "Pre-protocol style method using task.dt."

    def fit(self, task, seeds, config):
        assert task.dt == DT and len(seeds) == 1
        for epoch in range(1, config.epochs + 1):
            config.check(epoch, 0.0)
        return _Delayed(task.dt, len(seeds))


class OldMetric(AbstractMetric):
    name = "old_peak"
    description = "Largest |error| of the first state (static keys, no units)."
    keys = ("peak_error",)

    def compute(self, pred, true, system):
        return {"peak_error": float(np.max(np.abs(pred.y[:, 0] - true.y[:, 0])))}


def registry():
    return Registry([
        PluginSpec("systems", "old_spiking", f"{__name__}:OldSpikingSystem", "old", "1"),
        PluginSpec("methods", "old_method", f"{__name__}:OldMethod", "old", "1"),
        PluginSpec("metrics", "old_peak", f"{__name__}:OldMetric", "old", "1"),
        *[PluginSpec("metrics", name, f"stiffbench.metrics.{name}:{cls}", "stiffbench", "0") for name, cls in [
            ("rmse", "RMSE"), ("spike_f1", "SpikeF1"), ("phase_drift", "PhaseDrift"), ("isi_error", "ISIError")]],
    ])


def test_old_style_plugins_run_and_render(tmp_path):
    suite = Suite(name="old", seeds=[0, 1], epochs=2, systems=[{"name": "old_spiking"}],
                  methods=[{"label": "late", "method": "old_method"}])
    reg = registry()
    with Store(tmp_path / "res") as store:
        report = Runner(reg, store).run(suite)
        records = store.get_many(c.key for c in report.cells)
        board = build(suite, report.cells, store, metric_instances(reg, suite))
    assert len(records) == 2 and all(r.status == "ok" for r in records.values())
    values = next(iter(records.values())).metrics["extrapolation"]
    # spikes at 25, 35, 45, 55 (peak = first sample of each plateau, 0.5 ms before the centre), all
    # predicted 0.1 ms late with the HH default settings of Spiking (0 threshold, 2 ms tolerance)
    assert values["spike_f1"] == 1.0
    assert values["phase_drift"] == pytest.approx(0.1)
    assert values["isi_error"] == pytest.approx(0.0, abs=1e-12)
    assert values["peak_error"] == pytest.approx(95.0)  # -65 against +30 at a plateau's edge
    header = next(line for line in board.splitlines() if line.startswith("| method"))
    # no units declared anywhere: plain keys; no bounds: no bound column
    assert "| peak_error " in header and "| phase_drift " in header and "rmse_V " in header
    assert "(" not in header and "bound_violation" not in header
