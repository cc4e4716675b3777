"""The stiff chemistry systems from the Test Set for IVP Solvers (orego, hires, pollu, e5): their
references against the Test Set's published solutions, their equations against independent
transcriptions of the Test Set's Fortran, positivity, the Oregonator's period, and conformance."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from stiffbench.api import Bounded, FullyObserved, Oscillating
from stiffbench.describe import describe_plugin
from stiffbench.registry import PluginSpec, Registry
from stiffbench.testing.conformance import check_system
from stiffbench_systems.e5 import E5
from stiffbench_systems.hires import Hires
from stiffbench_systems.orego import Oregonator
from stiffbench_systems.pollu import SPECIES, Pollution

SYSTEMS = {"orego": Oregonator, "hires": Hires, "pollu": Pollution, "e5": E5}

# The Test Set's reference solutions at the end of each problem's span (routines solut of orego.f
# and e5.f, hiressol of hires.f, polsoln of pollu.f; the same values in deTestSet's
# R/ex_reference.R), computed with RADAU5 at rtol 1.1e-18 in extended precision.
OREGO_360 = [0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3]
HIRES_321 = [0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4, 0.1175651343283149e-2,
             0.2386356198831331e-2, 0.6238968252742796e-2, 0.2849998395185769e-2, 0.2850001604814231e-2]
POLLU_60 = [0.5646255480022769e-01, 0.1342484130422339e+00, 0.4139734331099427e-08, 0.5523140207484359e-02,
            0.2018977262302196e-06, 0.1464541863493966e-06, 0.7784249118997964e-01, 0.3245075353396018e+00,
            0.7494013383880406e-02, 0.1622293157301561e-07, 0.1135863833257075e-07, 0.2230505975721359e-02,
            0.2087162882798630e-03, 0.1396921016840158e-04, 0.8964884856898295e-02, 0.4352846369330103e-17,
            0.6899219696263405e-02, 0.1007803037365946e-03, 0.1772146513969984e-05, 0.5682943292316392e-04]
E5_1E13 = [0.1152903278711829e-290, 0.8867655517642120e-22, 0.8854814626268838e-22, 0.0]


# ------------------------------------------------------------------------------------------------
# The Test Set's published solutions
# ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_orego_reference_matches_the_test_set_solution(session_cache):
    ref = Oregonator().reference(360.0, cache_dir=session_cache)
    assert ref.t[-1] == pytest.approx(360.0, rel=1e-12)
    np.testing.assert_allclose(ref.y[-1], OREGO_360, rtol=1e-9)


def test_hires_reference_matches_the_test_set_solution(session_cache):
    ref = Hires().reference(321.8122, cache_dir=session_cache)
    assert ref.t[-1] == 321.8122  # an explicit grid point
    np.testing.assert_allclose(ref.y[-1], HIRES_321, rtol=1e-9)


@pytest.mark.slow
def test_pollu_reference_matches_the_test_set_solution(session_cache):
    ref = Pollution().reference(60.0, cache_dir=session_cache)
    assert ref.t[-1] == pytest.approx(60.0, rel=1e-12)
    np.testing.assert_allclose(ref.y[-1], POLLU_60, rtol=1e-9)  # O1D (4.35e-18) included


def test_e5_reference_matches_the_test_set_solution(session_cache):
    """At t = 1e13 y1 and y4 are zero at any usable absolute tolerance (the Test Set prints 1e-290
    and 0), and y2 = y3 + y4 (an invariant of the equations), so y2 = y3: the Test Set's y2 and y3
    differ by 1.3e-25, far below the absolute tolerance 1.7e-24 used with them, and ours is their
    mean."""
    ref = E5().reference(1e13, cache_dir=session_cache)
    assert ref.t[-1] == pytest.approx(1e13, rel=1e-12)
    y = ref.y[-1]
    assert abs(y[0]) < 1e-30 and abs(y[3]) < 1e-30
    np.testing.assert_allclose(y, E5_1E13, rtol=0, atol=1.7e-24)
    np.testing.assert_allclose(y[1:3], E5_1E13[1:3], rtol=7.3e-4)
    np.testing.assert_allclose(y[1:3], np.mean(E5_1E13[1:3]), rtol=1e-6)
    assert y[1] == pytest.approx(1 / (1.13e9 * 1e13), rel=2e-3)  # the 1 / (M C t) tail


def test_e5_reference_keeps_the_invariant(session_cache):
    ref = E5().reference(1e13, cache_dir=session_cache)
    y1, y2, y3, y4 = ref.y.T
    assert (np.abs(y2 - y3 - y4) <= 4e-16 * y2).all()  # substituted, exact to rounding
    assert y2.max() == pytest.approx(1.46e-10, rel=0.01)


@pytest.mark.slow
def test_e5_reference_against_the_other_reduced_form():
    """An independent integration: Radau on (y1, y2, y4) with y3 = y2 - y4 substituted (the
    reference substitutes y2 instead), at every grid point."""
    system = E5()
    A, B, C, M = 7.89e-10, 1.1e7, 1.13e3, 1e6

    def f(t, z):
        y1, y2, y4 = z
        y3 = y2 - y4
        return [-A * y1 - B * y1 * y3, A * y1 - M * C * y2 * y3, B * y1 * y3 - C * y4]

    def jac(t, z):
        y1, y2, y4 = z
        y3 = y2 - y4
        return [[-A - B * y3, -B * y1, B * y1], [A, -M * C * (y2 + y3), M * C * y2], [B * y3, B * y1, -B * y1 - C]]

    t = system.protocol().forecast_times()
    sol = solve_ivp(f, (0, t[-1]), [1.76e-3, 0, 0], method="Radau", jac=jac, t_eval=t, rtol=1e-10,
                    atol=[1e-26, 1e-32, 1e-32])
    other = np.stack([sol.y[0], sol.y[1], sol.y[1] - sol.y[2], sol.y[2]], 1)
    ref = system.reference(t[-1])
    floor = np.array([1e-24, 1e-30, 1e-30, 1e-30])  # 100 x this Radau's atol (for y3, its parts')
    assert (np.abs(ref.y - other) <= 1e-7 * np.abs(other) + floor).all()


# ------------------------------------------------------------------------------------------------
# The equations against the Test Set's Fortran
# ------------------------------------------------------------------------------------------------

def test_orego_test_set_form_equals_the_expanded_form():
    """orego.f's feval, s (y2 + y1 (1 - q y1 - y2)), (y3 - (1 + y1) y2) / s, w (y1 - y3), is the
    system's s (y2 - y1 y2 + y1 - q y1^2), (-y2 - y1 y2 + y3) / s, w (y1 - y3)."""
    s, w, q = 77.27, 0.161, 8.375e-6
    system = Oregonator()
    for y in np.random.default_rng(0).uniform([0.5, 1e-3, 0.5], [1.2e5, 1.8e3, 3.1e4], (20, 3)):
        y1, y2, y3 = y
        expanded = [s * (y2 + y1 * (1 - q * y1 - y2)), (y3 - (1 + y1) * y2) / s, w * (y1 - y3)]
        np.testing.assert_allclose(system.rhs(0.0, y, np), expanded, rtol=1e-12, atol=1e-12 * s * y1 * y2)


