"""The metric plugins on hand-built trajectories and stub systems, with hand-computed values."""

from importlib.metadata import entry_points

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stiffbench.api import AbstractMetric, AbstractSystem, Spiking, Trajectory, missing_capabilities
from stiffbench.metrics.amp_dev import AmplitudeDeviation
from stiffbench.metrics.amp_pres import AmplitudePreservation
from stiffbench.metrics.isi_error import ISIError
from stiffbench.metrics.phase_drift import PhaseDrift
from stiffbench.metrics.rmse import RMSE
from stiffbench.metrics.spike_f1 import SpikeF1

DT = 0.01
SPIKE_METRICS = (SpikeF1, PhaseDrift, ISIError, AmplitudeDeviation)


class _StubSystem(AbstractSystem):
    description = "test stub"

    def reference(self, t_end, cache_dir=None):
        raise NotImplementedError

    def training_task(self, cache_dir=None):
        raise NotImplementedError

    def evaluation_windows(self):
        return []


class StubHH(_StubSystem, Spiking):
    name = "stub_hh"
    state_names = ("V", "n", "m", "h")
    voltage_state = "V"


class StubXY(_StubSystem):
    name = "stub_xy"
    state_names = ("x", "y")


HH = StubHH()


def hh_traj(spec, n=5000):
    """An HH-shaped trajectory whose V has a triangular bump per (time, height) (1 mV per
    sample around the peak sample, from -65 mV) and whose gates are constant."""
    k = np.arange(n)
    v = np.full(n, -65.0)
    for tc, h in spec:
        v = np.maximum(v, h - np.abs(k - round(tc / DT)))
    gates = np.tile([0.3, 0.05, 0.6], (n, 1))
    return Trajectory(k * DT, np.column_stack([v, gates]), StubHH.state_names)


TRUE = hh_traj([(10.0, 30.0), (25.0, 40.0), (40.0, 20.0)])
# pred: 10.5 matches 10 (0.5 ms), 25 matches 25 (0 ms), 33 is extra, 45 is 5 ms from 40 (no match)
PRED = hh_traj([(10.5, 36.0), (25.0, 38.0), (33.0, 25.0), (45.0, 25.0)])


def score(metric, pred=PRED, true=TRUE, system=HH):
    result = metric.compute(pred, true, system)
    assert tuple(result) == metric.result_keys(system)
    assert all(v is None or type(v) is float for v in result.values())
    return result


def test_entry_points_load_the_metrics():
    eps = {ep.name: ep.load() for ep in entry_points(group="stiffbench.metrics")}
    assert {"rmse", "spike_f1", "phase_drift", "isi_error", "amp_dev", "amp_pres"} <= set(eps)
    for name, cls in eps.items():
        assert issubclass(cls, AbstractMetric) and cls.name == name and cls.description


def test_spike_f1_with_extra_and_missing_spikes():
    # 3 true, 4 pred, 2 matched: 2*2/(4+3) = 4/7
    assert score(SpikeF1())["spike_f1"] == pytest.approx(4 / 7)


def test_phase_drift_is_mean_timing_error_of_matches():
    # (|10.5-10| + |25-25|) / 2 = 0.25 ms
    assert score(PhaseDrift())["phase_drift"] == pytest.approx(0.25)


def test_isi_error_uses_all_spikes():
    # pred mean ISI = (45-10.5)/3 = 11.5; true = (40-10)/2 = 15; |11.5-15| = 3.5 ms
    assert score(ISIError())["isi_error"] == pytest.approx(3.5)


def test_amp_dev_compares_each_sides_own_peaks():
    # matched peaks (36 vs 30) and (38 vs 40): (6 + 2)/2 = 4 mV
    assert score(AmplitudeDeviation())["amp_dev"] == pytest.approx(4.0)


