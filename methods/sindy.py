"""sindy: sparse identification of nonlinear dynamics (Brunton, Proctor & Kutz, PNAS 113:3932, 2016),
through pysindy (de Silva et al., JOSS 5:2104, 2020; Kaptanoglu et al., JOSS 7:3994, 2022).

The vector field is sought as a sparse linear combination of candidate terms, dy/dt = Xi Theta(y),
fitted by regression on derivatives estimated from the noisy observations; the forecast integrates
the identified equations from the known initial state. It learns no network and uses no physics: a
library that holds the system's terms can recover the equations (polynomial systems such as
FitzHugh-Nagumo and Van der Pol in the polynomial library), one that does not can only approximate
them (Hodgkin-Huxley's exponential and rational rates in the polynomial library: a negative control).
"""

from __future__ import annotations

import warnings
from typing import Literal, Optional, Sequence

import numpy as np
import scipy.integrate
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from stiffbench.api import AbstractMethod, AbstractModel, FitConfig, FullyObserved, PluginParams, TrainingTask

from ._sindy_library import TermLibrary, neuron_library, polynomial_library, ps  # ps: pysindy, or an install hint


class SINDyParams(PluginParams):
    library: Literal["polynomial", "neuron"] = Field(
        "polynomial", description="'polynomial': every monomial of the states up to `degree`. 'neuron': those, "
        "plus the gate forms of `voltage_state` V for each scale k in `voltage_scales` and offset c in "
        "`voltage_offsets` -- exp(-V/k), exp(V/k), (V-c)/(1-exp(-(V-c)/k)), 1/(1+exp(-(V-c)/k)) -- and each of "
        "those times each other state (methods/_sindy_library.py).")
    degree: PositiveInt = Field(3, description="Highest degree of the polynomial terms (constant included). "
                                "Hodgkin-Huxley's current equation needs 5 (m^3 h V).")
    voltage_state: Optional[str] = Field(None, description="The voltage-like state of the neuron library "
                                         "(None: the first state, the voltage of every built-in neuron model).")
    voltage_scales: tuple[PositiveFloat, ...] = Field(
        (10.0, 18.0, 20.0, 80.0), min_length=1, description="The gate forms' scales k, in the voltage's unit. The "
        "defaults are Hodgkin & Huxley's (1952) in mV, so that with `voltage_offsets` HH's gate equations lie in "
        "the neuron library's span.")
    voltage_offsets: tuple[float, ...] = Field(
        (-55.0, -40.0, -35.0), min_length=1, description="The offsets c of the rational and sigmoid gate forms, in "
        "the voltage's unit; the defaults are HH's half-activation voltages of alpha_n, alpha_m and beta_h (mV, "
        "-65 mV convention).")
    smoother_window: PositiveInt = Field(
        11, description="Samples in the window of the smoother applied before the finite differences (odd): a "
        "local least-squares polynomial in time, Savitzky-Golay's filter on uniform times (`local_polynomial`).")
    smoother_order: PositiveInt = Field(3, description="Polynomial order of the smoother.")
    threshold: PositiveFloat = Field(
        0.1, description="STLSQ threshold on the normalised coefficients (each term and each derivative divided by "
        "its RMS over the samples): a term whose normalised coefficient is smaller in magnitude is dropped.")
    alpha: float = Field(1e-4, ge=0, description="Ridge weight of STLSQ per sample, on the normalised "
                         "coefficients (the penalty is alpha x N x ||xi||^2 for N samples); the kept terms are "
                         "refitted without it (pysindy's unbias).")
    max_iter: PositiveInt = Field(20, description="Largest number of STLSQ iterations (pysindy's default).")
    solver: Literal["LSODA", "Radau", "BDF"] = Field(
        "LSODA", description="scipy solver of the forecast (all three stiff-capable; LSODA switches to BDF when "
        "stiffness appears).")
    rtol: PositiveFloat = Field(1e-6, description="Relative tolerance of the forecast solve.")
    atol: PositiveFloat = Field(1e-9, description="Absolute tolerance of the forecast solve, as a fraction of each "
                                "state's scale (its largest observed |value|).")
    max_steps: PositiveInt = Field(1_000_000, description="Step budget of the forecast solve; past it (or the "
                                   "fit's max_steps, if lower) the forecast is NaN.")
    divergence_scale: PositiveFloat = Field(
        1e6, description="The forecast has diverged (NaN from there on) once a state exceeds this many times its "
        "scale: an identified model that blows up is stopped at once instead of at the solver's failure.")

    @model_validator(mode="after")
    def _smoother(self):
        if self.smoother_window % 2 == 0 or self.smoother_window <= self.smoother_order:
            raise ValueError(f"smoother_window must be odd and exceed smoother_order ({self.smoother_order}), "
                             f"got {self.smoother_window}")
        return self