def test_hires_rhs_matches_hires_f_with_the_sums_evaluated():
    """Hairer & Wanner's numbers: 8.75 = k2 + k3, 10.03 = k6 + k1, 1.12 = k4 + k2, 1.745 = k5 + k1,
    1.81 = k2 + k8 + k9."""
    system = Hires()
    for y in np.random.default_rng(1).uniform(0, 1, (10, 8)):
        f7 = 280 * y[5] * y[7] - 1.81 * y[6]
        expected = [-1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007, 1.71 * y[0] - 8.75 * y[1],
                    -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4], 8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
                    -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
                    -280 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6], f7, -f7]
        np.testing.assert_allclose(system.rhs(0.0, y, np), expected, rtol=1e-12, atol=1e-14)


def _pollu_f(y):
    """polfunc of pollu.f, transcribed: the rates r1..r25 and f1..f20 as the Fortran writes them."""
    k = [.35, .266e2, .123e5, .86e-3, .82e-3, .15e5, .13e-3, .24e5, .165e5, .9e4, .22e-1, .12e5, .188e1,
         .163e5, .48e7, .35e-3, .175e-1, .1e9, .444e12, .124e4, .21e1, .578e1, .474e-1, .178e4, .312e1]
    y = np.concatenate([[np.nan], y])  # 1-based, as in the Fortran
    r = [np.nan, k[0] * y[1], k[1] * y[2] * y[4], k[2] * y[5] * y[2], k[3] * y[7], k[4] * y[7],
         k[5] * y[7] * y[6], k[6] * y[9], k[7] * y[9] * y[6], k[8] * y[11] * y[2], k[9] * y[11] * y[1],
         k[10] * y[13], k[11] * y[10] * y[2], k[12] * y[14], k[13] * y[1] * y[6], k[14] * y[3], k[15] * y[4],
         k[16] * y[4], k[17] * y[16], k[18] * y[16], k[19] * y[17] * y[6], k[20] * y[19], k[21] * y[19],
         k[22] * y[1] * y[4], k[23] * y[19] * y[1], k[24] * y[20]]
    return np.array([
        -r[1] - r[10] - r[14] - r[23] - r[24] + r[2] + r[3] + r[9] + r[11] + r[12] + r[22] + r[25],
        -r[2] - r[3] - r[9] - r[12] + r[1] + r[21],
        -r[15] + r[1] + r[17] + r[19] + r[22],
        -r[2] - r[16] - r[17] - r[23] + r[15],
        -r[3] + r[4] + r[4] + r[6] + r[7] + r[13] + r[20],
        -r[6] - r[8] - r[14] - r[20] + r[3] + r[18] + r[18],
        -r[4] - r[5] - r[6] + r[13],
        r[4] + r[5] + r[6] + r[7],
        -r[7] - r[8],
        -r[12] + r[7] + r[9],
        -r[9] - r[10] + r[8] + r[11],
        r[9],
        -r[11] + r[10],
        -r[13] + r[12],
        r[14],
        -r[18] - r[19] + r[16],
        -r[20],
        r[20],
        -r[21] - r[22] - r[24] + r[23] + r[25],
        -r[25] + r[24],
    ])


