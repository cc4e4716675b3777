"""Hodgkin–Huxley extensions: stimulus protocols, temperature, observation interval, longer
training windows; every one of them leaves the default system (its cell keys, reference and
training task) as it was."""

import math

import numpy as np
import pydantic
import pytest
import torch
from scipy.integrate import solve_ivp

import stiffbench.ode_system as ode_system
from stiffbench.noise import ou_noise
from stiffbench.params import field_roles, key_params, param
from stiffbench.registry import Registry
from stiffbench.runner import Runner
from stiffbench.store import Store
from stiffbench.suite import Suite
from stiffbench.testing.conformance import check_system
from stiffbench_systems.hh import HodgkinHuxley, PiecewiseConstant, jacobian, temperature_factor, vector_field

SHORT = {"long": (100.0, 110.0)}
# A 30 ms horizon for the stimulus tests.
TINY = {"extrapolation": (14.68, 20.0), "long": (20.0, 30.0)}
NEW = ("sample_every", "temperature", "stimulus", "stimulus_steps", "stimulus_pulses", "stimulus_base",
       "stimulus_noise_std", "stimulus_noise_dt", "stimulus_noise_seed")


def spike_peak_times(t, V, threshold=0.0):
    """Time of the argmax of each supra-threshold run of V."""
    above = np.concatenate([[False], V > threshold, [False]]).astype(int)
    starts, ends = np.flatnonzero(np.diff(above) == 1), np.flatnonzero(np.diff(above) == -1)
    return np.array([t[s + np.argmax(V[s:e])] for s, e in zip(starts, ends)])


def piece_by_piece(system, times, rtol=1e-10, atol=1e-12):
    """An independent integration: LSODA on each interval between the current's switches with that
    interval's constant current (`vector_field` with I given), chained through the end states."""
    p, current = system.params, system.current
    edges = [0.0, *[s for s in current.switches if 0 < s < times[-1]], float(times[-1])]
    y, out = np.asarray(p.y0, dtype=np.float64), np.empty((len(times), 4))
    for a, b in zip(edges, edges[1:]):
        value = current.values[np.searchsorted(current.switches, a, side="right")]
        inside = (times >= a) & (times <= b)
        sol = solve_ivp(lambda t, z: vector_field(z, p, np, value), (a, b), y, method="LSODA",
                        jac=lambda t, z: jacobian(z, p), t_eval=times[inside], rtol=rtol, atol=atol,
                        dense_output=True)
        out[inside], y = sol.y.T, sol.sol(b)
    return out


# ----------------------------------------------------------------------------------------------
# The default is unchanged
# ----------------------------------------------------------------------------------------------

def test_default_cell_key_and_roles_unchanged():
    p = HodgkinHuxley().params
    # the key of every committed HH cell, as written before these parameters existed
    assert key_params(p) == {
        "C_m": 1.0, "g_Na": 120.0, "g_K": 36.0, "g_L": 0.3, "E_Na": 50.0, "E_K": -77.0, "E_L": -54.387,
        "I_ext": 10.0, "y0": [-65.0, 0.32, 0.05, 0.6], "dt": 0.01, "t_train": [0.0, 14.68],
        "extrapolation": [14.68, 100.0], "long": [100.0, 1000.0], "noise_preset": "paper_literal",
        "noise_sigma": None, "noise_theta": 5.0, "noise_seed": 1111, "solver_rtol": 1e-10, "solver_atol": 1e-12,
    }
    for name in NEW:
        assert "added" in field_roles(p, name)
        assert ("protocol" in field_roles(p, name)) == (name == "sample_every")
    assert "temperature" in key_params(p.model_copy(update={"temperature": 20.0}))
    system = HodgkinHuxley()
    assert system.breakpoints() == () and system.current.values.tolist() == [10.0]


def test_default_rhs_and_jacobian_are_the_constant_current_equations():
    system = HodgkinHuxley()
    z = np.concatenate([np.random.default_rng(0).uniform(-80, 45, (7, 1)),
                        np.random.default_rng(1).uniform(0, 1, (7, 3))], axis=1)
    # the constant current takes vector_field's own I_ext path, whatever t: bitwise
    np.testing.assert_array_equal(system.rhs(123.4, z, np), vector_field(z, system.params))
    f = system.torch_vector_field()
    np.testing.assert_array_equal(f(torch.zeros(7, 1, dtype=torch.float64), torch.tensor(z)).numpy(),
                                  f(0.0, torch.tensor(z)).numpy())
    np.testing.assert_array_equal(system.jac(5.0, z), jacobian(z, system.params))


