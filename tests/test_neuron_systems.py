"""The Morris–Lecar and Hindmarsh–Rose systems: conformance, references against a second
integrator at tighter tolerance, the periods and burst structure their docstrings state, and the
difference between Hodgkin's excitability classes I and II."""

import numpy as np
import pytest
from pydantic import Field, ValidationError
from scipy.integrate import solve_ivp
from scipy.optimize import minimize_scalar

from stiffbench.api import Bounded, FullyObserved, KnownPhysics, Oscillating, Spiking
from stiffbench.metrics.oscillation import upward_crossings
from stiffbench.registry import PluginSpec, Registry
from stiffbench.spikes import detect_spikes
from stiffbench.testing.conformance import check_system
from stiffbench_systems.hindmarsh_rose import HindmarshRose
from stiffbench_systems.morris_lecar import MorrisLecar, Regime, resting_state, steady_current


class MorrisLecarClass1(MorrisLecar):
    """Morris–Lecar with class1 as its default regime, so that check_system sees that set too."""

    class Params(MorrisLecar.Params):
        regime: Regime = Field("class1")


def ml_period(system: MorrisLecar, t_end: float, spikes: int = 4) -> float:
    """Mean spacing of V's last `spikes` + 1 upward crossings of 0 mV over [0, t_end], from a
    solve_ivp run of the system's own rhs (LSODA with its Jacobian, rtol 1e-9)."""
    sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0.0, t_end), system.initial_state(), method="LSODA",
                    jac=system.jac, rtol=1e-9, atol=1e-9, dense_output=True)
    t = np.arange(0.0, t_end, 0.05)
    up = upward_crossings(t, sol.sol(t)[0], 0.0)
    assert len(up) > spikes + 1, f"only {len(up)} spikes by t = {t_end}"
    return float(np.mean(np.diff(up[-(spikes + 1):])))


def bursts(t: np.ndarray, x: np.ndarray, system: HindmarshRose, gap: float = 100.0) -> list[np.ndarray]:
    """The spike times of x (the system's spike settings) grouped into bursts: a new burst starts
    after an interval longer than `gap`."""
    s = system.spike_settings()
    times = detect_spikes(t, x, s.threshold, s.merge).times
    return np.split(times, np.flatnonzero(np.diff(times) > gap) + 1)


# ----------------------------------------------------------------------------------------------
# Conformance and the reference
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("cls", [MorrisLecar, MorrisLecarClass1, HindmarshRose])
def test_check_system(cls, session_cache):
    check_system(cls, cache_dir=session_cache)


@pytest.mark.slow
def test_morris_lecar_reference_against_dop853_at_tighter_tolerance(session_cache):
    """The whole class2 horizon (6000 ms, 70 spikes) against DOP853 at 1e-13."""
    system = MorrisLecar()
    ref = system.reference(system.horizon, cache_dir=session_cache)
    sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0.0, ref.t[-1]), system.initial_state(), method="DOP853",
                    rtol=1e-13, atol=1e-13, t_eval=ref.t)
    err = np.abs(sol.y.T - ref.y).max(axis=0)
    assert err[0] < 2e-6 and err[1] < 2e-8, err  # measured: 3.5e-7 mV, 9.7e-10


@pytest.mark.slow
def test_hindmarsh_rose_reference_against_dop853_at_tighter_tolerance(session_cache):
    """The training and extrapolation windows (six bursts, 108 spikes) against DOP853 at 1e-13."""
    system = HindmarshRose()
    t_end = system.params.extrapolation[1]
    ref = system.reference(t_end, cache_dir=session_cache)
    sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0.0, t_end), system.initial_state(), method="DOP853",
                    rtol=1e-13, atol=1e-13, t_eval=ref.t)
    err = np.abs(sol.y.T - ref.y).max(axis=0)
    assert err[0] < 1e-5 and err[1] < 2e-5 and err[2] < 1e-7, err  # measured: 1.9e-6, 4.4e-6, 4.1e-9


