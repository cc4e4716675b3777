"""max_abs_error against the conformance kit and against errors computed by hand."""

import numpy as np
import pytest
from stiffbench.api import Trajectory
from stiffbench.metrics.rmse import RMSE
from stiffbench.testing.conformance import check_metric
from stiffbench.testing.toy import DampedOscillator
from stiffbench.testing.toy_chain import ScaledChain

from stiffbench_example_metric.max_abs_error import MaxAbsError


@pytest.mark.parametrize("system", [DampedOscillator(), ScaledChain()], ids=lambda s: s.name)
def test_conformance_on_each_window(system, tmp_path):
    reference = system.reference(system.horizon, tmp_path)
    for window in system.evaluation_windows():
        check_metric(MaxAbsError, system, reference.window(window.t0, window.t1))


def test_the_worst_sample_per_state():
    t = np.linspace(0.0, 1.0, 4)
    true = Trajectory(t, np.zeros((4, 2)), ("x", "v"))
    pred = Trajectory(t, np.array([[0.0, 0.1], [0.5, -0.3], [-2.0, 0.0], [1.0, 0.2]]), ("x", "v"))
    assert MaxAbsError().compute(pred, true, DampedOscillator()) == {"max_abs_x": 2.0, "max_abs_v": pytest.approx(0.3)}


def test_a_missed_spike_counts_in_full():
    # The truth spikes to 100 at one of 101 samples; the forecast stays at 0. RMSE averages the
    # miss to 100 / sqrt(101) = 9.95; max_abs reports all 100.
    t = np.linspace(0.0, 1.0, 101)
    y = np.zeros((101, 2))
    y[50, 0] = 100.0
    true, pred = Trajectory(t, y, ("x", "v")), Trajectory(t, np.zeros((101, 2)), ("x", "v"))
    system = DampedOscillator()
    assert RMSE().compute(pred, true, system)["rmse_x"] == pytest.approx(9.950, abs=1e-3)
    assert MaxAbsError().compute(pred, true, system)["max_abs_x"] == 100.0


def test_keys_follow_the_states_and_carry_their_units():
    assert MaxAbsError().result_keys(ScaledChain()) == ("max_abs_A", "max_abs_B", "max_abs_C")
    units = {"max_abs_A": "mol/L", "max_abs_B": "mmol/L", "max_abs_C": "umol/L"}
    assert MaxAbsError().key_units(ScaledChain()) == units
    assert MaxAbsError().key_units(DampedOscillator()) == {}  # states without units
