"""sindy: sparse regression of the vector field on a term library (pysindy's STLSQ)."""

from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.signal import savgol_filter

from stiffbench.api import BudgetExceeded, FitConfig, TrainingTask, Trajectory, missing_capabilities
from stiffbench.testing.conformance import check_method
from stiffbench.testing.toy import DampedOscillator
from stiffbench.testing.toy_chain import ScaledChain
from stiffbench_methods.sindy import SINDy, SINDyParams, local_polynomial, make_library
from stiffbench_systems.hh import HodgkinHuxley


def blow_up_task() -> TrainingTask:
    """y' = y^2 from y(0) = 1, i.e. y = 1 / (1 - t): observed exactly on [0, 0.5] every 0.01,
    forecast on [0, 2], past the singularity at t = 1."""
    t = np.arange(51) * 0.01
    return TrainingTask("blow_up", Trajectory(t, (1 / (1 - t))[:, None], ("y",)), np.array([1.0]),
                        np.arange(201) * 0.01, dt=0.01)


def test_recovers_the_damped_oscillator():
    """Noise-free x' = v, v' = -omega^2 x - 2 zeta omega v (omega 2, zeta 0.1) sampled every 0.05:
    exactly these three terms out of the cubic library's 20 per equation, each within 0.3 %. The
    error is the derivative estimate's: central differences scale a mode of frequency omega by
    sin(omega dt) / (omega dt) = 1 - (omega dt)^2 / 6 + ... = 1 - 1.7e-3 here."""
    task = DampedOscillator().training_task()
    model = SINDy().fit(task, [0], FitConfig(epochs=1))
    names = list(model.library.names)
    expected = np.zeros_like(model.coefficients)
    expected[0, names.index("v")] = 1.0
    expected[1, names.index("x")], expected[1, names.index("v")] = -4.0, -0.4
    assert np.array_equal(model.coefficients != 0, expected != 0)
    np.testing.assert_allclose(model.coefficients, expected, rtol=3e-3)
    assert model.equations(precision=2) == ["x' = 1 v", "v' = -4 x + -0.4 v"]


def test_neuron_library_terms():
    """States (V, n), degree 1, one scale (10) and one offset (-55): the polynomial terms, the four
    gate forms, and each form times n; evaluated at V = -45 (u = (V + 55) / 10 = 1) and at V = -55,
    the rational form's removable singularity (limit: the scale, 10)."""
    params = SINDyParams(library="neuron", degree=1, voltage_scales=(10.0,), voltage_offsets=(-55.0,))
    library = make_library(params, ("V", "n"))
    forms = ["exp(-V/10)", "exp(V/10)", "(V+55)/(1-exp(-(V+55)/10))", "1/(1+exp(-(V+55)/10))"]
    assert library.names == ("1", "V", "n", *forms, *(f"{form} n" for form in forms))
    e = np.e
    at_u1 = [e**4.5, e**-4.5, 10 / (1 - 1 / e), 1 / (1 + 1 / e)]
    at_u0 = [e**5.5, e**-5.5, 10.0, 0.5]
    values = library(np.array([[-45.0, 0.5], [-55.0, 0.5]]))
    np.testing.assert_allclose(values[0], [1, -45, 0.5, *at_u1, *(0.5 * np.array(at_u1))], rtol=1e-14)
    np.testing.assert_allclose(values[1], [1, -55, 0.5, *at_u0, *(0.5 * np.array(at_u0))], rtol=1e-14)


@pytest.mark.parametrize("library, degree, spanned", [
    ("neuron", 5, (True, True, True, True)),       # the default gate forms and m^3 h V: HH exactly
    ("neuron", 3, (False, True, True, True)),      # the current equation needs degree 5
    ("polynomial", 5, (True, False, False, False)),  # HH's rates lie outside polynomials
])
def test_which_libraries_hold_hodgkin_huxley(library, degree, spanned):
    """Least squares of HH's vector field at 2000 random states (V in [-90, 60] mV, gates in [0, 1])
    on the library: an equation the library holds is fitted to round-off (relative RMS residual
    below 1e-9); one it does not hold leaves a residual above 1e-3 (the polynomial library's best
    gate equation, n', leaves 3e-3)."""
    rng = np.random.default_rng(0)
    y = np.column_stack([rng.uniform(-90, 60, 2000), rng.uniform(0, 1, (2000, 3))])
    f = np.asarray(HodgkinHuxley().rhs(0.0, y, np))
    theta = make_library(SINDyParams(library=library, degree=degree), ("V", "n", "m", "h"))(y)
    theta /= np.sqrt(np.mean(theta**2, axis=0))
    coefficients = np.linalg.lstsq(theta, f, rcond=None)[0]
    residual = np.sqrt(np.mean((theta @ coefficients - f) ** 2, axis=0) / np.mean(f**2, axis=0))
    assert tuple(residual < 1e-9) == spanned and np.all((residual < 1e-9) | (residual > 1e-3)), residual