class SINDy(AbstractMethod):
    """SINDy with sequentially thresholded least squares (STLSQ).

    Data: the observations, after the known initial state when it precedes them. Derivatives:
    pysindy's SmoothedFiniteDifference, a smoother then second-order finite differences on the
    (possibly non-uniform) times; the smoother is a local polynomial fit in time (`smoother_window`
    samples, `smoother_order`), which on uniform times is pysindy's default Savitzky-Golay filter.
    Standardisation: every library column is divided by its RMS over the samples and every
    derivative by its RMS, so that states decades apart are conditioned alike (for the monomials this
    equals dividing each state by a per-state scale first) and `threshold` is a dimensionless fraction;
    the coefficients are mapped back to the states' units. Regression: pysindy's STLSQ (`threshold`,
    `alpha`, `max_iter`), the support refitted by plain least squares. Forecast: the identified
    equations integrated from y0 by scipy (`solver`, `rtol`, `atol` per state's scale), NaN from a
    solver failure, the step budget, or a state beyond `divergence_scale` times its scale on.

    The fit is deterministic: every seed gets the same model (the forecast repeats it per seed), and
    `epochs` does not apply (`FitConfig.check` is called once, after the regression, with its loss:
    the mean squared residual of the normalised derivatives).
    """

    name = "sindy"
    description = "Sparse regression of the vector field on a library of terms (SINDy, STLSQ via pysindy)."
    citation = ("Brunton, Proctor & Kutz (2016), PNAS 113:3932; de Silva et al. (2020), JOSS 5:2104; "
                "Kaptanoglu et al. (2022), JOSS 7:3994")
    Params = SINDyParams
    batches_seeds = True
    requires = (FullyObserved,)

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> "IdentifiedModel":
        p = self.params
        if not task.fully_observed:
            observed = ", ".join(task.observations.state_names)
            raise ValueError(f"sindy fits every state; this task observes {observed} only")
        t, y = training_samples(task)
        if len(t) < p.smoother_window:
            raise ValueError(f"smoother_window {p.smoother_window} exceeds the {len(t)} training samples")
        library = make_library(p, task.all_state_names)
        smoother = {"t": t, "window": p.smoother_window, "order": p.smoother_order}
        y_dot = ps.SmoothedFiniteDifference(smoother=local_polynomial, smoother_kws=smoother)(y, t)
        coefficients, loss = sparse_regression(library(y), y_dot, p)
        config.check(1, loss)
        scale = _positive(np.abs(np.vstack([y, task.y0])).max(axis=0))
        max_steps = p.max_steps if config.max_steps is None else min(p.max_steps, config.max_steps)
        return IdentifiedModel(library, coefficients, task, scale, p, max_steps, len(seeds), loss)


def training_samples(task: TrainingTask) -> tuple[np.ndarray, np.ndarray]:
    """The observation times and states (N, n), after (t0, y0) when the initial time precedes them."""
    t, y = np.asarray(task.observations.t, np.float64), np.asarray(task.observations.y, np.float64)
    if task.initial_time < t[0]:
        t, y = np.concatenate([[task.initial_time], t]), np.vstack([task.y0, y])
    return t, y


