"""The built-in systems beyond HH (fhn, vdp, rober): their protocols, references against
independent values, and `stiffbench simulate` on their own grids."""

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp

from stiffbench.api import Bounded, FullyObserved, KnownPhysics, Spiking
from stiffbench.cli import main
from stiffbench_systems.fhn import FitzHughNagumo
from stiffbench_systems.rober import Robertson
from stiffbench_systems.vdp import VanDerPol


def test_rober_reference_matches_the_test_set_solution(session_cache):
    """Test Set for IVP Solvers, problem ROBER: the reference solution at t = 1e11."""
    ref = Robertson().reference(1e11, cache_dir=session_cache)
    assert ref.t[-1] == pytest.approx(1e11)
    np.testing.assert_allclose(ref.y[-1], [0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050],
                               rtol=1e-6)
    np.testing.assert_allclose(ref.y.sum(axis=1), 1.0, atol=1e-9)  # mass is conserved
    assert 3.6e-5 < ref.y[:, 1].max() < 3.7e-5  # y2's peak


def test_rober_protocol_is_log_spaced_with_relative_noise(session_cache):
    system = Robertson()
    task = system.training_task(cache_dir=session_cache)
    obs = task.observations
    np.testing.assert_allclose(obs.t, np.logspace(-5, 5, 50))
    assert task.initial_time == 0.0 and task.dt is None and task.forecast_t[0] == 0.0
    assert task.forecast_t[1] == pytest.approx(1e-5) and task.forecast_t[-1] == pytest.approx(1e11)
    clean = system.reference(1e5, cache_dir=session_cache)
    ratio = obs.y[:, 0] / np.interp(obs.t, clean.t, clean.y[:, 0])
    assert 0.003 < np.std(ratio - 1) < 0.02  # 1 % relative noise
    assert system.time_unit == "s" and system.has_capability(Bounded) and system.has_capability(FullyObserved)
    assert [w.name for w in system.evaluation_windows()] == ["fit", "extrapolation", "long"]


@pytest.mark.parametrize("mu, period", [(1.0, 6.6633), (1000.0, 1614.40)])
def test_vdp_period_and_windows_in_periods(mu, period):
    system = VanDerPol({"mu": mu})
    assert system.period == pytest.approx(period, rel=1e-4)
    windows = {w.name: (w.t0, w.t1) for w in system.evaluation_windows()}
    assert windows["extrapolation"] == pytest.approx((period, 3 * period), rel=1e-4)
    assert windows["long"] == pytest.approx((3 * period, 10 * period), rel=1e-4)
    assert not system.has_capability(Bounded) and not isinstance(system, Spiking)


@pytest.mark.slow
def test_vdp_reference_against_radau_at_tighter_tolerance(session_cache):
    system = VanDerPol({"mu": 10.0})
    ref = system.reference(3 * system.period, cache_dir=session_cache)
    sol = solve_ivp(lambda t, y: system.rhs(t, y, np), (0, ref.t[-1]), [2.0, 0.0], method="Radau",
                    jac=system.jac, rtol=1e-12, atol=1e-12, t_eval=ref.t)
    np.testing.assert_allclose(ref.y, sol.y.T, atol=2e-6 * np.abs(ref.y).max())


def test_fhn_is_spiking_with_its_own_settings(session_cache):
    system = FitzHughNagumo()
    settings = system.spike_settings()
    assert (settings.state, settings.threshold, settings.merge, settings.tolerance) == ("v", 1.0, 10.0, 5.0)
    ref = system.reference(400.0, cache_dir=session_cache)
    up = np.flatnonzero((ref.y[:-1, 0] < 1) & (ref.y[1:, 0] >= 1))
    assert np.diff(ref.t[up]) == pytest.approx(39.5, abs=0.15)  # the limit cycle's period
    assert system.time_unit == "" and system.state_units() == {} and not system.has_capability(Bounded)
    assert isinstance(system, KnownPhysics)


@pytest.mark.parametrize("args, columns, first_times", [
    (["--system", "rober", "--t-end", "100"], ["t", "y1", "y2", "y3"], [0.0, 1e-5, 10 ** -4.9]),
    (["--system", "vdp", "--param", "mu=10", "--t-end", "10"], ["t", "x", "y"], None),
    (["--system", "fhn", "--t-end", "5"], ["t", "v", "w"], [0.0, 0.1, 0.2]),
])
def test_simulate_writes_the_system_grid(tmp_path, args, columns, first_times):
    out = tmp_path / "ref.csv"
    assert main(["simulate", *args, "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == columns and np.isfinite(frame.to_numpy()).all()
    if first_times is not None:
        np.testing.assert_allclose(frame["t"].to_numpy()[:3], first_times, rtol=1e-9)
    t_end = float(args[args.index("--t-end") + 1])
    assert frame["t"].iloc[-1] <= t_end * (1 + 1e-9)


def test_windows_on_a_log_grid_take_their_own_samples_only(session_cache):
    """Each end of a window has a tolerance relative to itself: rober's fit window [1e-5, 1e5]
    holds the 101 grid points from 1e-5 to 1e5 (10 per decade), not the initial t = 0."""
    ref = Robertson().reference(1e7, cache_dir=session_cache)
    fit = ref.window(1e-5, 1e5)
    assert len(fit.t) == 101 and fit.t[0] == pytest.approx(1e-5) and fit.t[-1] == pytest.approx(1e5)
    assert len(ref.window(1e5, 1e7).t) == 21
