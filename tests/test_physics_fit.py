"""physics_fit, the positive control: it identifies the parameters of a system's own model."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from stiffbench.api import FitConfig, ParametrisedPhysics
from stiffbench.testing.toy_chain import ScaledChain
from stiffbench_methods.physics_fit import PhysicsFit, _Problem
from stiffbench_systems.hh import HodgkinHuxley


def task_of(system, cache_dir):
    return replace(system.training_task(cache_dir), physics_model=system.physics_model())


@pytest.mark.slow
def test_recovers_the_chain_rates_from_clean_data(tmp_path):
    """Noise-free log-spaced observations of A -> B -> C: the Rodas5P fit finds k1 = 0.5, k2 = 0.3
    from every start drawn from the ranges [0.1, 2] and [0.05, 1]."""
    task = task_of(ScaledChain(), tmp_path)
    model = PhysicsFit({"solver": "rodas5p", "starts": 3, "rtol": 1e-10, "atol": 1e-12}).fit(
        task, [0, 1], FitConfig(epochs=40))
    for values in model.values:
        assert values["k1"] == pytest.approx(0.5, rel=1e-5) and values["k2"] == pytest.approx(0.3, rel=1e-5)
    forecast = model.forecast(task.forecast_t)
    exact = ScaledChain().exact(task.forecast_t)
    bad = np.abs(forecast - exact) > 1e-4 * np.abs(exact) + 1e-6 * np.abs(exact).max(axis=0)
    assert not bad.any(), f"forecast off the exact solution at {np.argwhere(bad)[:3].tolist()}"


@pytest.mark.slow
def test_finite_difference_jacobian_equals_forward_mode(tmp_path):
    """The LM Jacobian (central differences of one solve of all perturbed copies) against
    torch.func.jvp through the same Heun solve of HH, on a 1 ms training window."""
    system = HodgkinHuxley({"t_train": (0.0, 1.0), "extrapolation": (1.0, 2.0), "long": (2.0, 3.0)})
    problem = _Problem(task_of(system, tmp_path), PhysicsFit.Params(), system.physics_model())
    u = problem.starts(0)[:2]
    r, J = problem.residuals_and_jacobian(u)
    for p in range(u.shape[1]):
        direction = torch.zeros_like(u)
        direction[:, p] = 1.0
        exact = torch.func.jvp(problem.residuals, (u,), (direction,))[1]
        np.testing.assert_allclose(J[..., p].numpy(), exact.numpy(), rtol=1e-6, atol=1e-8 * float(exact.abs().max()))
    np.testing.assert_allclose(r.numpy(), problem.residuals(u).detach().numpy(), rtol=1e-12)


@pytest.mark.slow
def test_identifies_hh_from_one_noisy_spike(session_cache):
    """The paper's task (one 14.68 ms window, OU noise sigma 0.5 on every channel): the fitted
    conductances and reversal potentials are within 2 % (E's within 0.5 mV) of the truth."""
    system = HodgkinHuxley()
    model = PhysicsFit({"starts": 4}).fit(task_of(system, session_cache), [0], FitConfig(epochs=40))
    truth = system.params
    fitted = model.values[0]
    for name in ("g_Na", "g_K", "g_L"):
        assert fitted[name] == pytest.approx(getattr(truth, name), rel=0.02)
    for name in ("E_Na", "E_K", "E_L"):
        assert fitted[name] == pytest.approx(getattr(truth, name), abs=0.5)


def test_needs_declared_fittable_parameters():
    from stiffbench_systems.pollu import Pollution

    assert HodgkinHuxley().has_capability(ParametrisedPhysics)
    assert set(HodgkinHuxley().physics_model().ranges) == {"g_Na", "g_K", "g_L", "E_Na", "E_K", "E_L"}
    assert not Pollution().has_capability(ParametrisedPhysics)
    assert "no parameter of pollu is declared fittable" in Pollution().lacks(ParametrisedPhysics)