def test_default_reference_is_the_direct_lsoda_solution(tmp_path):
    system = HodgkinHuxley(TINY)
    ref = system.reference(30.0, cache_dir=tmp_path)
    p = system.params
    sol = solve_ivp(lambda t, z: vector_field(z, p), (0.0, 30.0), np.array(p.y0), method="LSODA",
                    jac=lambda t, z: jacobian(z, p), t_eval=ref.t, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ref.y, sol.y.T)  # one piece, the same calls: bitwise


def test_default_values_of_the_previous_code(tmp_path):
    """Reference and noisy observation of the code before these parameters existed, 30 ms horizon
    (bitwise equal on the machine that wrote them; 1e-10 leaves room for another libm)."""
    system = HodgkinHuxley(TINY)
    ref = system.reference(30.0, cache_dir=tmp_path)
    previous = {
        216: [40.22581128604716, 0.5075473353825515, 0.9013783689438183, 0.3478950850209788],
        1468: [-57.56362300656388, 0.39497032815673155, 0.11317558382554962, 0.45263760802018327],
        3000: [-55.469842208922636, 0.4027813127447985, 0.13621679620080668, 0.43139534422648385],
    }
    for i, y in previous.items():
        np.testing.assert_allclose(ref.y[i], y, rtol=1e-10, atol=0)
    obs = system.training_task(cache_dir=tmp_path).observations
    assert obs.y.shape == (1469, 4)
    np.testing.assert_allclose(obs.y[-1], [-57.75497807249319, 0.40692439816979187, 0.3455945946722304,
                                           0.45408536109783537], rtol=1e-10, atol=0)


# ----------------------------------------------------------------------------------------------
# The piecewise-constant current
# ----------------------------------------------------------------------------------------------

