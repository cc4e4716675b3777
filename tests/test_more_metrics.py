"""The metrics beyond spikes (rel_l2, log_error, period_error, amp_error, out_of_bounds, valid_time)
on small constructed trajectories with hand-computed values, their undefined cases, their absence
where a system lacks what they need, and the conformance checks on the built-in systems."""

import numpy as np
import pytest
from pydantic import ValidationError

from stiffbench.api import Bounded, Oscillating, Trajectory, Window, missing_capabilities
from stiffbench.leaderboard import window_table
from stiffbench.metrics.log_error import LogError
from stiffbench.metrics.oscillation import AmplitudeError, PeriodError, upward_crossings
from stiffbench.metrics.out_of_bounds import OutOfBounds
from stiffbench.metrics.valid_time import ValidTime
from stiffbench.metrics.rel_l2 import RelativeL2
from stiffbench.registry import PluginSpec, Registry
from stiffbench.scoring import metric_keys, score
from stiffbench.store import CellRecord
from stiffbench.testing.conformance import check_metric
from test_metrics import _StubSystem

NEW_METRICS = (RelativeL2, LogError, PeriodError, AmplitudeError, OutOfBounds, ValidTime)


class StubXY(_StubSystem):
    """No capability besides FullyObserved."""

    name = "stub_xy"
    state_names = ("x", "y")
    time_unit = "ms"


class StubOscillator(_StubSystem, Oscillating):
    name = "stub_osc"
    state_names = ("x", "v")
    oscillation_state = "x"


class StubChemistry(_StubSystem, Bounded):
    """Every state bounded below by 0: a concentration (one-sided) and a fraction (two-sided)."""

    name = "stub_chem"
    state_names = ("a", "b")
    state_bounds = {"a": (0.0, np.inf), "b": (0.0, 1.0)}


class StubGates(_StubSystem, Bounded):
    """Hodgkin-Huxley-like: a voltage without bounds, a gate in [0, 1], a concentration >= 0."""

    name = "stub_gates"
    state_names = ("V", "g", "c")
    state_bounds = {"g": (0.0, 1.0), "c": (0.0, np.inf)}


class StubSigned(_StubSystem, Bounded):
    """Every state bounded, but one may be negative."""

    name = "stub_signed"
    state_names = ("a", "b")
    state_bounds = {"a": (-1.0, 1.0), "b": (0.0, np.inf)}


def traj(t, *columns, names):
    return Trajectory(np.asarray(t, dtype=float), np.column_stack(columns).astype(float), names)


def computed(metric, pred, true, system):
    """compute(), checking it returns exactly result_keys as floats or None."""
    result = metric.compute(pred, true, system)
    assert tuple(result) == metric.result_keys(system)
    assert all(v is None or type(v) is float for v in result.values())
    return result


# ----------------------------------------------------------------------------------------------
# Plugin shape, registration
# ----------------------------------------------------------------------------------------------

def test_plugins_load_through_a_registry_in_rank_order():
    values = {cls.name: f"{cls.__module__}:{cls.__name__}" for cls in NEW_METRICS}
    registry = Registry(specs=[PluginSpec("metrics", name, value, "stiffbench", "0") for name, value in values.items()])
    classes, errors = registry.load_all("metrics")
    assert errors == []
    assert list(classes) == ["rel_l2", "log_error", "period_error", "amp_error", "valid_time", "out_of_bounds"]
    for cls in NEW_METRICS:
        assert cls.description and cls.Params() is not None


@pytest.mark.parametrize("cls, params", [(LogError, {"floor": 0.0}), (LogError, {"floor": 1.0}),
                                         (ValidTime, {"tolerance": 0.0}), (OutOfBounds, {"rel_tol": -1.0}),
                                         (OutOfBounds, {"abs_tol": -1.0}), (RelativeL2, {"unknown": 1})])
def test_parameters_are_validated(cls, params):
    with pytest.raises(ValidationError):
        cls(params)


# ----------------------------------------------------------------------------------------------
# rel_l2
# ----------------------------------------------------------------------------------------------