@pytest.mark.parametrize("cls, columns", [(MorrisLecar, ("V", "w")), (HindmarshRose, ("x", "y", "z"))])
def test_reference_columns_and_grid(cls, columns, session_cache):
    """What `stiffbench simulate` writes: the states in order on the system's 0.1 grid from 0 to T
    (short windows here, since a reference is integrated over the whole horizon)."""
    system = cls({"t_train": 10.0, "extrapolation": (10.0, 20.0), "long": (20.0, 30.0)})
    ref = system.reference(25.0, cache_dir=session_cache)
    assert ref.state_names == columns == system.state_names
    np.testing.assert_allclose(ref.t, 0.1 * np.arange(251), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref.y[0], system.initial_state(), rtol=1e-12)
    assert np.isfinite(ref.y).all()


@pytest.mark.parametrize("name, cls", [("morris_lecar", MorrisLecar), ("hindmarsh_rose", HindmarshRose)])
def test_loads_through_the_registry(name, cls):
    registry = Registry(specs=[PluginSpec("systems", name, f"{cls.__module__}:{cls.__name__}", "stiffbench", "0")])
    assert registry.load("systems", name) is cls and cls.name == name


# ----------------------------------------------------------------------------------------------
# Morris–Lecar
# ----------------------------------------------------------------------------------------------

def test_morris_lecar_regimes_and_overrides():
    class2, class1 = MorrisLecar(), MorrisLecar({"regime": "class1"})
    assert class2.params.regime == "class2"  # the default
    k2, k1 = class2.constants, class1.constants
    assert (k2.g_Ca, k2.V3, k2.V4, k2.phi) == (4.4, 2.0, 30.0, 0.04)
    assert (k1.g_Ca, k1.V3, k1.V4, k1.phi) == (4.0, 12.0, 17.4, 1 / 15)
    shared = (20.0, 2.0, 8.0, -60.0, -84.0, 120.0, -1.2, 18.0)  # C, g_L, g_K, E_L, E_K, E_Ca, V1, V2
    assert k1[:3] + k1[4:9] == k2[:3] + k2[4:9] == shared
    assert (class2.constants.I_ext, class1.constants.I_ext) == (100.0, 60.0)
    # An explicit constant overrides the set; the others keep the set's values.
    override = MorrisLecar({"regime": "class1", "g_Ca": 4.4, "I_ext": 45.0})
    assert (override.constants.g_Ca, override.constants.I_ext, override.constants.V3) == (4.4, 45.0, 12.0)
    # Windows follow the regime unless given.
    assert [(w.t0, w.t1) for w in class2.evaluation_windows()] == [(85.0, 600.0), (600.0, 6000.0)]
    assert [(w.t0, w.t1) for w in class1.evaluation_windows()] == [(60.0, 400.0), (400.0, 4000.0)]
    assert class1.protocol().train == (0.0, 60.0) and class2.protocol().train == (0.0, 85.0)
    assert MorrisLecar({"t_train": 100.0, "extrapolation": (100.0, 700.0)}).protocol().train == (0.0, 100.0)
    with pytest.raises(ValidationError):
        MorrisLecar.Params(t_train=100.0)  # the default extrapolation window starts at 85, before it ends
    with pytest.raises(ValidationError):
        MorrisLecar.Params(regime="class3")
    with pytest.raises(ValidationError):
        MorrisLecar.Params(y0=(-60.0, 1.5))  # w is a fraction


@pytest.mark.parametrize("regime, V_rest", [("class2", -60.8554), ("class1", -59.4740)])
def test_morris_lecar_starts_at_rest_for_zero_current(regime, V_rest):
    """y0 is the equilibrium of lowest V at I_ext = 0 (the current steps on at t = 0, as in hh);
    class1 has three equilibria there (near -59.5, -9.5 and 0.2 mV)."""
    system = MorrisLecar({"regime": regime})
    y0 = system.initial_state()
    assert y0[0] == pytest.approx(V_rest, abs=1e-4)
    at_rest = MorrisLecar({"regime": regime, "I_ext": 0.0})
    np.testing.assert_allclose(at_rest.rhs(0.0, y0, np), 0.0, atol=1e-12)
    below = np.linspace(min(system.constants.E_K, system.constants.E_L), y0[0] - 1e-6, 1000)
    assert np.all(steady_current(below, system.constants) < 0)  # no equilibrium below it
    assert resting_state(system.constants, 0.0) == pytest.approx(tuple(y0), abs=1e-12)
    assert MorrisLecar({"regime": regime, "y0": (-50.0, 0.1)}).initial_state().tolist() == [-50.0, 0.1]


