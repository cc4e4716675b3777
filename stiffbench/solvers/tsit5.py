"""Tsitouras 5(4): explicit RK, 7 stages (6 new f evaluations per step, FSAL), order 5 with an
embedded order-4 estimate and a free 4th-order dense output; non-stiff (bounded stability region).

Tsitouras, C. (2011), "Runge-Kutta pairs of order 5(4) satisfying only the first column
simplifying assumption", Comput. Math. Appl. 62, 770-775. The solution weights b are the last
row of A (so k_7 = f(t + h, y_{n+1}) is the next step's k_1), err = h sum_i BTILDE_i k_i with
BTILDE = b - bhat, and the dense output is y_n + h sum_i b_i(theta) k_i with
b_i(theta) = sum_j R[i, j] theta^(j+1), a polynomial interpolant of order 4 with b_i(1) = b_i.
Works in y0's dtype; times are float64. Step-size control, shared by the batch: `_adaptive`
(RMS error norm, h_new = h clamp(0.9 EEst^(-1/5), 0.2, 10)).
"""

from __future__ import annotations

import torch

from stiffbench.solvers._adaptive import AbstractAdaptiveSolver, Field, Solution, Step, solve_adaptive, solve_fixed

C = (0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0)
A = (
    (),
    (0.161,),
    (-0.008480655492356989, 0.335480655492357),
    (2.897153057105493, -6.359448489975075, 4.3622954328695815),
    (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
    (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383),
    (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774),
)
B = A[6]
BTILDE = (
    0.00178001105222577714,
    0.0008164344596567469,
    -0.007880878010261995,
    0.1447110071732629,
    -0.5823571654525552,
    0.45808210592918697,
    -1.0 / 66.0,
)
# Dense-output weights: row i holds the coefficients of theta, theta^2, theta^3, theta^4 in b_i(theta).
R = (
    (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
    (0.0, 0.13169999999999998, -0.2234, 0.1017),
    (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
    (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
    (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
    (0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
    (0.0, 1.5, -4.0, 2.5),
)


def _combine(weights, ks, scale: float = 1.0):
    """scale * sum_i weights[i] ks[i]."""
    return scale * sum((w * k for w, k in zip(weights[1:], ks[1:])), weights[0] * ks[0])


class Tsit5(AbstractAdaptiveSolver):
    """Tsit5 step; carry = f(t_n, y_n) (first same as last)."""

    order = 5
    error_order = 4

    def init(self, f: Field, t0: float, y0: torch.Tensor) -> torch.Tensor:
        return f(t0, y0)

    def step(self, f: Field, t: float, y: torch.Tensor, h: float, carry: torch.Tensor) -> Step:
        ks = [carry]
        for i in range(1, 6):
            ks.append(f(t + C[i] * h, y + _combine(A[i], ks, h)))
        y_new = y + _combine(B, ks, h)
        ks.append(f(t + h, y_new))
        return Step(y_new, _combine(BTILDE, ks, h), (h, ks), ks[6])

    def interpolate(self, y0: torch.Tensor, y1: torch.Tensor, dense, theta: float) -> torch.Tensor:
        h, ks = dense
        weights = [theta * (r1 + theta * (r2 + theta * (r3 + theta * r4))) for r1, r2, r3, r4 in R]
        return y0 + _combine(weights, ks, h)


def tsit5_solve(f: Field, y0: torch.Tensor, t_out, **options) -> Solution:
    """Adaptive Tsit5 through the output times t_out; options as `solve_adaptive` (rtol, atol,
    first_step, max_steps, dense). The states are `.ys`, shape (len(t_out), *y0.shape)."""
    return solve_adaptive(Tsit5(), f, y0, t_out, **options)


def tsit5_rollout(f: Field, y0: torch.Tensor, t0: float, dt: float, n_steps: int) -> torch.Tensor:
    """Fixed-step Tsit5 (no error control): states at t0 + k dt, shape (n_steps + 1, *y0.shape)."""
    return solve_fixed(Tsit5(), f, y0, t0, dt, n_steps)
