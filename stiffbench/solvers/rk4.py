"""Classic fixed-step Runge-Kutta 4: explicit, order 4, four f evaluations per step; stable for
real h lambda in about [-2.79, 0] (so, like Heun, step-limited on stiff problems).

k1 = f(t, y), k2 = f(t + h/2, y + h/2 k1), k3 = f(t + h/2, y + h/2 k2), k4 = f(t + h, y + h k3),
y' = y + h/6 (k1 + 2 k2 + 2 k3 + k4). Times are formed as t0 + k h (no accumulated round-off).
"""

from __future__ import annotations

from typing import Callable

import torch

Field = Callable[[float, torch.Tensor], torch.Tensor]


def rk4_step(f: Field, t: float, y: torch.Tensor, h: float) -> torch.Tensor:
    """One RK4 step from (t, y) to t + h."""
    k1 = f(t, y)
    k2 = f(t + 0.5 * h, y + (0.5 * h) * k1)
    k3 = f(t + 0.5 * h, y + (0.5 * h) * k2)
    k4 = f(t + h, y + h * k3)
    return y + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)


def rk4_rollout(f: Field, y0: torch.Tensor, t0: float, dt: float, n_steps: int) -> torch.Tensor:
    """States at t0 + k dt, k = 0..n_steps, shape (n_steps + 1, *y0.shape); differentiable by plain
    backprop (the exact gradient of the discrete solver)."""
    t0, dt = float(t0), float(dt)
    states, y = [y0], y0
    for k in range(n_steps):
        y = rk4_step(f, t0 + k * dt, y, dt)
        states.append(y)
    return torch.stack(states)
