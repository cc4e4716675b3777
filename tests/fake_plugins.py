"""Plugins for runner tests: well-behaved, faulty, and batching ones (injected, never registered)."""

import time

import numpy as np

from stiffbench.api import AbstractMethod, AbstractModel, AbstractSystem, KnownPhysics, PluginParams, TrainingTask
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