@pytest.mark.slow
@pytest.mark.parametrize("regime, period, v_range", [
    ("class2", 85.29, (-50.34, 33.33)),
    ("class1", 58.62, (-42.77, 32.82)),
])
def test_morris_lecar_tonic_spiking_period(regime, period, v_range, session_cache):
    """The periods and voltage ranges the class docstring states, on the reference (the spacing of
    V's upward crossings of 0 mV after the first spike), and one spike per period."""
    system = MorrisLecar({"regime": regime})
    ref = system.reference(system.evaluation_windows()[0].t1, cache_dir=session_cache)  # to the extrapolation's end
    up = upward_crossings(ref.t, ref.state("V"), 0.0)
    isi = np.diff(up)[1:]
    assert isi == pytest.approx(period, rel=1e-2)
    settled = ref.window(up[1], ref.t[-1])
    assert (settled.state("V").min(), settled.state("V").max()) == pytest.approx(v_range, abs=0.05)
    s = system.spike_settings()
    spikes = detect_spikes(ref.t, ref.state("V"), s.threshold, s.merge).times
    assert len(spikes) == len(up)
    train = ref.window(*system.protocol().train)
    assert len(detect_spikes(train.t, train.state("V"), s.threshold, s.merge).times) == 1  # about one period


def test_morris_lecar_class1_fires_arbitrarily_slowly_class2_does_not():
    """Hodgkin's classes (Rinzel & Ermentrout 1998): class I's period diverges as the current
    approaches the onset of firing (a saddle-node on the invariant circle, at 39.96 here); class
    II starts firing at a finite period (periodic orbits appear at 88.29 through a fold, and the
    rest state loses stability at the Hopf point 93.86). Just above onset (1.3 % for class I,
    0.8 % for class II) class I's period is more than 4 times its period at the default current,
    class II's less than 1.5 times."""
    class1 = MorrisLecar({"regime": "class1", "I_ext": 40.5})
    class2 = MorrisLecar({"regime": "class2", "I_ext": 89.0})
    slow1, slow2 = ml_period(class1, 2000.0), ml_period(class2, 800.0)
    assert slow1 == pytest.approx(264.0, rel=0.01) and slow2 == pytest.approx(108.3, rel=0.01)
    assert slow1 > 4 * 58.62
    assert slow2 < 1.5 * 85.29
    # Below onset both rest after at most one spike.
    for system in (MorrisLecar({"regime": "class1", "I_ext": 39.5}), MorrisLecar({"regime": "class2", "I_ext": 88.0})):
        sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0.0, 1500.0), system.initial_state(), method="LSODA",
                        jac=system.jac, rtol=1e-9, atol=1e-9, t_eval=np.arange(0.0, 1500.0, 0.1))
        assert len(upward_crossings(sol.t, sol.y[0], 0.0)) <= 1


def test_morris_lecar_capabilities_and_units():
    system = MorrisLecar()
    assert all(isinstance(system, c) for c in (Spiking, Oscillating, KnownPhysics))
    assert system.has_capability(Bounded) and system.has_capability(FullyObserved)
    assert system.state_units() == {"V": "mV"} and system.time_unit == "ms"
    s = system.spike_settings()
    assert (s.state, s.threshold, s.merge, s.tolerance) == ("V", 0.0, 10.0, 8.0)