def test_piecewise_constant_lookup_by_hand():
    c = PiecewiseConstant([1.0, 2.0], [5.0, 6.0, 7.0])
    y = np.zeros((4, 4))
    np.testing.assert_array_equal(c(np.array([0.5, 1.0, 1.5, 2.0]), y), [5.0, 6.0, 6.0, 7.0])
    assert c(-3.0, y[0]) == 5.0 and c(1e9, y[0]) == 7.0
    with pytest.raises(ValueError, match="strictly increasing"):
        PiecewiseConstant([2.0, 1.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="one value more"):
        PiecewiseConstant([1.0], [0.0])


def test_pulses_current_and_breakpoints():
    system = HodgkinHuxley({"stimulus": "pulses"})
    assert system.breakpoints() == (100.0, 200.0, 300.0, 400.0)
    t = np.array([0.0, 99.99, 100.0, 199.99, 200.0, 299.99, 300.0, 399.99, 400.0, 900.0])
    np.testing.assert_array_equal(system.current(t, np.zeros((len(t), 4))), [0, 0, 10, 10, 0, 0, 35, 35, 0, 0])
    # overlapping pulses add up, on a base current
    overlap = HodgkinHuxley({"stimulus": "pulses", "stimulus_base": 1.0,
                             "stimulus_pulses": [(10.0, 30.0, 2.0), (20.0, 40.0, 4.0)]})
    assert overlap.breakpoints() == (10.0, 20.0, 30.0, 40.0)
    np.testing.assert_array_equal(overlap.current.values, [1.0, 3.0, 7.0, 5.0, 1.0])


def test_steps_current_and_breakpoints():
    system = HodgkinHuxley({"stimulus": "steps"})
    assert system.breakpoints() == (250.0, 500.0, 750.0)
    np.testing.assert_array_equal(system.current.values, [10.0, 20.0, 40.0, 0.0])
    step = HodgkinHuxley({"stimulus": "steps", "I_ext": 3.0, "stimulus_steps": [(0.0, 7.0)]})
    assert step.current(0.0, np.zeros(4)) == 7.0  # a step at t=0 holds from the start
    assert step.current(-1e-9, np.zeros(4)) == 3.0


def test_noisy_current_is_seeded():
    params = {**SHORT, "stimulus": "noisy", "stimulus_noise_std": 2.0, "stimulus_noise_dt": 0.5}
    system = HodgkinHuxley(params)
    assert system.breakpoints() == tuple(k * 0.5 for k in range(1, 221))  # every 0.5 ms up to the horizon
    draws = np.random.default_rng(0).standard_normal(220)
    np.testing.assert_array_equal(system.current.values, [*(10.0 + 2.0 * draws), 10.0])
    np.testing.assert_array_equal(HodgkinHuxley(params).current.values, system.current.values)
    other = HodgkinHuxley({**params, "stimulus_noise_seed": 1}).current.values
    assert not np.any(other[:-1] == system.current.values[:-1])
    # a longer horizon extends the same realisation
    longer = HodgkinHuxley({**params, "long": (100.0, 200.0)}).current
    np.testing.assert_array_equal(longer.values[:220], system.current.values[:220])


@pytest.mark.parametrize("params", [
    {"stimulus": "steps", "stimulus_steps": [(5.0, 0.0), (12.5, 30.0)]},
    {"stimulus": "noisy", "stimulus_noise_dt": 1.0},
    {"stimulus": "pulses", "stimulus_pulses": [(3.0, 8.0, 10.0), (18.0, 26.0, 35.0)]},
])
def test_reference_is_integrated_piecewise(tmp_path, monkeypatch, params):
    system = HodgkinHuxley({**TINY, **params})
    calls = []
    real = ode_system.solve_ivp
    monkeypatch.setattr(ode_system, "solve_ivp", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    ref = system.reference(30.0, cache_dir=tmp_path)
    cuts = [b for b in system.breakpoints() if 0 < b < 30.0]
    assert calls == list(zip([0.0, *cuts], [*cuts, 30.0]))  # one solve per piece, none across a switch
    # continuous across the switches and equal to an independent piece-by-piece integration to the
    # solver's accuracy (measured: 1.2e-7 mV at most; the last step of each piece sees the next
    # piece's current at the switch time itself)
    np.testing.assert_allclose(ref.y, piece_by_piece(system, ref.t), rtol=0, atol=1e-6)
    # dV/dt jumps by the current's jump over C_m at each switch
    for b in cuts:
        y = ref.y[np.argmin(np.abs(ref.t - b))]
        jump = system.rhs(b, y, np)[0] - system.rhs(np.nextafter(b, 0), y, np)[0]
        assert jump == pytest.approx(np.diff(system.current(np.array([np.nextafter(b, 0), b]), y))[0], abs=1e-9)


@pytest.mark.slow
def test_openworm_pulses_spike_only_during_the_pulses(tmp_path):
    # rtol 1e-8 keeps it quick; the spike count does not depend on it
    system = HodgkinHuxley({"stimulus": "pulses", "long": (100.0, 450.0), "solver_rtol": 1e-8, "solver_atol": 1e-10})
    ref = system.reference(450.0, cache_dir=tmp_path)
    V = ref.state("V")
    peaks = spike_peak_times(ref.t, V)
    count = {(a, b): int(np.sum((peaks >= a) & (peaks < b))) for a, b in
             [(0, 100), (100, 200), (200, 300), (300, 400), (400, 450)]}
    assert count == {(0, 100): 0, (100, 200): 7, (200, 300): 0, (300, 400): 11, (400, 450): 0}
    before = V[ref.t < 100]
    assert np.abs(before + 65).max() < 0.2  # at rest (y0 is the rounded resting state)
    first, second = peaks[(peaks >= 100) & (peaks < 200)], peaks[(peaks >= 300) & (peaks < 400)]
    assert np.diff(first)[-1] == pytest.approx(14.64, abs=0.02)  # the period at 10 uA/cm^2
    assert np.diff(second)[-1] == pytest.approx(9.62, abs=0.02)  # and at 35: a higher rate


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_current_equals_numpy_on_both_sides_of_a_switch(dtype):
    system = HodgkinHuxley({"stimulus": "pulses"})
    f = system.torch_vector_field()
    t = np.array([100.0 - 1e-3, 100.0, 100.0 + 1e-3, 199.99, 200.0, 300.0])
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.uniform(-80, 45, (len(t), 1)), rng.uniform(0, 1, (len(t), 3))], axis=1)
    expected = np.stack([system.rhs(ti, zi, np) for ti, zi in zip(t, z)])
    assert len(set(expected[:, 0] - vector_field(z, system.params)[:, 0])) > 1  # the current differs
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-3}
    zt = torch.tensor(z, dtype=dtype)
    # per-trajectory times (B, 1), as solve_independent passes them
    out = f(torch.tensor(t, dtype=dtype).unsqueeze(1), zt)
    assert out.dtype == dtype and out.shape == z.shape
    np.testing.assert_allclose(out.numpy(), expected, **tol)
    # per-sample times (M,) against members' states (B, M, 4), as the physics penalties pass them
    out = f(torch.tensor(t, dtype=dtype), zt.expand(2, -1, -1))
    np.testing.assert_allclose(out.numpy(), np.stack([expected] * 2), **tol)
    # one time for all: a float and a 0-d tensor
    for i, ti in enumerate(t):
        for time in (float(ti), torch.tensor(ti, dtype=torch.float64)):
            np.testing.assert_allclose(f(time, zt[i : i + 1]).numpy()[0], expected[i], **tol)
    # numpy with per-sample times
    np.testing.assert_array_equal(system.rhs(t, z, np), expected)