def local_polynomial(y: np.ndarray, t: np.ndarray, window: int, order: int) -> np.ndarray:
    """y (N, ...) smoothed in time: each sample replaced by the value at its time of the least-squares
    polynomial of `order` in t through the `window` samples centred on it (the first or last
    `window` samples near the ends). On uniform times this is scipy's savgol_filter (mode 'interp');
    on non-uniform times it fits in time, where savgol_filter would fit in sample index."""
    n = len(t)
    first = np.clip(np.arange(n) - window // 2, 0, n - window)
    rows = first[:, None] + np.arange(window)  # (N, window): each sample's window
    tau = (t[rows] - t[:, None]) / (t[rows[:, -1]] - t[rows[:, 0]])[:, None]  # centred, scaled times
    at_centre = np.linalg.pinv(tau[:, :, None] ** np.arange(order + 1))[:, 0]  # (N, window) weights
    return np.einsum("nw,nw...->n...", at_centre, y[rows])


def make_library(p: SINDyParams, states: tuple[str, ...]) -> TermLibrary:
    """The library `p.library` over the states (the neuron library's voltage: `voltage_state` or the first)."""
    if p.library == "polynomial":
        return polynomial_library(states, p.degree)
    voltage = states[0] if p.voltage_state is None else p.voltage_state
    return neuron_library(states, p.degree, voltage, p.voltage_scales, p.voltage_offsets)


def sparse_regression(theta: np.ndarray, y_dot: np.ndarray, p: SINDyParams) -> tuple[np.ndarray, float]:
    """STLSQ of the derivatives y_dot (N, n) on the library columns theta (N, K), both divided by their
    RMS (samples with a non-finite entry left out); returns the coefficients (n, K) in the states'
    units and the mean squared normalised residual."""
    keep = np.isfinite(theta).all(axis=1) & np.isfinite(y_dot).all(axis=1)
    theta, y_dot = theta[keep], y_dot[keep]
    column_rms, target_rms = _positive(_rms(theta)), _positive(_rms(y_dot))
    X, Y = theta / column_rms, y_dot / target_rms
    with warnings.catch_warnings():  # pysindy warns when an equation loses every term: equations() shows it ("x' = 0")
        warnings.simplefilter("ignore", UserWarning)
        xi = ps.STLSQ(threshold=p.threshold, alpha=p.alpha * len(X), max_iter=p.max_iter).fit(X, Y).coef_
    loss = float(np.mean((X @ xi.T - Y) ** 2))
    return xi * target_rms[:, None] / column_rms, loss


class IdentifiedModel(AbstractModel):
    """The identified equations dy/dt = coefficients @ library(y), one set shared by `n_models` seeds.

    scale     : each state's largest observed |value| (the forecast's atol and divergence test)
    loss      : the regression's mean squared normalised residual
    max_steps : the forecast solve's step budget
    """

    def __init__(self, library: TermLibrary, coefficients: np.ndarray, task: TrainingTask, scale: np.ndarray,
                 params: SINDyParams, max_steps: int, n_models: int, loss: float):
        self.library, self.coefficients, self.params = library, coefficients, params
        self.max_steps, self.n_models, self.loss = max_steps, n_models, loss
        self.states, self.y0, self.t0 = task.all_state_names, np.asarray(task.y0, np.float64), task.initial_time
        self.scale = scale

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        """dy/dt at one state y (n,); non-finite where a term overflows (the forecast then stops)."""
        with np.errstate(all="ignore"):
            return self.coefficients @ self.library(y[None])[0]

    def equations(self, precision: int = 4) -> list[str]:
        """One line per state in pysindy's printed form, e.g. "v' = 0.4934 1 + 0.9723 v + -0.3234 v^3"."""
        lines = []
        for state, row in zip(self.states, self.coefficients):
            terms = [f"{c:.{precision}g} {name}" for c, name in zip(row, self.library.names) if c != 0]
            lines.append(f"{state}' = {' + '.join(terms) or '0'}")
        return lines

    def forecast(self, t: np.ndarray) -> np.ndarray:
        """The identified model integrated over t (starting at the initial time), repeated per seed:
        (n_models, len(t), n), NaN from the first failure, step budget or divergence on."""
        t = np.asarray(t, np.float64)
        if t.ndim != 1 or len(t) == 0 or abs(t[0] - self.t0) > 1e-9 * max(1.0, abs(self.t0)):
            raise ValueError(f"the forecast grid must start at the initial time {self.t0}")
        trajectory = integrate(self.rhs, t, self.y0, self.params, self.scale, self.max_steps)
        return np.repeat(trajectory[None], self.n_models, axis=0)


def integrate(rhs, t: np.ndarray, y0: np.ndarray, p: SINDyParams, scale: np.ndarray, max_steps: int) -> np.ndarray:
    """States (len(t), n) of dy/dt = rhs(t, y) from y0 at t[0], stepped by scipy's `p.solver` (the
    stepper solve_ivp drives, here so that a step budget and a divergence test can stop it) with dense
    output at t; NaN from the first output time the solve does not reach: it fails (a step error, a
    non-finite state), runs out of steps or leaves |y| <= divergence_scale x scale."""
    out = np.full((len(t), len(y0)), np.nan)
    out[0] = y0
    if len(t) == 1:
        return out
    solver = getattr(scipy.integrate, p.solver)(rhs, t[0], y0, t[-1], rtol=p.rtol, atol=p.atol * scale)
    limit, done = p.divergence_scale * scale, 1
    for _ in range(max_steps):
        try:
            solver.step()
        except (ValueError, ArithmeticError):  # e.g. an implicit stage's LU of a non-finite Jacobian
            break
        if solver.status == "failed" or not np.all(np.abs(solver.y) <= limit):
            break
        reached = np.searchsorted(t, solver.t, side="right")
        if reached > done:
            out[done:reached] = solver.dense_output()(t[done:reached]).T
            done = reached
        if solver.status == "finished":
            break
    return out


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x), axis=0))


def _positive(x: np.ndarray) -> np.ndarray:
    """x with its zero entries replaced by 1 (a scale that divides by nothing)."""
    return np.where(x > 0, x, 1.0)
