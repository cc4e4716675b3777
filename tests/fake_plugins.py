"""Plugins for runner tests: well-behaved, faulty, and batching ones (injected, never registered)."""

import time

import numpy as np

from stiffbench.api import AbstractMethod, AbstractMetric, AbstractModel, AbstractSystem, KnownPhysics, PluginParams, TrainingTask
from stiffbench.testing.toy import DampedOscillator

CALLS = []  # (method name, kind of call, labels/seeds) appended by the fakes, inspected by tests


class Params(PluginParams):
    offset: float = 0.0


class _Offset(AbstractModel):
    """Forecasts the exact toy solution plus a per-member offset (or NaN / a wrong shape)."""

    def __init__(self, system, offsets, shape_error=False):
        self.system, self.offsets, self.shape_error = system, offsets, shape_error

    def forecast(self, t):
        exact = self.system.exact(np.asarray(t))
        out = np.stack([exact + o for o in self.offsets])
        return out[:, :-1] if self.shape_error else out


class Exact(AbstractMethod):
    name = "exact"
    description = "Exact toy solution plus `offset` (per seed batch)."
    Params = Params
    batches_seeds = True

    def fit(self, task, seeds, config):
        CALLS.append(("exact", "fit", tuple(seeds)))
        for epoch in range(1, config.epochs + 1):
            config.check(epoch, 0.0)
        return _Offset(DampedOscillator(), [self.params.offset] * len(seeds))


class SharedExact(Exact):
    name = "shared_exact"
    description = "Like exact, but variants share batches through fit_batch."

    def batch_key(self):
        return "all"

    @classmethod
    def fit_batch(cls, members, config):
        CALLS.append(("shared_exact", "fit_batch", tuple((m.params.offset, m.seed) for m in members)))
        return _Offset(DampedOscillator(), [m.params.offset for m in members])


class Raising(AbstractMethod):
    name = "raising"
    description = "Raises in fit."

    def fit(self, task, seeds, config):
        raise RuntimeError("kaboom\nsecond line")


class NaNs(Exact):
    name = "nans"
    description = "Forecasts NaN after a while."

    def fit(self, task, seeds, config):
        model = super().fit(task, seeds, config)
        model.offsets = [np.nan] * len(seeds)
        return model


class WrongShape(Exact):
    name = "wrong_shape"
    description = "Forecasts one sample too few."

    def fit(self, task, seeds, config):
        return _Offset(DampedOscillator(), [0.0] * len(seeds), shape_error=True)


class Slow(AbstractMethod):
    name = "slow"
    description = "Trains slowly, checking its budget each epoch."

    def fit(self, task, seeds, config):
        for epoch in range(1, config.epochs + 1):
            time.sleep(0.05)
            config.check(epoch, 1.0)
        return _Offset(DampedOscillator(), [0.0] * len(seeds))


class NeedsPhysics(Exact):
    name = "needs_physics"
    description = "Requires KnownPhysics."
    requires = (KnownPhysics,)

    def fit(self, task, seeds, config):
        assert task.physics is not None
        return super().fit(task, seeds, config)


class NoPhysicsOscillator(AbstractSystem):
    """The toy oscillator without the KnownPhysics capability."""

    name = "plain_oscillator"
    description = "Toy oscillator without physics."
    Params = DampedOscillator.Params
    state_names = DampedOscillator.state_names

    def __init__(self, params=None):
        super().__init__(params)
        self._inner = DampedOscillator(self.params)

    def reference(self, t_end, cache_dir=None):
        return self._inner.reference(t_end)

    def training_task(self, cache_dir=None) -> TrainingTask:
        return self._inner.training_task()

    def evaluation_windows(self):
        return self._inner.evaluation_windows()


class Hanging(AbstractMethod):
    name = "hanging"
    description = "Never returns and never checks its budget."

    def fit(self, task, seeds, config):
        while True:
            time.sleep(0.1)


class Crashing(AbstractMethod):
    name = "crashing"
    description = "Kills its own process, as a segfault would."

    def fit(self, task, seeds, config):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class Sleepy(Exact):
    name = "sleepy"
    description = "Takes one second per cell, one seed at a time."
    batches_seeds = False

    def fit(self, task, seeds, config):
        time.sleep(1.0)
        return super().fit(task, seeds, config)


ALL = ["Exact", "SharedExact", "Raising", "NaNs", "WrongShape", "Slow", "NeedsPhysics", "Hanging", "Crashing",
       "Sleepy"]


def write_distribution(site, dist_name: str, version: str, entry_points: dict[str, dict[str, str]]) -> None:
    """A fake installed distribution on `site` (a folder to put on PYTHONPATH): METADATA and
    entry_points.txt, which importlib.metadata discovers like any installed package."""
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def fake_distribution(site) -> None:
    """Register every fake plugin above (and the toy systems) as distribution `fakes` 1."""
    methods = {globals()[c].name: f"fake_plugins:{c}" for c in ALL}
    write_distribution(site, "fakes", "1", {
        "stiffbench.methods": methods,
        "stiffbench.systems": {"damped_oscillator": "stiffbench.testing.toy:DampedOscillator",
                               "plain_oscillator": "fake_plugins:NoPhysicsOscillator"},
    })


class RaisingMetric(AbstractMetric):
    name = "raising_metric"
    description = "Raises on every window."
    keys = ("never",)

    def compute(self, pred, true, system):
        raise ZeroDivisionError("metric bug")