def test_rel_l2_per_state_and_none_for_a_zero_truth():
    t = [0.0, 1.0]
    true = traj(t, [3.0, 4.0], [0.0, 0.0], names=StubXY.state_names)
    pred = traj(t, [0.0, 4.0], [1.0, 1.0], names=StubXY.state_names)
    # x: ||(-3, 0)|| / ||(3, 4)|| = 3/5; y: the true trace is all zero -> None
    assert RelativeL2().result_keys(StubXY()) == ("rel_l2_x", "rel_l2_y")
    assert computed(RelativeL2(), pred, true, StubXY()) == {"rel_l2_x": 0.6, "rel_l2_y": None}


def test_rel_l2_is_scale_free():
    t = np.linspace(0.0, 1.0, 11)
    true = traj(t, 1e-6 * (1 + t), 1e6 * np.cos(t), names=StubXY.state_names)
    pred = traj(t, 2e-6 * (1 + t), 0.5e6 * np.cos(t), names=StubXY.state_names)
    # pred = 2 true: ||true|| / ||true|| = 1; pred = true / 2: 1/2, whatever the state's scale
    assert computed(RelativeL2(), pred, true, StubXY()) == pytest.approx({"rel_l2_x": 1.0, "rel_l2_y": 0.5})


# ----------------------------------------------------------------------------------------------
# log_error
# ----------------------------------------------------------------------------------------------

DECAY_T = np.arange(11.0)
DECAY = 10.0 ** -DECAY_T  # an exponential decay over 10 decades, 1 sample per decade


def test_log_error_on_an_exponential_decay_spanning_ten_decades():
    true = traj(DECAY_T, DECAY, np.full(11, 0.5), names=StubChemistry.state_names)
    # a: pred = true * sqrt(10), half a decade off at every sample -> 0.5 decades;
    # b: pred = true * 10 at the odd samples (5 of 11), exact at the others -> sqrt(5/11)
    pred = traj(DECAY_T, DECAY * np.sqrt(10), 0.5 * 10.0 ** (DECAY_T % 2), names=StubChemistry.state_names)
    result = computed(LogError(), pred, true, StubChemistry())
    assert result == pytest.approx({"log_error_a": 0.5, "log_error_b": np.sqrt(5 / 11)})
    # rmse would see only the first samples of a; the log error weighs every decade alike
    assert LogError().key_units(StubChemistry()) == {"log_error_a": "decades", "log_error_b": "decades"}


def test_log_error_floor_skips_unresolved_truth_and_floors_the_forecast():
    k = np.array([0.0, 3.0, 6.0, 9.0, 11.5, 13.0, 15.0])
    true = traj(k, 10.0**-k, np.ones(7), names=StubChemistry.state_names)
    # floor 1e-12 x peak 1: the samples at 1e-13 and 1e-15 are skipped; a zero or negative
    # forecast counts at 1e-12: differences -12 + k for k = 0, 3, 6, 9, 11.5 -> RMS sqrt(270.25/5)
    zero = traj(k, np.zeros(7), np.ones(7), names=StubChemistry.state_names)
    negative = traj(k, -np.ones(7), np.ones(7), names=StubChemistry.state_names)
    expected = np.sqrt((144 + 81 + 36 + 9 + 0.25) / 5)
    for pred in (zero, negative):
        assert computed(LogError(), pred, true, StubChemistry()) == pytest.approx(
            {"log_error_a": expected, "log_error_b": 0.0})
    # floor 1e-7: only k = 0, 3, 6 count: differences -7, -4, -1 -> sqrt(66/3)
    assert computed(LogError({"floor": 1e-7}), zero, true, StubChemistry())["log_error_a"] == pytest.approx(np.sqrt(22))


def test_log_error_is_none_without_a_positive_true_value():
    t = np.arange(3.0)
    true = traj(t, np.zeros(3), np.ones(3), names=StubChemistry.state_names)
    pred = traj(t, np.ones(3), np.ones(3), names=StubChemistry.state_names)
    assert computed(LogError(), pred, true, StubChemistry()) == {"log_error_a": None, "log_error_b": 0.0}