# ----------------------------------------------------------------------------------------------
# Hindmarsh–Rose
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_hindmarsh_rose_bursts_of_18_spikes(session_cache):
    """Each of the 20 bursts before the horizon has 18 separate spikes, one burst every 504.44
    time units (the 21st burst's first spike, at 10097.5, ends the long window); the training
    window holds exactly the first burst, the extrapolation window the next five."""
    system = HindmarshRose()
    ref = system.reference(system.horizon, cache_dir=session_cache)
    groups = bursts(ref.t, ref.state("x"), system)
    assert [len(g) for g in groups] == [18] * 20 + [1]
    assert groups[-1][0] == pytest.approx(10097.5, abs=0.11)
    starts = np.array([g[0] for g in groups])
    assert np.diff(starts[1:]) == pytest.approx(504.44, abs=0.11)  # on the 0.1 grid
    assert np.mean(np.diff(starts[1:])) == pytest.approx(504.44, abs=0.01)
    assert starts[1] - starts[0] == pytest.approx(504.9, abs=0.11)  # y0's rounding delays the second burst
    assert starts[0] == pytest.approx(8.2, abs=0.11)
    intra = np.concatenate([np.diff(g) for g in groups])
    assert intra.min() > 2 * system.spike_tolerance and intra.min() > system.spike_merge
    train = ref.window(*system.protocol().train)
    assert [len(g) for g in bursts(train.t, train.state("x"), system)] == [18]
    windows = {w.name: w for w in system.evaluation_windows()}
    extrapolation = windows["extrapolation"]
    assert len([g for g in groups if extrapolation.t0 <= g[0] and g[-1] <= extrapolation.t1]) == 5


def test_hindmarsh_rose_y0_lies_on_the_burst_cycle():
    """y0 is the cycle's point of lowest z, rounded: one cycle later z's lowest point (searched
    over [300, 800], the next burst onset) is y0 again to 1e-4."""
    system = HindmarshRose()
    sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0.0, 800.0), system.initial_state(), method="LSODA",
                    jac=system.jac, rtol=1e-10, atol=1e-12, dense_output=True)
    t = np.arange(300.0, 800.0, 0.01)
    k = np.argmin(sol.sol(t)[2])
    lowest = minimize_scalar(lambda s: sol.sol(s)[2], bounds=(t[k] - 0.02, t[k] + 0.02), method="bounded",
                             options={"xatol": 1e-7}).x
    assert lowest == pytest.approx(504.96, abs=0.05)  # one period, 504.44, plus the rounding's transient
    np.testing.assert_allclose(sol.sol(lowest), system.initial_state(), atol=1e-4)


def test_hindmarsh_rose_rhs_on_floats_matches_arrays():
    """The one-state numpy path (Python floats) and the batched path give the same numbers."""
    system = HindmarshRose()
    y = np.array([[-0.9, -3.6, 2.7], [1.5, -10.0, 3.0], [0.2, 0.5, 2.9]])
    one_at_a_time = np.stack([system.rhs(0.0, yi, np) for yi in y])
    np.testing.assert_allclose(one_at_a_time, system.rhs(0.0, y, np), rtol=1e-14, atol=1e-14)
    x, v, z = y[0]
    expected = [v - x**3 + 3 * x**2 - z + 3.0, 1 - 5 * x**2 - v, 0.001 * (4 * (x + 1.6) - z)]
    np.testing.assert_allclose(one_at_a_time[0], expected, rtol=1e-14)


def test_hindmarsh_rose_capabilities_and_parameters():
    system = HindmarshRose()
    p = system.params
    assert (p.a, p.b, p.c, p.d, p.s, p.x_R, p.r, p.I) == (1.0, 3.0, 1.0, 5.0, 4.0, -1.6, 0.001, 3.0)
    assert all(isinstance(system, c) for c in (Spiking, Oscillating, KnownPhysics))
    assert not system.has_capability(Bounded)
    assert system.time_unit == "" and system.state_units() == {}
    assert [(w.name, w.t0, w.t1) for w in system.evaluation_windows()] == [
        ("extrapolation", 505.0, 3030.0), ("long", 3030.0, 10100.0)]
    with pytest.raises(ValidationError):
        HindmarshRose.Params(r=0.0)