def test_smoother_fits_in_time():
    """On uniform times the smoother is scipy's Savitzky-Golay filter; on log-spaced times a cubic is
    reproduced exactly, which a filter in sample index would not do."""
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 3.0, 40)
    y = rng.normal(size=(40, 2))
    np.testing.assert_allclose(local_polynomial(y, t, 11, 3), savgol_filter(y, 11, 3, axis=0), atol=1e-12)
    t = np.logspace(-2, 1, 30)
    cubic = (t**3 - 2 * t)[:, None]
    np.testing.assert_allclose(local_polynomial(cubic, t, 7, 3), cubic, rtol=1e-9, atol=1e-12)


class _PartlyObserved(ScaledChain):
    def protocol(self):
        return replace(super().protocol(), observed=("A", "C"))


def test_partial_observation_is_not_applicable(tmp_path):
    system = _PartlyObserved()
    assert missing_capabilities(SINDy, system) == ["FullyObserved (it observes A, C only)"]
    with pytest.raises(ValueError, match="observes A, C only"):
        SINDy().fit(system.training_task(tmp_path), [0], FitConfig(epochs=1))


def test_forecast_is_nan_past_a_blow_up():
    """The identified y' = c y^2 (c = 1 within 1e-3) blows up at t = 1/c: the forecast follows
    1 / (1 - c t) before it, is NaN from t = 1 on, and is the same for every seed."""
    task = blow_up_task()
    model = SINDy({"degree": 2}).fit(task, [0, 1, 2], FitConfig(epochs=1))
    c = model.coefficients[0, list(model.library.names).index("y^2")]
    assert np.count_nonzero(model.coefficients) == 1 and c == pytest.approx(1.0, abs=1e-3)
    forecast = model.forecast(task.forecast_t)
    t = task.forecast_t
    assert forecast.shape == (3, 201, 1)
    assert np.array_equal(np.isfinite(forecast[:, :, 0]), np.broadcast_to(t < 1 - 1e-9, (3, 201)))
    np.testing.assert_allclose(forecast[:, t <= 0.9, 0], np.broadcast_to(1 / (1 - c * t[t <= 0.9]), (3, 91)), rtol=1e-4)
    assert np.array_equal(forecast[0], forecast[2], equal_nan=True)


def test_step_budget_ends_the_forecast():
    """Three solver steps reach only the first output times; the rest is NaN."""
    task = blow_up_task()
    model = SINDy({"degree": 2, "max_steps": 3}).fit(task, [0], FitConfig(epochs=1))
    finite = np.isfinite(model.forecast(task.forecast_t)[0, :, 0])
    assert finite[0] and not finite[-1] and np.all(finite[: finite.argmin()]) and not finite[finite.argmin():].any()


def test_budget_and_bad_parameters():
    task = DampedOscillator().training_task()
    with pytest.raises(BudgetExceeded):
        SINDy().fit(task, [0], FitConfig(epochs=1, deadline=0.0))
    with pytest.raises(ValidationError, match="smoother_window must be odd"):
        SINDy({"smoother_window": 10})
    with pytest.raises(ValueError, match="voltage_state 'V' is not a state of this system \\(x, v\\)"):
        SINDy({"library": "neuron", "voltage_state": "V"}).fit(task, [0], FitConfig(epochs=1))
    with pytest.raises(ValueError, match="smoother_window 51 exceeds the 41 training samples"):
        SINDy({"smoother_window": 51}).fit(task, [0], FitConfig(epochs=1))


@pytest.mark.parametrize("params", [{}, {"library": "neuron"}])
def test_conformance(params, tmp_path):
    check_method(SINDy, params, cache_dir=tmp_path, strict=True)
