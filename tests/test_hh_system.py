"""Hodgkin–Huxley system plugin: rates, vector field, Jacobian, reference, task, cache, params."""

import math
from importlib.metadata import entry_points

import numpy as np
import pydantic
import pytest
import torch

import stiffbench.ode_system as ode_system
from stiffbench.api import KnownPhysics, Spiking, Window
from stiffbench.noise import ou_noise
from stiffbench_systems.hh import HodgkinHuxley, jacobian, rates, vector_field

# A horizon of 110 ms keeps the reference cheap where the 1000 ms default is not needed.
SHORT = {"long": (100.0, 110.0)}


def spike_peak_times(t, V, threshold=0.0):
    """Time of the argmax of each supra-threshold run of V."""
    above = np.concatenate([[False], V > threshold, [False]]).astype(int)
    starts, ends = np.flatnonzero(np.diff(above) == 1), np.flatnonzero(np.diff(above) == -1)
    return np.array([t[s + np.argmax(V[s:e])] for s, e in zip(starts, ends)])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One reference cache for the module, so each parameter set is integrated once."""
    return tmp_path_factory.mktemp("hh-cache")


@pytest.fixture(scope="module")
def default_task(cache_dir):
    """The default system (1000 ms horizon) and its training task."""
    system = HodgkinHuxley()
    return system, system.training_task(cache_dir=cache_dir)


# ----------------------------------------------------------------------------------------------
# Rates, vector field, Jacobian
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("V", [-65.0, -20.0, 0.0, 30.0])
def test_rates_by_hand(V):
    r = rates(np.float64(V))
    expected = {
        "m": (0.1 * (V + 40) / (1 - math.exp(-(V + 40) / 10)), 4 * math.exp(-(V + 65) / 18)),
        "h": (0.07 * math.exp(-(V + 65) / 20), 1 / (1 + math.exp(-(V + 35) / 10))),
        "n": (0.01 * (V + 55) / (1 - math.exp(-(V + 55) / 10)), 0.125 * math.exp(-(V + 65) / 80)),
    }
    for gate, (alpha, beta) in expected.items():
        assert r[gate][0] == pytest.approx(alpha, rel=1e-13)
        assert r[gate][1] == pytest.approx(beta, rel=1e-13)


def test_rates_at_rest_by_hand():
    r = rates(np.float64(-65.0))
    assert r["m"][1] == pytest.approx(4.0, rel=1e-15)
    assert r["h"][0] == pytest.approx(0.07, rel=1e-15)
    assert r["n"][1] == pytest.approx(0.125, rel=1e-15)
    assert r["n"][0] == pytest.approx(0.1 / (math.e - 1), rel=1e-14)
    assert r["m"][0] == pytest.approx(2.5 / (math.exp(2.5) - 1), rel=1e-14)


def test_removable_singularities_exact_and_continuous():
    assert rates(np.float64(-40.0))["m"][0] == pytest.approx(1.0, rel=1e-15)
    assert rates(np.float64(-55.0))["n"][0] == pytest.approx(0.1, rel=1e-15)
    for dv in (-1e-7, 1e-7):
        assert rates(np.float64(-40.0 + dv))["m"][0] == pytest.approx(1.0 + dv / 20, rel=1e-14)
        assert rates(np.float64(-55.0 + dv))["n"][0] == pytest.approx(0.1 * (1.0 + dv / 20), rel=1e-14)
    # Either side of the switch between the series and the closed form (|u| = 1e-4, i.e. 1e-3 mV).
    for dv in (0.999e-3, 1.001e-3, -0.999e-3, -1.001e-3):
        u = dv / 10
        assert rates(np.float64(-40.0 + dv))["m"][0] == pytest.approx(1 + u / 2 + u * u / 12, rel=1e-14)


def test_rates_are_elementwise():
    V = np.array([[-80.0, -40.0], [-55.0, 20.0]])
    r = rates(V)
    for gate in "nmh":
        for k in range(2):
            assert r[gate][k].shape == V.shape
            assert r[gate][k][1, 0] == rates(np.float64(-55.0))[gate][k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_gradient_finite_at_singularities(dtype):
    V = torch.tensor([-40.0, -55.0, -40.0 + 1e-7, -55.0 - 1e-7, -40.0 + 1e-3], dtype=dtype, requires_grad=True)
    r = rates(V, torch)
    (grad_m,) = torch.autograd.grad(r["m"][0].sum(), V)
    (grad_n,) = torch.autograd.grad(r["n"][0].sum(), V)
    assert torch.isfinite(grad_m).all() and torch.isfinite(grad_n).all()
    # d alpha_m / dV = 0.1 * (1/2 + u/6 + ...) and d alpha_n / dV = 0.01 * (...) near u = 0.
    assert grad_m[0].item() == pytest.approx(0.05, rel=1e-6)
    assert grad_n[1].item() == pytest.approx(0.005, rel=1e-6)


def random_states(shape, seed=0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.uniform(-80, 45, shape + (1,)), rng.uniform(0, 1, shape + (3,))], axis=-1)
    z.reshape(-1, 4)[:2, 0] = (-40.0, -55.0)
    return z


def test_torch_matches_numpy_batched():
    p = HodgkinHuxley().params
    z = random_states((3, 5))
    f = HodgkinHuxley().torch_vector_field()
    expected = vector_field(z, p)
    assert expected.shape == (3, 5, 4)
    np.testing.assert_allclose(f(0.0, torch.tensor(z)).numpy(), expected, rtol=1e-12, atol=1e-12)
    out32 = f(torch.tensor(1.0), torch.tensor(z, dtype=torch.float32))
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=1e-4, atol=1e-3)


def test_vector_field_by_hand_at_initial_state():
    p = HodgkinHuxley().params
    V, n, m, h = p.y0
    i_ion = 120 * m**3 * h * (V - 50) + 36 * n**4 * (V + 77) + 0.3 * (V + 54.387)
    assert vector_field(np.array(p.y0), p)[0] == pytest.approx(10.0 - i_ion, rel=1e-14)


def test_jacobian_matches_finite_differences():
    p = HodgkinHuxley().params
    for z in random_states((6,), seed=1):
        J = jacobian(z, p)
        fd = np.empty((4, 4))
        for j in range(4):
            h = 1e-6 * (1.0 if j == 0 else 1e-2)
            e = np.zeros(4)
            e[j] = h
            fd[:, j] = (vector_field(z + e, p) - vector_field(z - e, p)) / (2 * h)
        np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-6 * np.abs(J).max())


def test_jacobian_matches_autograd():
    p = HodgkinHuxley().params
    f = HodgkinHuxley().torch_vector_field()
    for z in random_states((6,), seed=2):
        auto = torch.autograd.functional.jacobian(lambda x: f(0.0, x), torch.tensor(z)).numpy()
        np.testing.assert_allclose(jacobian(z, p), auto, rtol=1e-10, atol=1e-12)
    assert jacobian(random_states((2, 3)), p).shape == (2, 3, 4, 4)


# ----------------------------------------------------------------------------------------------
# Reference trajectory and training task
# ----------------------------------------------------------------------------------------------

def test_reference_matches_published_spikes(tmp_path):
    ref = HodgkinHuxley({"E_L": -54.4, **SHORT}).reference(100.0, cache_dir=tmp_path)
    assert len(ref.t) == 10001 and ref.t[-1] == pytest.approx(100.0, abs=1e-9)
    V = ref.state("V")
    peaks = spike_peak_times(ref.t, V)
    np.testing.assert_allclose(peaks, [2.16, 17.10, 31.75, 46.39, 61.03, 75.67, 90.31], atol=0.02)
    assert V.max() == pytest.approx(40.2, abs=0.5)
    assert V.min() == pytest.approx(-75.1, abs=0.5)
    gates = ref.y[:, 1:]
    assert gates.min() >= 0.0 and gates.max() <= 1.0


@pytest.mark.slow
def test_training_task_grids(default_task):
    system, task = default_task
    obs = task.observations
    assert task.system == "hh" and task.physics is None and task.dt == 0.01
    assert obs.y.shape == (1469, 4) and obs.state_names == ("V", "n", "m", "h")
    assert obs.t[0] == 0.0 and obs.t[-1] == pytest.approx(14.68, abs=1e-9)
    assert len(task.forecast_t) == 100001 and task.forecast_t[-1] == pytest.approx(1000.0, abs=1e-9)
    np.testing.assert_array_equal(obs.t, task.forecast_t[:1469])
    assert task.y0.dtype == np.float64
    np.testing.assert_array_equal(task.y0, system.params.y0)
    np.testing.assert_allclose(obs.y[0], task.y0, rtol=0, atol=1e-14)  # the noise starts at 0


@pytest.mark.slow
def test_training_noise_is_the_fixed_paper_literal_realisation(default_task, cache_dir):
    system, task = default_task
    clean = system.reference(14.68, cache_dir=cache_dir)
    np.testing.assert_array_equal(clean.t, task.observations.t)
    expected = ou_noise(1469, 0.01, 5.0, [0.5] * 4, seed=1111)
    np.testing.assert_allclose(task.observations.y - clean.y, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "params, sigma",
    [
        ({"noise_preset": "paper_literal"}, [0.5, 0.5, 0.5, 0.5]),
        ({"noise_preset": "repro_csv"}, [0.5, 0.0018, 0.0018, 0.0018]),
        ({"noise_preset": "none"}, [0.0, 0.0, 0.0, 0.0]),
        ({"noise_preset": "none", "noise_sigma": (1.0, 0.0, 0.01, 0.02)}, [1.0, 0.0, 0.01, 0.02]),
    ],
)
def test_fixed_noise_presets(params, sigma, cache_dir):
    system = HodgkinHuxley({**SHORT, **params})
    clean = system.reference(14.68, cache_dir=cache_dir)
    task = system.training_task(cache_dir=cache_dir)
    np.testing.assert_array_equal(system.noise_sigma(), sigma)
    np.testing.assert_allclose(task.observations.y - clean.y, ou_noise(1469, 0.01, 5.0, sigma, 1111), atol=1e-12)


def test_relative_noise_preset(cache_dir):
    system = HodgkinHuxley({**SHORT, "noise_preset": "relative_2pct", "noise_theta": 4.0})
    clean = system.reference(14.68, cache_dir=cache_dir).y
    assert system.noise_sigma() is None  # relative to the clean data: computed from them
    sigma = 0.02 * clean.std(axis=0) * math.sqrt(2 * 4.0)  # stationary std sigma / sqrt(2 theta)
    assert 0.02 * 20 < sigma[0] / math.sqrt(8.0) < 0.02 * 40  # V's std over one spike is 20-40 mV
    task = system.training_task(cache_dir=cache_dir)
    np.testing.assert_allclose(task.observations.y - clean, ou_noise(1469, 0.01, 4.0, sigma, 1111), atol=1e-12)


@pytest.mark.slow
def test_shorter_reference_is_a_prefix(default_task, cache_dir):
    system, task = default_task
    short = system.reference(50.0, cache_dir=cache_dir)
    full = system.reference(1000.0, cache_dir=cache_dir)
    assert len(short.t) == 5001
    np.testing.assert_array_equal(short.y, full.y[:5001])
    np.testing.assert_array_equal(full.t, task.forecast_t)


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------

def counting_solve_ivp(monkeypatch):
    calls = []
    real = ode_system.solve_ivp

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ode_system, "solve_ivp", wrapped)
    return calls


def refuse_solve_ivp(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("reference recomputed despite a valid cache entry")

    monkeypatch.setattr(ode_system, "solve_ivp", refuse)


def test_cache_hit_skips_integration(tmp_path, monkeypatch):
    first = HodgkinHuxley(SHORT).reference(110.0, cache_dir=tmp_path)
    refuse_solve_ivp(monkeypatch)
    second = HodgkinHuxley(SHORT).reference(110.0, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.y, second.y)
    # Noise parameters do not change the clean trajectory, so they share the entry.
    HodgkinHuxley({**SHORT, "noise_preset": "none", "noise_seed": 5}).training_task(cache_dir=tmp_path)


@pytest.mark.slow
def test_corrupted_cache_is_recomputed(tmp_path, monkeypatch):
    first = HodgkinHuxley(SHORT).reference(110.0, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("hh-reference-*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    calls = counting_solve_ivp(monkeypatch)
    second = HodgkinHuxley(SHORT).reference(110.0, cache_dir=tmp_path)
    assert calls == [1]
    np.testing.assert_array_equal(first.y, second.y)


@pytest.mark.slow
def test_dynamics_parameters_change_the_cache_key(tmp_path, monkeypatch):
    HodgkinHuxley(SHORT).reference(110.0, cache_dir=tmp_path)
    calls = counting_solve_ivp(monkeypatch)
    HodgkinHuxley({**SHORT, "I_ext": 9.0}).reference(110.0, cache_dir=tmp_path)
    assert calls == [1]


# ----------------------------------------------------------------------------------------------
# Parameters and plugin shape
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "params, message",
    [
        ({"noise_preset": "loud"}, "paper_literal, repro_csv, none, relative_2pct"),
        ({"bogus": 1}, "bogus"),
        ({"y0": (-65.0, 1.2, 0.05, 0.6)}, "less than or equal to 1"),
        ({"y0": (-65.0, 0.32, -0.01, 0.6)}, "greater than or equal to 0"),
        ({"extrapolation": (100.0, 14.68)}, "t0 < t1"),
        ({"long": (10.0, 1000.0)}, "before the training window ends"),
        ({"t_train": (1.0, 14.68)}, "t_train"),
        ({"t_train": (0.0, 0.0)}, "t_train"),
        ({"long": (100.0, 1000.005)}, "sampling grid"),
        ({"noise_sigma": (0.5, -0.1, 0.0, 0.0)}, "greater than or equal to 0"),
        ({"C_m": 0.0}, "greater than 0"),
        ({"g_Na": -1.0}, "greater than or equal to 0"),
        ({"E_L": float("nan")}, "finite"),
        ({"dt": -0.01}, "greater than 0"),
    ],
)
def test_invalid_params(params, message):
    with pytest.raises(pydantic.ValidationError) as err:
        HodgkinHuxley(params)
    assert message in str(err.value)


def test_params_are_frozen():
    system = HodgkinHuxley()
    with pytest.raises(pydantic.ValidationError):
        system.params.I_ext = 5.0


def test_evaluation_windows_and_horizon():
    system = HodgkinHuxley()
    assert system.evaluation_windows() == [Window("extrapolation", 14.68, 100.0), Window("long", 100.0, 1000.0)]
    assert system.horizon == 1000.0


def test_plugin_shape_and_entry_point():
    system = HodgkinHuxley()
    assert isinstance(system, KnownPhysics) and isinstance(system, Spiking)
    assert system.name == "hh" and system.voltage_state == "V" and system.state_names == ("V", "n", "m", "h")
    (ep,) = [e for e in entry_points(group="stiffbench.systems") if e.name == "hh"]
    assert ep.load() is HodgkinHuxley