def test_spike_parameters_change_the_result():
    # tolerance 0.4 ms: 10.5 no longer matches 10 -> 1 match, F1 = 2*1/7; phase = 0
    assert score(SpikeF1({"tolerance": 0.4}))["spike_f1"] == pytest.approx(2 / 7)
    assert score(PhaseDrift({"tolerance": 0.4}))["phase_drift"] == pytest.approx(0.0)
    # threshold 30 mV: true keeps only 40 (at 25), pred 36 (at 10.5) and 38 (at 25): F1 = 2*1/3
    assert score(SpikeF1({"threshold": 30.0}))["spike_f1"] == pytest.approx(2 / 3)
    # merge 20 ms: true 10, 25, 40 -> 10 & 25 merge into 25 (taller), then 40 is 15 ms after it:
    # merged into 25; pred 10.5, 25, 33, 45 -> 25 (38), then 45 is 20 ms after: kept. F1 = 2*1/3
    assert score(SpikeF1({"merge": 20.0}))["spike_f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("params", [{"merge": -1.0}, {"tolerance": 0.0}, {"unknown": 1.0}])
def test_spike_parameters_are_validated(params):
    for cls in SPIKE_METRICS:
        with pytest.raises(ValidationError):
            cls(params)


def test_spike_metrics_when_nothing_spikes():
    quiet = hh_traj([])
    for metric in (SpikeF1(), PhaseDrift(), ISIError(), AmplitudeDeviation()):
        assert set(score(metric, quiet, quiet).values()) == {None}


def test_spike_metrics_when_only_one_side_spikes():
    quiet = hh_traj([])
    assert score(SpikeF1(), quiet, TRUE)["spike_f1"] == 0.0  # 0 / (0+3)
    assert score(PhaseDrift(), quiet, TRUE)["phase_drift"] is None
    assert score(AmplitudeDeviation(), TRUE, quiet)["amp_dev"] is None
    assert score(ISIError(), quiet, TRUE)["isi_error"] is None


def test_isi_needs_two_spikes_on_each_side():
    one = hh_traj([(10.0, 30.0)])
    assert score(ISIError(), one, TRUE)["isi_error"] is None
    # a single matched pair is enough for phase and amplitude: |10-10| = 0, |30-30| = 0
    assert score(PhaseDrift(), one, TRUE)["phase_drift"] == 0.0
    assert score(AmplitudeDeviation(), one, TRUE)["amp_dev"] == 0.0


def test_spike_metrics_require_spiking():
    for cls in SPIKE_METRICS:
        assert missing_capabilities(cls, StubXY()) == ["Spiking"]
        assert missing_capabilities(cls, HH) == []
    assert missing_capabilities(RMSE, StubXY()) == missing_capabilities(AmplitudePreservation, StubXY()) == []


def test_rmse_per_state_keys_from_the_system():
    t = np.arange(4) * DT
    true = Trajectory(t, np.zeros((4, 2)), StubXY.state_names)
    pred = Trajectory(t, np.array([[3.0, 0.0], [-3.0, 0.0], [3.0, 0.0], [-3.0, 4.0]]), StubXY.state_names)
    # x: sqrt((9+9+9+9)/4) = 3; y: sqrt((0+0+0+16)/4) = 2
    assert RMSE().result_keys(StubXY()) == ("rmse_x", "rmse_y")
    assert score(RMSE(), pred, true, StubXY()) == {"rmse_x": 3.0, "rmse_y": 2.0}


def test_rmse_on_hh_offsets():
    offset = np.array([1.0, -0.5, 0.0, 2.0])
    pred = Trajectory(TRUE.t, TRUE.y + offset, TRUE.state_names)
    # a constant offset c gives rmse |c|
    result = score(RMSE(), pred, TRUE)
    assert result == pytest.approx({"rmse_V": 1.0, "rmse_n": 0.5, "rmse_m": 0.0, "rmse_h": 2.0})


def test_amp_pres_on_sinusoid_and_ramp():
    t = np.linspace(0.0, 2 * np.pi, 401)  # holds pi/2 and 3pi/2: max 1, min -1
    names = ("s", "r", "c")
    true = Trajectory(t, np.column_stack([np.sin(t), t, np.full_like(t, 5.0)]), names)
    pred = Trajectory(t, np.column_stack([0.5 * np.sin(t), t + 1.0, t]), names)
    # s: (|0.5-1| + |-0.5+1|) / (2*2) = 0.25; r: (1 + 1) / (2*2pi) = 1/(2pi); c: constant, skipped
    expected = 100 * (0.25 + 1 / (2 * np.pi)) / 2
    assert score(AmplitudePreservation(), pred, true)["amp_pres_pct"] == pytest.approx(expected)


def test_amp_pres_on_hh_without_spikes():
    # V range of TRUE: 40 - (-65) = 105; a quiet pred at -65 mV misses the max by 105 and hits
    # the min: (105 + 0) / (2*105) = 50 %. The gates are constant in TRUE and skipped.
    assert score(AmplitudePreservation(), hh_traj([]), TRUE)["amp_pres_pct"] == pytest.approx(50.0)


def test_amp_pres_is_none_when_every_true_state_is_constant():
    quiet = hh_traj([])
    assert score(AmplitudePreservation(), TRUE, quiet)["amp_pres_pct"] is None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 48.0), st.floats(1.0, 50.0)), max_size=6),
       st.lists(st.tuples(st.floats(1.0, 48.0), st.floats(1.0, 50.0)), max_size=6))
def test_f1_bounds_and_identity(pred_spec, true_spec):
    pred, true = hh_traj(pred_spec), hh_traj(true_spec)
    f1 = score(SpikeF1(), pred, true)["spike_f1"]
    assert f1 is None or 0.0 <= f1 <= 1.0
    if not true_spec:
        assert score(SpikeF1(), true, true)["spike_f1"] is None
    else:
        assert score(SpikeF1(), true, true)["spike_f1"] == 1.0
        assert score(PhaseDrift(), true, true)["phase_drift"] == 0.0
        assert score(AmplitudeDeviation(), true, true)["amp_dev"] == 0.0


def test_bound_violation_and_far_outside_warning():
    from stiffbench.registry import Registry
    from stiffbench.scoring import bound_warnings

    system = Registry().load("systems", "hh")()
    t = np.array([0.0, 0.01, 0.02])
    y = np.array([[-65.0, 0.3, 0.05, 0.6], [-60.0, 1.25, 0.05, 0.6], [-55.0, 0.3, -0.5, 0.6]])
    pred = Trajectory(t, y, ("V", "n", "m", "h"))
    # n exceeds 1 by 0.25, m falls below 0 by 0.5: the largest excursion is 0.5
    assert max(system.bound_violation(pred).values()) == 0.5
    assert bound_warnings(system, pred) == []  # within one range width
    far = Trajectory(t, y * np.array([1, 1, 5, 1]), ("V", "n", "m", "h"))  # m reaches -2.5
    assert bound_warnings(system, far) == ["state m leaves its bounds [0, 1] by up to 2.5"]