# ----------------------------------------------------------------------------------------------
# Temperature
# ----------------------------------------------------------------------------------------------

def test_temperature_factor():
    assert temperature_factor(6.3) == 1.0
    assert temperature_factor(16.3) == pytest.approx(3.0, rel=1e-14)
    assert temperature_factor(26.3) == pytest.approx(9.0, rel=1e-14)
    assert temperature_factor(0.0) == pytest.approx(3 ** -0.63, rel=1e-14)


def test_temperature_scales_the_gates_only():
    cold, warm = HodgkinHuxley().params, HodgkinHuxley({"temperature": 16.3}).params
    z = np.concatenate([np.random.default_rng(4).uniform(-80, 45, (5, 1)),
                        np.random.default_rng(5).uniform(0, 1, (5, 3))], axis=1)
    np.testing.assert_array_equal(vector_field(z, warm)[:, 0], vector_field(z, cold)[:, 0])
    np.testing.assert_allclose(vector_field(z, warm)[:, 1:], 3 * vector_field(z, cold)[:, 1:], rtol=1e-14)
    np.testing.assert_array_equal(jacobian(z, warm)[:, 0], jacobian(z, cold)[:, 0])
    np.testing.assert_allclose(jacobian(z, warm)[:, 1:], 3 * jacobian(z, cold)[:, 1:], rtol=1e-14)
    f = HodgkinHuxley({"temperature": 16.3}).torch_vector_field()
    auto = torch.autograd.functional.jacobian(lambda x: f(0.0, x), torch.tensor(z[0])).numpy()
    np.testing.assert_allclose(jacobian(z[0], warm), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_spikes_are_faster_when_warmer(tmp_path):
    periods = {}
    for T in (6.3, 16.3):
        ref = HodgkinHuxley({"temperature": T, "extrapolation": (14.68, 50.0), "long": (50.0, 60.0)}).reference(
            60.0, cache_dir=tmp_path)
        periods[T] = np.diff(spike_peak_times(ref.t, ref.state("V")))[-1]
    assert periods[6.3] == pytest.approx(14.64, abs=0.02)
    assert periods[16.3] == pytest.approx(6.16, abs=0.05)  # measured; phi = 3 shortens it 2.4x


# ----------------------------------------------------------------------------------------------
# Observation interval and training windows
# ----------------------------------------------------------------------------------------------

def test_sample_every_observes_every_kth_grid_point(tmp_path):
    system = HodgkinHuxley({**SHORT, "sample_every": 0.1})
    task = system.training_task(cache_dir=tmp_path)
    obs = task.observations
    # 0, 0.1, ..., 14.6: floor(14.68 / 0.1) + 1 = 147 times, the grid's own points
    assert obs.y.shape == (147, 4) and obs.t[-1] == pytest.approx(14.6, abs=1e-12)
    np.testing.assert_array_equal(obs.t, task.forecast_t[:1469:10])
    assert task.dt == pytest.approx(0.1, rel=1e-12)
    clean = system.reference(110.0, cache_dir=tmp_path).y[:1469:10]
    # the OU noise is stepped at the observation interval
    np.testing.assert_allclose(obs.y - clean, ou_noise(147, 0.1, 5.0, [0.5] * 4, 1111), rtol=0, atol=1e-12)
    # sample_every = dt is the default's protocol
    every_point = HodgkinHuxley({**SHORT, "sample_every": 0.01}).training_task(cache_dir=tmp_path)
    default = HodgkinHuxley(SHORT).training_task(cache_dir=tmp_path)
    np.testing.assert_array_equal(every_point.observations.y, default.observations.y)
    assert every_point.dt == default.dt == 0.01


def test_longer_training_window(tmp_path):
    """About three periods (four spikes) of training data: the windows move after it."""
    params = {"t_train": (0.0, 50.0), "extrapolation": (50.0, 100.0), "long": (100.0, 110.0)}
    system = HodgkinHuxley(params)
    task = system.training_task(cache_dir=tmp_path)
    assert task.observations.y.shape == (5001, 4) and task.observations.t[-1] == pytest.approx(50.0, abs=1e-9)
    clean = system.reference(50.0, cache_dir=tmp_path)
    assert len(spike_peak_times(clean.t, clean.state("V"))) == 4
    with pytest.raises(pydantic.ValidationError, match="before the training window ends"):
        HodgkinHuxley({"t_train": (0.0, 50.0)})


@pytest.mark.parametrize("params, message", [
    ({"stimulus": "ramp"}, "constant"),
    ({"stimulus_pulses": [(100.0, 200.0, 5.0)]}, "stimulus_pulses is a setting of stimulus 'pulses'"),
    ({"stimulus": "steps", "stimulus_noise_std": 1.0}, "unused with stimulus 'steps'"),
    ({"stimulus": "pulses", "I_ext": 5.0}, "I_ext is unused"),
    ({"stimulus": "steps", "stimulus_steps": [(5.0, 1.0), (5.0, 2.0)]}, "strictly increasing"),
    ({"stimulus": "steps", "stimulus_steps": []}, "at least 1"),
    ({"stimulus": "pulses", "stimulus_pulses": [(5.0, 5.0, 1.0)]}, "start < end"),
    ({"stimulus": "pulses", "stimulus_pulses": [(-1.0, 5.0, 1.0)]}, "greater than or equal to 0"),
    ({"stimulus": "noisy", "stimulus_noise_dt": 0.0}, "greater than 0"),
    ({"stimulus": "noisy", "stimulus_noise_std": -1.0}, "greater than or equal to 0"),
    ({"temperature": float("inf")}, "finite"),
    ({"sample_every": 0.015}, "whole multiple of dt"),
    ({"sample_every": 0.005}, "whole multiple of dt"),
    ({"sample_every": 20.0}, "fewer than two observations"),
])
def test_invalid_params(params, message):
    with pytest.raises(pydantic.ValidationError) as err:
        HodgkinHuxley(params)
    assert message in str(err.value)


# ----------------------------------------------------------------------------------------------
# Conformance and end to end
# ----------------------------------------------------------------------------------------------

class WarmPulsedHH(HodgkinHuxley):
    """16.3 °C, two pulses inside a 110 ms horizon, observed every 0.1 ms."""

    class Params(HodgkinHuxley.Params):
        temperature: float = param(16.3, added=True)
        stimulus: str = param("pulses", added=True)
        stimulus_pulses: tuple[tuple[float, float, float], ...] = param(((10.0, 40.0, 10.0), (60.0, 90.0, 35.0)),
                                                                        added=True)
        long: tuple[float, float] = param((100.0, 110.0), protocol=True)
        sample_every: float = param(0.1, protocol=True, added=True)


class NoisyLongTrainingHH(HodgkinHuxley):
    """A noisy current, 50 ms of training data observed through V."""

    class Params(HodgkinHuxley.Params):
        stimulus: str = param("noisy", added=True)
        t_train: tuple[float, float] = param((0.0, 50.0), protocol=True)
        extrapolation: tuple[float, float] = param((50.0, 70.0), protocol=True)
        long: tuple[float, float] = param((70.0, 80.0), protocol=True)
        observe: tuple[str, ...] = param(("V",), protocol=True, added=True)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [WarmPulsedHH, NoisyLongTrainingHH])