def test_pollu_stoichiometry_matches_pollu_f():
    system = Pollution()
    assert SPECIES[15] == "O1D" and SPECIES[16] == "SO2"
    rng = np.random.default_rng(2)
    for y in [np.asarray(POLLU_60), *rng.uniform(0, 1, (10, 20)) * np.asarray(POLLU_60) * 10]:
        expected = _pollu_f(y)
        np.testing.assert_allclose(system.rhs(0.0, y, np), expected, rtol=1e-12,
                                   atol=1e-14 * np.abs(expected).max())
    assert np.allclose(system.initial_state()[[1, 3, 6, 7, 8, 16]], [0.2, 0.04, 0.1, 0.3, 0.01, 0.007])
    assert np.count_nonzero(system.initial_state()) == 6


def test_pollu_rhs_is_batched_on_torch():
    import torch

    system = Pollution()
    y = np.random.default_rng(3).uniform(0, 1, (2, 3, 20)) * np.asarray(POLLU_60) * 10
    out = system.rhs(torch.zeros(2, 3), torch.as_tensor(y, dtype=torch.float32), torch)
    assert out.shape == (2, 3, 20) and out.dtype == torch.float32
    out = system.rhs(torch.zeros(2, 3, dtype=torch.float64), torch.as_tensor(y), torch).numpy()
    for i, j in np.ndindex(2, 3):
        expected = _pollu_f(y[i, j])
        np.testing.assert_allclose(out[i, j], expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())


# ------------------------------------------------------------------------------------------------
# Long-time behaviour, positivity, the Oregonator's period
# ------------------------------------------------------------------------------------------------

def test_hires_long_window_ends_at_the_steady_state(session_cache):
    """Steady state by hand: y1 + ... + y7 changes at rate oks - k9 y7, so y7 = oks / k9; y7 + y8 is
    conserved, so y8 = 0.0057 - y7; then f1..f5 = 0 and f7 = 0 are linear in y1..y6."""
    k1, k2, k3, k4, k5, k6, k7, k8, k9, oks = 1.71, 0.43, 8.32, 0.69, 0.035, 8.32, 280, 0.69, 0.69, 0.0007
    y7 = oks / k9
    y8 = 0.0057 - y7
    A = np.array([
        [-k1, k2, k6, 0, 0, 0],
        [k1, -(k2 + k3), 0, 0, 0, 0],
        [0, 0, -(k6 + k1), k2, k5, 0],
        [0, k3, k1, -(k4 + k2), 0, 0],
        [0, 0, 0, 0, -(k5 + k1), k2],
        [0, 0, 0, 0, 0, k7 * y8],
    ])
    b = np.array([-oks, 0, 0, 0, -k2 * y7, (k2 + k8 + k9) * y7])
    steady = np.concatenate([np.linalg.solve(A, b), [y7, y8]])
    ref = Hires().reference(1000.0, cache_dir=session_cache)
    np.testing.assert_allclose(ref.y[-1], steady, rtol=1e-9)


