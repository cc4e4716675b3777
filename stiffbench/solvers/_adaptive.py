"""Adaptive-step machinery shared by the embedded-pair solvers (Tsit5, Rodas5P).

One step size is shared by the whole batch: the state y has shape (..., n), the leading dimensions
being independent trajectories, and a step is accepted when every trajectory's error is within
tolerance. The error norm is therefore the max over trajectories of each one's RMS norm of
err / (atol + rtol max(|y_n|, |y_{n+1}|)), so each trajectory is integrated at least as accurately
as it would be alone. Step-size decisions are made on detached values with float64 times
(Python floats): under backprop the accepted step sequence is a constant, and the gradient is
the exact gradient of the discrete solver for that sequence.

Controller (Hairer, Norsett & Wanner, Solving ODEs I, II.4): h_new = h clamp(0.9 EEst^(-1/(q+1)),
0.2, 10) with q the order of the embedded estimate; a step with EEst > 1 (or non-finite) is
rejected and retried with the reduced h. First step: Hairer's heuristic (ibid., II.4) unless given.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import torch

from stiffbench.api import BudgetExceeded

Field = Callable[[Any, torch.Tensor], torch.Tensor]

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0


class StepLimitExceeded(BudgetExceeded):
    """An adaptive solve needed more than `max_steps` step attempts (accepted plus rejected).

    A BudgetExceeded: a cell whose training hits its solver-step budget is status `timeout`."""


class Step(NamedTuple):
    """One attempted step: the new state, its local error estimate, the data of its dense output
    (passed back to the solver's `interpolate`), and what the next step needs (e.g. FSAL f)."""

    y: torch.Tensor
    err: torch.Tensor
    dense: Any
    carry: Any


class AbstractAdaptiveSolver(ABC):
    """An embedded pair with dense output. `order`: order of the solution; `error_order`: order q
    of the embedded estimate (the controller's exponent is 1/(q+1))."""

    order: int
    error_order: int

    def init(self, f: Field, t0: float, y0: torch.Tensor) -> Any:
        """The carry of the first step."""
        return None

    @abstractmethod
    def step(self, f: Field, t: float, y: torch.Tensor, h: float, carry: Any) -> Step:
        """One step of size h from (t, y)."""

    @abstractmethod
    def interpolate(self, y0: torch.Tensor, y1: torch.Tensor, dense: Any, theta: float) -> torch.Tensor:
        """The dense output at t_n + theta h, theta in [0, 1]."""


def rms(ratio: torch.Tensor) -> torch.Tensor:
    """Each trajectory's RMS over the last dim of `ratio`, keeping that dim (shape (..., 1))."""
    with torch.no_grad():
        return ratio.square().mean(-1, keepdim=True).sqrt()


def error_norm(ratio: torch.Tensor) -> float:
    """Max over trajectories (leading dims) of the RMS over the last dim of `ratio` (NaN propagates)."""
    return float(rms(ratio).max())


def scaled_ratio(err, y0, y1, rtol: float, atol: float) -> torch.Tensor:
    """err / (atol + rtol max(|y_n|, |y_{n+1}|)), whose norm is the step's EEst."""
    with torch.no_grad():
        return err / (atol + rtol * torch.maximum(y0.abs(), y1.abs()))


def scaled_error(err, y0, y1, rtol: float, atol: float) -> float:
    """EEst = error_norm(err / (atol + rtol max(|y_n|, |y_{n+1}|)))."""
    return error_norm(scaled_ratio(err, y0, y1, rtol, atol))


def step_factor(eest, error_order: int):
    """The controller's factor clamp(0.9 EEst^(-1/(q+1)), 0.2, 10) (10 at EEst = 0; 0.2 when EEst is
    not finite), for a float or elementwise for a tensor."""
    if isinstance(eest, torch.Tensor):
        factor = (SAFETY * eest.pow(-1.0 / (error_order + 1))).clamp(MIN_FACTOR, MAX_FACTOR)
        return torch.where(eest.isfinite(), torch.where(eest == 0, MAX_FACTOR, factor), MIN_FACTOR)
    if not math.isfinite(eest):
        return MIN_FACTOR
    factor = MAX_FACTOR if eest == 0 else SAFETY * eest ** (-1.0 / (error_order + 1))
    return min(MAX_FACTOR, max(MIN_FACTOR, factor))


def next_step(h: float, eest: float, error_order: int) -> float:
    """The standard controller; a non-finite estimate shrinks h by the minimal factor."""
    return h * step_factor(eest, error_order)


def initial_step(
    f: Field, t0: float, y0: torch.Tensor, order: int, rtol: float, atol: float, per_trajectory: bool = False
):
    """Hairer's starting step (Solving ODEs I, II.4): two extra f evaluations, no graph.

    Shared (default): one float from norms maxed over the trajectories. per_trajectory: each
    trajectory's own step from its own norms, float64 of shape (..., 1); f then gets per-trajectory
    times of that shape (in y0's dtype)."""
    with torch.no_grad():
        scale = atol + rtol * y0.abs()
        norm = (lambda r: rms(r).double()) if per_trajectory else (lambda r: rms(r).max().double())  # noqa: E731
        f0 = f(t0, y0)
        d0, d1 = norm(y0 / scale), norm(f0 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
        t1 = (t0 + h0).to(y0.dtype) if per_trajectory else t0 + float(h0)
        f1 = f(t1, y0 + h0.to(y0.dtype) * f0)
        d2 = norm((f1 - f0) / scale) / h0
        big = torch.maximum(d1, d2)
        h1 = torch.where(big <= 1e-15, (1e-3 * h0).clamp(min=1e-6), (0.01 / big) ** (1.0 / (order + 1)))
        h = torch.minimum(100 * h0, h1)
        return h if per_trajectory else float(h)


@dataclass
class Solution:
    """ys: states at the output times, shape (len(t_out), *y0.shape). With `dense=True`, the
    accepted steps are kept (start times `ts` plus the end time, states `y_steps`, dense data) and
    `at(t)` evaluates the dense output anywhere in the span. `next_h`: the controller's proposal
    after the last step (a good first step for a continuation)."""

    ys: torch.Tensor
    n_steps: int
    n_rejected: int
    next_h: float
    solver: AbstractAdaptiveSolver
    ts: list[float] = field(default_factory=list)
    y_steps: list[torch.Tensor] = field(default_factory=list)
    dense: list[Any] = field(default_factory=list)

    def at(self, t: float) -> torch.Tensor:
        if not self.dense:
            raise ValueError("this solution kept no dense output (solve with dense=True)")
        i = min(max(bisect.bisect_right(self.ts, t) - 1, 0), len(self.dense) - 1)
        t0, t1 = self.ts[i], self.ts[i + 1]
        return self.solver.interpolate(self.y_steps[i], self.y_steps[i + 1], self.dense[i], (t - t0) / (t1 - t0))


def as_times(t_out) -> list[float]:
    """Output times as float64 Python floats; ValueError unless 1-D and strictly increasing."""
    ts = [float(t) for t in (t_out.detach().reshape(-1).tolist() if isinstance(t_out, torch.Tensor) else t_out)]
    if len(ts) < 1 or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError("output times must be a non-empty, strictly increasing sequence")
    return ts


def solve_adaptive(
    solver: AbstractAdaptiveSolver,
    f: Field,
    y0: torch.Tensor,
    t_out: Sequence[float] | torch.Tensor,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    dense: bool = False,
) -> Solution:
    """Integrate from t_out[0] (where y = y0) through the output times, returned by dense output.

    Steps are not forced onto the output times (only the last one lands on t_out[-1]). Raises
    StepLimitExceeded after `max_steps` attempts. Differentiable by plain autograd (see module doc).
    """
    ts_out = as_times(t_out)
    t, t_end = ts_out[0], ts_out[-1]
    outputs = [y0]
    sol = Solution(ys=y0, n_steps=0, n_rejected=0, next_h=math.nan, solver=solver)
    if dense:
        sol.ts.append(t)
        sol.y_steps.append(y0)
    if t_end == t:
        sol.ys = y0.unsqueeze(0)
        return sol
    if first_step is not None and not first_step > 0:
        raise ValueError(f"first_step must be positive, got {first_step}")
    h = first_step if first_step is not None else initial_step(f, t, y0, solver.order, rtol, atol)
    y, carry, j = y0, solver.init(f, t, y0), 1
    while t < t_end:
        if sol.n_steps + sol.n_rejected >= max_steps:
            raise StepLimitExceeded(
                f"{solver.__class__.__name__} reached max_steps={max_steps} at t={t} of [{ts_out[0]}, {t_end}] "
                f"(last h={h:.3g}); the problem may be too stiff for this solver or the tolerances too tight"
            )
        last = t + 1.01 * h >= t_end
        h_try = t_end - t if last else h
        step = solver.step(f, t, y, h_try, carry)
        eest = scaled_error(step.err, y, step.y, rtol, atol)
        h_next = next_step(h_try, eest, solver.error_order)
        if not eest <= 1.0:
            sol.n_rejected += 1
            h = h_next
            continue
        h = max(h_next, h) if last else h_next  # a step shortened to land on t_end says little about h
        t_new = t_end if last else t + h_try
        while j < len(ts_out) and ts_out[j] <= t_new:
            s = ts_out[j]
            outputs.append(step.y if s == t_new else solver.interpolate(y, step.y, step.dense, (s - t) / h_try))
            j += 1
        if dense:
            sol.ts.append(t_new)
            sol.y_steps.append(step.y)
            sol.dense.append(step.dense)
        t, y, carry = t_new, step.y, step.carry
        sol.n_steps += 1
    sol.ys, sol.next_h = torch.stack(outputs), h
    return sol


def solve_fixed(
    solver: AbstractAdaptiveSolver, f: Field, y0: torch.Tensor, t0: float, dt: float, n_steps: int
) -> torch.Tensor:
    """States at t0 + k dt, k = 0..n_steps, shape (n_steps + 1, *y0.shape): the method with a given
    step and no error control (times formed as t0 + k dt)."""
    t0, dt = float(t0), float(dt)
    states, y, carry = [y0], y0, solver.init(f, t0, y0)
    for k in range(n_steps):
        step = solver.step(f, t0 + k * dt, y, dt, carry)
        y, carry = step.y, step.carry
        states.append(y)
    return torch.stack(states)