def test_conformance_with_the_new_parameters(cls, tmp_path):
    check_system(cls, cache_dir=tmp_path)


@pytest.mark.slow
def test_suite_runs_on_the_new_parameters(tmp_path):
    """PI-NODE-SR (whose physics residual calls the torch field at the observation times) trains for
    one epoch and is scored on pulsed, warm HH observed every 0.1 ms and on 50 ms of training data."""
    suite = Suite(
        name="ext", seeds=[0], epochs=1,
        systems=[
            {"name": "hh", "label": "hh-pulsed", "params": {
                "stimulus": "pulses", "stimulus_pulses": [[5.0, 10.0, 10.0], [20.0, 30.0, 35.0]],
                "temperature": 16.3, "sample_every": 0.1, "extrapolation": [14.68, 30.0], "long": [30.0, 40.0]}},
            {"name": "hh", "label": "hh-50ms", "params": {
                "t_train": [0.0, 50.0], "extrapolation": [50.0, 60.0], "long": [60.0, 70.0]}},
        ],
        methods=[{"label": "pinode_sr", "method": "pinode_sr", "params": {"hidden": [8]}}],
    )
    with Store(tmp_path / "res") as store:
        report = Runner(Registry(), store).run(suite)
        records = store.get_many(c.key for c in report.cells)
    assert len(records) == 2
    for cell in report.cells:
        record = records[cell.key]
        assert record.status == "ok", record.reason
        assert set(record.metrics) == {"extrapolation", "long"}
        assert math.isfinite(record.train_s)
    assert {c.system_label for c in report.cells} == {"hh-pulsed", "hh-50ms"}