@pytest.mark.parametrize("name", ["hires", "e5", pytest.param("orego", marks=pytest.mark.slow),
                                  pytest.param("pollu", marks=pytest.mark.slow)])
def test_reference_is_positive_and_finite_over_the_horizon(name, session_cache):
    system = SYSTEMS[name]()
    ref = system.reference(system.horizon, cache_dir=session_cache)
    assert np.isfinite(ref.y).all()
    atol = np.broadcast_to(np.asarray(system.reference_solver().atol), (len(system.state_names),))
    assert (ref.y >= -10 * atol).all()  # below 10 x atol a concentration is zero to the solver
    assert ref.t[-1] == pytest.approx(system.horizon, rel=1e-12)


@pytest.mark.slow
def test_orego_period_from_the_reference(session_cache):
    """y1's upward crossings of its mean, on the 0.1 grid, against the period 302.858 located by
    event detection (LSODA and Radau agree to 1e-8)."""
    system = Oregonator()
    assert isinstance(system, Oscillating) and system.oscillation_state == "y1"
    ref = system.reference(3000.0, cache_dir=session_cache)
    y1 = ref.state(system.oscillation_state)
    up = np.flatnonzero((y1[:-1] < y1.mean()) & (y1[1:] >= y1.mean()))
    assert len(up) == 10  # spikes at t = 20.3, 323.2, ..., 2746.1
    np.testing.assert_allclose(np.diff(ref.t[up]), 302.858, atol=0.1)
    assert ref.t[up[0]] == pytest.approx(20.3, abs=0.1)


def test_orego_period_by_event_detection():
    system = Oregonator()

    def rising(t, y):
        return y[0] - 1e3

    rising.direction = 1
    sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0, 1000), system.initial_state(), method="LSODA",
                    jac=system.jac, rtol=1e-11, atol=1e-11, events=rising)
    np.testing.assert_allclose(np.diff(sol.t_events[0]), 302.858, atol=2e-3)


# ------------------------------------------------------------------------------------------------
# Protocols
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, windows, n_obs, first_obs", [
    ("orego", [(0, 360), (360, 1000), (1000, 3000)], 3601, 0.0),
    ("hires", [(1e-3, 32.18122), (32.18122, 321.8122), (321.8122, 1000)], 50, 1e-3),
    ("pollu", [(6e-6, 6), (6, 60), (60, 6000)], 50, 6e-6),
    ("e5", [(1e-5, 1e5), (1e5, 1e9), (1e9, 1e13)], 50, 1e-5),
])
def test_protocol_windows_and_observations(name, windows, n_obs, first_obs):
    system = SYSTEMS[name]()
    assert [w.name for w in system.evaluation_windows()] == ["fit", "extrapolation", "long"]
    np.testing.assert_allclose([(w.t0, w.t1) for w in system.evaluation_windows()], windows, rtol=1e-12)
    t_obs = system.protocol().observation_times()
    assert len(t_obs) == n_obs and t_obs[0] == pytest.approx(first_obs)
    assert system.has_capability(Bounded) and system.has_capability(FullyObserved)
    assert all(s.bounds == (0.0, None) for s in system.states)


def test_noise_is_one_percent_log_normal(session_cache):
    system = Hires()
    task = system.training_task(cache_dir=session_cache)
    clean = system.reference(32.18122, cache_dir=session_cache)
    t = task.observations.t
    assert not np.isin(t, clean.t).all()  # log-spaced observations between the grid's points
    noisy = task.observations.y
    assert (noisy > 0).all()
    exact = system.integrate(0.0, t, system.reference_solver())
    log_ratio = np.log(noisy / exact)
    assert 0.008 < log_ratio.std() < 0.012 and abs(log_ratio.mean()) < 0.002


def test_registry_loads_them_and_list_describes_the_protocol():
    specs = [PluginSpec("systems", name, f"stiffbench_systems.{name}:{cls.__name__}", "stiffbench", "0.1.0")
             for name, cls in SYSTEMS.items()]
    registry = Registry(specs=specs)
    for name, cls in SYSTEMS.items():
        assert registry.load("systems", name) is cls
        text = "\n".join(describe_plugin(cls))
        assert "evaluation windows: fit" in text and "log-normal, sigma 0.01" in text and "Test Set" in text


# ------------------------------------------------------------------------------------------------
# Conformance
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hires", "e5", pytest.param("orego", marks=pytest.mark.slow),
                                  pytest.param("pollu", marks=pytest.mark.slow)])
def test_conformance(name, session_cache):
    check_system(SYSTEMS[name], cache_dir=session_cache)