def test_log_error_applies_only_when_every_state_is_bounded_below_by_zero():
    assert LogError().result_keys(StubChemistry()) == ("log_error_a", "log_error_b")
    assert LogError().result_keys(StubGates()) == ()  # V has no bounds
    assert LogError().result_keys(StubSigned()) == ()  # a may be -1
    assert LogError().key_units(StubGates()) == {}
    assert missing_capabilities(LogError, StubXY()) == ["Bounded"]


# ----------------------------------------------------------------------------------------------
# period_error and amp_error
# ----------------------------------------------------------------------------------------------

def test_upward_crossings_interpolate_between_samples():
    # -1 -> 1 crosses 0 half-way (t = 0.5); 1 -> -1 is downward; -1 -> 3 crosses a quarter of the way
    assert upward_crossings(np.arange(4.0), np.array([-1.0, 1.0, -1.0, 3.0]), 0.0) == pytest.approx([0.5, 2.25])
    # a sample on the level is one crossing, at that sample
    assert list(upward_crossings(np.arange(5.0), np.array([-1.0, 0.0, 1.0, -1.0, 0.0]), 0.0)) == [1.0, 4.0]


T_OSC = np.linspace(0.0, 10.0, 1001)  # dt = 0.01


def osc(x, names=StubOscillator.state_names):
    return traj(T_OSC, x, np.zeros_like(T_OSC), names=names)


def test_period_error_of_sines_with_known_periods():
    # true period 2, pred period 2.5, both crossing between grid points (phase 0.305); each period
    # is a whole number of samples, so every crossing sits at the same place between its samples
    true = osc(np.sin(np.pi * (T_OSC - 0.305)))
    pred = osc(0.3 * np.sin(0.8 * np.pi * (T_OSC - 0.305)))
    # |2.5 - 2| / 2 = 0.25, whatever the amplitude
    assert computed(PeriodError(), pred, true, StubOscillator())["period_error"] == pytest.approx(0.25, abs=1e-9)
    assert computed(PeriodError(), true, true, StubOscillator())["period_error"] == 0.0


def test_period_error_needs_two_crossings_on_each_side():
    true = osc(np.sin(np.pi * (T_OSC - 0.305)))
    flat = osc(np.full_like(T_OSC, 0.5))  # never crosses
    one = osc(np.sin(0.15 * np.pi * (T_OSC - 0.305)))  # period 13.3: one upward crossing in [0, 10]
    assert computed(PeriodError(), flat, true, StubOscillator())["period_error"] is None
    assert computed(PeriodError(), one, true, StubOscillator())["period_error"] is None
    assert computed(PeriodError(), true, one, StubOscillator())["period_error"] is None


def test_amp_error_of_sines_with_known_amplitudes():
    # peaks and troughs of sin(pi t) at t = 0.5 + k, on the 0.01 grid: A_true = 2
    true = osc(3.0 + 2.0 * np.sin(np.pi * T_OSC))
    assert computed(AmplitudeError(), osc(3.0 + 1.5 * np.sin(np.pi * T_OSC)), true,
                    StubOscillator())["amp_error"] == pytest.approx(0.25)  # |1.5 - 2| / 2
    # an offset or a phase shift leaves the amplitude
    assert computed(AmplitudeError(), osc(-7.0 + 2.0 * np.cos(np.pi * T_OSC)), true,
                    StubOscillator())["amp_error"] == pytest.approx(0.0, abs=1e-12)
    assert computed(AmplitudeError(), osc(np.full_like(T_OSC, 3.0)), true, StubOscillator())["amp_error"] == 1.0
    assert computed(AmplitudeError(), true, osc(np.full_like(T_OSC, 3.0)), StubOscillator())["amp_error"] is None


# ----------------------------------------------------------------------------------------------
# out_of_bounds
# ----------------------------------------------------------------------------------------------

def gates_traj(g, c):
    n = len(g)
    return traj(np.arange(n) * 0.1, np.full(n, -80.0), g, c, names=StubGates.state_names)


