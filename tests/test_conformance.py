"""Every registered plugin passes the conformance kit (stiffbench.testing.conformance), and the kit
itself catches what it should."""

from dataclasses import replace

import numpy as np
import pytest

from stiffbench.api import State, Window
from stiffbench.protocol import LogGrid, Times
from stiffbench.registry import Registry
from stiffbench.testing.conformance import check_method, check_metric, check_system
from stiffbench.testing.toy_chain import ScaledChain

REGISTRY = Registry()
SYSTEMS = list(REGISTRY.specs("systems"))
METRICS = list(REGISTRY.specs("metrics"))

# name -> (system instance, reference over its horizon): built once per test session.
_REFERENCES: dict = {}


@pytest.fixture(scope="session")
def references(session_cache):
    def get(name):
        if name not in _REFERENCES:
            system = REGISTRY.load("systems", name)()
            _REFERENCES[name] = system, system.reference(system.horizon, session_cache)
        return _REFERENCES[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", SYSTEMS)
def test_system_conformance(name, session_cache):
    check_system(REGISTRY.load("systems", name), cache_dir=session_cache)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY.specs("methods")))
def test_method_conformance(name, session_cache):
    check_method(REGISTRY.load("methods", name), cache_dir=session_cache, strict=True)


@pytest.mark.slow
@pytest.mark.parametrize("system_name", SYSTEMS)
@pytest.mark.parametrize("metric_name", METRICS)
def test_metric_conformance(metric_name, system_name, references):
    system, reference = references(system_name)
    metric = REGISTRY.load("metrics", metric_name)
    for window in system.evaluation_windows():
        check_metric(metric, system, reference.window(window.t0, window.t1))


@pytest.mark.parametrize("metric_name", METRICS)
def test_metric_conformance_on_a_log_grid(metric_name, session_cache):
    system = ScaledChain()
    reference = system.reference(system.horizon, session_cache)
    for window in system.evaluation_windows():
        check_metric(REGISTRY.load("metrics", metric_name), system, reference.window(window.t0, window.t1))


# ----------------------------------------------------------------------------------------------
# The 3-state toy of the method checks
# ----------------------------------------------------------------------------------------------

def test_scaled_chain_reference_matches_bateman(tmp_path):
    system = ScaledChain()
    ref = system.reference(system.horizon, tmp_path)
    exact = system.exact(ref.t)
    scale = np.abs(exact).max(axis=0)
    assert scale.tolist() == pytest.approx([1.0, 4.65e-4, 1e3], rel=0.01)  # states six decades apart
    assert np.all(np.abs(ref.y - exact) <= 1e-8 * scale), np.max(np.abs(ref.y - exact) / scale, axis=0)
    task = system.training_task(tmp_path)
    assert np.all(np.abs(task.observations.y - system.exact(task.observations.t)) <= 1e-8 * scale)


def test_scaled_chain_protocol_is_what_uniform_toys_lack(tmp_path):
    system = ScaledChain()
    task = system.training_task(tmp_path)
    obs_t = task.observations.t
    assert task.dt is None and task.initial_time == 0.0 and obs_t[0] == pytest.approx(0.01)  # after t0
    assert np.diff(obs_t).max() == pytest.approx(2.5, rel=0.01) and len(obs_t) == 25
    steps = np.diff(task.forecast_t)
    assert steps.max() / steps[1:].min() > 100  # log grid
    assert [w.name for w in system.evaluation_windows()] == ["extrapolation"]
    assert system.evaluation_windows()[0].t0 == obs_t[-1]
    check_system(ScaledChain, cache_dir=tmp_path)


# ----------------------------------------------------------------------------------------------
# The system checks catch broken systems
# ----------------------------------------------------------------------------------------------

class _BadJacobian(ScaledChain):
    def jac(self, t, y):
        J = super().jac(t, y)
        J[2, 1] *= 1.001
        return J


class _TorchDiffers(ScaledChain):
    def rhs(self, t, y, xp):
        out = super().rhs(t, y, xp)
        return out if xp is np else out * (1 + 1e-6)


class _OutOfBounds(ScaledChain):
    states = (State("A", bounds=(0.0, 0.5)), State("B", bounds=(0.0, None)), State("C", bounds=(0.0, None)))


class _PartlyObserved(ScaledChain):
    def protocol(self):
        return replace(super().protocol(), observed=("A", "C"))


class _ObservedOutOfOrder(ScaledChain):
    def protocol(self):
        return replace(super().protocol(), observed=("C", "A"))


class _ObservesPastHorizon(ScaledChain):
    def protocol(self):
        return replace(super().protocol(), train=(0.0, 100.0), observe=Times.log(0.01, 100.0, 25))


class _ShortForecast(ScaledChain):
    def protocol(self):  # the grid's last point (10) lies far short of the window's end
        p = super().protocol()
        return replace(p, grid=LogGrid(0.01, 1), windows=(Window("extrapolation", 9.0, 31.0),))


def test_partial_observation_passes(tmp_path):
    check_system(_PartlyObserved, cache_dir=tmp_path)
    system = _PartlyObserved()
    task = system.training_task(tmp_path)
    assert task.observations.state_names == ("A", "C") and not task.fully_observed


@pytest.mark.parametrize("cls, message", [
    (_BadJacobian, "jac disagrees with finite differences"),
    (_TorchDiffers, "rhs \\(torch float64\\) differs"),
    (_OutOfBounds, "outside its bounds"),
    (_ObservedOutOfOrder, "in that order"),  # refused by the core itself (ValueError)
    (_ObservesPastHorizon, "must lie in"),
    (_ShortForecast, "short of the horizon"),
])
def test_check_system_catches(cls, message, tmp_path):
    with pytest.raises((AssertionError, ValueError), match=message):
        check_system(cls, cache_dir=tmp_path)


# ----------------------------------------------------------------------------------------------
# The method checks catch methods written for one toy only
# ----------------------------------------------------------------------------------------------

def test_check_method_catches_a_method_that_assumes_two_states(tmp_path):
    import fake_plugins

    with pytest.raises(AssertionError, match="ScaledChain: forecast has shape"):
        check_method(fake_plugins.Exact, cache_dir=tmp_path, strict=True)
    # not strict (the default, for plugins written before the 3-state toy): a FutureWarning instead
    with pytest.warns(FutureWarning, match="fails the conformance checks on ScaledChain"):
        check_method(fake_plugins.Exact, cache_dir=tmp_path)


def test_check_method_needs_a_toy_with_the_required_capabilities(tmp_path):
    import fake_plugins
    from stiffbench.api import Spiking

    class NeedsSpikes(fake_plugins.Exact):
        requires = (Spiking,)

    with pytest.raises(AssertionError, match="no toy system"):
        check_method(NeedsSpikes, cache_dir=tmp_path)