def test_out_of_bounds_counts_rows_beyond_the_allowance():
    g, c = np.full(10, 0.5), np.ones(10)
    g[2] = 1.2  # outside [0, 1]
    g[5] = -1e-10  # within 1e-9 x range 1: inside
    g[6] = -2e-9  # outside
    c[7] = -1e-13  # one-sided bound: within the absolute 1e-12, inside
    c[8] = -1e-11  # outside
    g[8] = 1.5  # the same row again: counted once
    pred = gates_traj(g, c)
    true = gates_traj(np.full(10, 0.5), np.ones(10))
    # rows 2, 6, 8 of 10; V (-80, no bounds) never counts
    assert computed(OutOfBounds(), pred, true, StubGates()) == {"out_of_bounds": 0.3}
    # without allowances rows 5 and 7 count too
    assert computed(OutOfBounds({"rel_tol": 0.0, "abs_tol": 0.0}), pred, true, StubGates())["out_of_bounds"] == 0.5
    assert computed(OutOfBounds(), true, true, StubGates())["out_of_bounds"] == 0.0


def test_out_of_bounds_counts_non_finite_samples_as_outside():
    c = np.ones(4)
    c[1], c[3] = np.nan, np.inf
    pred = gates_traj(np.full(4, 0.5), c)
    assert computed(OutOfBounds(), pred, pred, StubGates())["out_of_bounds"] == 0.5


def test_out_of_bounds_needs_bounded_states():
    from stiffbench_systems.fhn import FitzHughNagumo

    assert missing_capabilities(OutOfBounds, StubXY()) == ["Bounded"]
    assert missing_capabilities(OutOfBounds, FitzHughNagumo()) == ["Bounded"]  # an ODESystem without bounds


# ----------------------------------------------------------------------------------------------
# valid_time
# ----------------------------------------------------------------------------------------------

T_VT = 5.0 + 0.1 * np.arange(100)  # a window starting at t = 5
ALTERNATING = (-1.0) ** np.arange(100)  # mean 0, std 1 exactly


def linear_error(rate, tau=T_VT - T_VT[0]):
    """true x = +-1 (std 1) and y = 2 (constant: scale max|y| = 2); the error grows as rate x tau
    in x and 2 rate x tau in y, so e(tau) = sqrt(((rate tau)^2 + (rate tau)^2) / 2) = rate tau."""
    true = traj(T_VT, ALTERNATING, np.full(100, 2.0), names=StubXY.state_names)
    pred = traj(T_VT, ALTERNATING + rate * tau, 2.0 + 2 * rate * tau, names=StubXY.state_names)
    return pred, true


def test_valid_time_of_a_linearly_growing_error():
    pred, true = linear_error(0.15)
    # e = 0.15 tau reaches 0.4 at tau = 8/3 (between samples; e is linear, so interpolation is exact)
    assert computed(ValidTime(), pred, true, StubXY())["valid_time"] == pytest.approx(8 / 3)
    # tolerance 0.3: tau = 2
    assert computed(ValidTime({"tolerance": 0.3}), pred, true, StubXY())["valid_time"] == pytest.approx(2.0)


def test_valid_time_is_the_window_length_when_the_error_stays_small():
    pred, true = linear_error(0.01)  # e <= 0.099 over the window
    assert computed(ValidTime(), pred, true, StubXY())["valid_time"] == pytest.approx(9.9)  # 14.9 - 5


def test_valid_time_is_zero_when_the_error_starts_above_the_tolerance():
    _, true = linear_error(0.0)
    pred = Trajectory(true.t, true.y + np.array([1.0, 0.0]), true.state_names)  # e = sqrt(1/2) from the start
    assert computed(ValidTime(), pred, true, StubXY())["valid_time"] == 0.0


def test_valid_time_ends_at_a_nan():
    pred, true = linear_error(0.01)
    pred.y[10, 0] = np.nan
    assert computed(ValidTime(), pred, true, StubXY())["valid_time"] == pytest.approx(0.9)  # the sample before


def test_valid_time_unit_is_the_systems():
    assert ValidTime().key_units(StubXY()) == {"valid_time": "ms"}
    assert ValidTime().key_units(StubOscillator()) == {}


# ----------------------------------------------------------------------------------------------
# Absence: a metric that does not apply has no keys in the score and no leaderboard column
# ----------------------------------------------------------------------------------------------

def all_metrics():
    return [cls() for cls in NEW_METRICS]


def scored_keys(system, pred):
    result = score(system, all_metrics(), pred, pred, [Window("w", float(pred.t[0]), float(pred.t[-1]))])
    assert result.status == "ok" and result.metric_errors == []
    return set(result.metrics["w"]), result


def test_absent_where_the_capability_is_missing():
    t = np.linspace(0.0, 1.0, 5)
    keys, _ = scored_keys(StubXY(), traj(t, t, t, names=StubXY.state_names))
    assert keys == {"rel_l2_x", "rel_l2_y", "valid_time"}
    keys, _ = scored_keys(StubOscillator(), traj(t, np.sin(9 * t), t, names=StubOscillator.state_names))
    assert keys == {"rel_l2_x", "rel_l2_v", "period_error", "amp_error", "valid_time"}
    keys, _ = scored_keys(StubChemistry(), traj(t, t, t, names=StubChemistry.state_names))
    assert keys == {"rel_l2_a", "rel_l2_b", "log_error_a", "log_error_b", "out_of_bounds", "valid_time"}


def test_log_error_absent_from_score_and_leaderboard_of_a_system_with_a_signed_state():
    t = np.linspace(0.0, 1.0, 5)
    system = StubGates()
    keys, result = scored_keys(system, gates_traj(0.5 + 0 * t, 1 + t))
    assert not any(k.startswith("log_error") for k in keys)
    assert "out_of_bounds" in keys
    order = metric_keys(all_metrics(), system)
    assert not any(k.startswith("log_error") for k in order)
    record = CellRecord("k", system.name, "m", "row", 0, "ok", metrics=result.all_values())
    units = {k: u for m in all_metrics() for k, u in m.key_units(system).items()}
    header = window_table(["row"], [record], "w", order, units=units).splitlines()[0]
    assert "out_of_bounds" in header and "valid_time" in header and "log_error" not in header


# ----------------------------------------------------------------------------------------------
# Conformance on the built-in systems, on each system's first evaluation window
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fhn_reference(session_cache):
    from stiffbench_systems.fhn import FitzHughNagumo

    system = FitzHughNagumo()
    return system, system.reference(system.horizon)


@pytest.fixture(scope="module")
def rober_reference(session_cache):
    from stiffbench_systems.rober import Robertson

    system = Robertson()
    return system, system.reference(system.horizon)


def first_window(system, ref):
    window = system.evaluation_windows()[0]
    return ref.window(window.t0, window.t1)


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["hh_reference", "fhn_reference", "rober_reference"])
def test_conformance_on_builtin_systems(reference, request):
    system, ref = request.getfixturevalue(reference)
    trajectory = first_window(system, ref)
    for cls in NEW_METRICS:
        if missing_capabilities(cls, system) or cls().result_keys(system):
            check_metric(cls, system, trajectory)
        else:  # applies by capability, yet has no keys for this instance (log_error on hh)
            assert cls is LogError and system.name == "hh"
            assert cls().compute(trajectory, trajectory, system) == {}


@pytest.mark.slow
def test_values_on_the_references(hh_reference, rober_reference):
    """A forecast equal to the reference scores perfectly; which keys each system gets."""
    hh, ref = hh_reference
    window = first_window(hh, ref)
    keys, result = scored_keys(hh, window)
    values = result.metrics["w"]
    assert keys == {"rel_l2_V", "rel_l2_n", "rel_l2_m", "rel_l2_h", "period_error", "amp_error",
                    "out_of_bounds", "valid_time"}
    assert values["period_error"] == values["amp_error"] == values["out_of_bounds"] == 0.0
    assert values["valid_time"] == pytest.approx(window.t[-1] - window.t[0])
    rober, ref = rober_reference
    keys, result = scored_keys(rober, first_window(rober, ref))
    assert {"log_error_y1", "log_error_y2", "log_error_y3", "out_of_bounds"} <= keys
    assert "period_error" not in keys and result.metrics["w"]["log_error_y2"] == 0.0
