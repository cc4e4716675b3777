"""Rodas5P: linearly implicit Rosenbrock, 8 stages, order 5 with embedded order 4, A-stable and
stiffly accurate (R(-inf) = 0), one LU per step, stiff-aware 4th-order dense output.

Steinebach, G. (2023), "Construction of Rosenbrock-Wanner method Rodas5P and numerical benchmarks
within the Julia Differential Equations package", BIT Numer. Math. 63, 27. Step formula as in
OrdinaryDiffEq.jl (technical notes §3.1), with J = df/dy and f_t = df/dt at (t_n, y_n):

    (I / (h gamma) - J) k_i = f(t_n + c_i h, y_n + sum_{j<i} A[i,j] k_j) + h d_i f_t + sum_{j<i} (C[i,j] / h) k_j
    y_{n+1} = y_n + sum_i B_i k_i  (B = A[8, :] with B_8 = 1),   err = k_8,
    y(theta) = (1 - theta) y_n + theta (y_{n+1} + (1 - theta)(K_1 + theta (K_2 + theta K_3))),  K_j = sum_i H[j,i] k_i.

J comes from reverse-mode AD (n vector-Jacobian products, vmapped) or a given `jac(t, y)`, f_t
from reverse mode too (see `derivatives`), or both from a forward-mode `jet`; one batched inverse
(LU) of the (..., n, n) matrices per step, applied to each stage. All of it is differentiable by autograd, so backprop through the steps is
the exact gradient of the discrete solver (it differentiates J too: second derivatives of f).
The vector field must accept t as a Python float or a 0-d tensor (or, with per-trajectory h and t
of shape (..., 1) as `solve_independent` passes them, such a tensor). State and time are float64
(ValueError otherwise): I/(h gamma) - J is ill-conditioned on stiff steps and the C/h terms are
large (|C| up to ~150), so the stages lose digits that float32 cannot spare.
Step-size control, shared by the batch: `_adaptive` (EEst = RMS norm of k_8 / (atol + rtol max(|y_n|,
|y_{n+1}|)), h_new = h clamp(0.9 EEst^(-1/5), 0.2, 10), EEst > 1 rejected).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import grad, vjp, vmap

from stiffbench.solvers._adaptive import AbstractAdaptiveSolver, Field, Solution, Step, solve_adaptive, solve_fixed

GAMMA = 0.21193756319429014
_ROW6 = (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946)
A = (
    (),
    (3.0,),
    (2.849394379747939, 0.45842242204463923),
    (-6.954028509809101, 2.489845061869568, -10.358996098473584),
    (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
    _ROW6,
    (*_ROW6, 1.0),
    (*_ROW6, 1.0, 1.0),
)
C = (
    (),
    (-14.155112264123755,),
    (-17.97296035885952, -2.859693295451294),
    (147.12150275711716, -1.41221402718213, 71.68940251302358),
    (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
    (24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471),
    (30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
     -28.087943162872662),
    (37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
     -54.66780262877968, -9.48861652309627),
)
c = (0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664, 1.0, 1.0, 1.0)
d = (0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734, 2.325825639765069,
     0.0, 0.0, 0.0)
B = (*A[7], 1.0)
H = (
    (25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204, 0.524948541321073,
     1.1241088310450404, 0.4272876194431874, -0.17202221070155493),
    (-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796, 20.176138334709044,
     15.98066361424651, -6.789040303419874, -6.710236069923372),
    (11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643, -52.072871366152654,
     -59.78993625266729, -0.15582684282751913, 4.883087185713722),
)

Jacobian = Callable[[float, torch.Tensor], torch.Tensor]
Jet = Callable[[float, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


_COEFFICIENTS: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}


def _coefficients(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per stage i = 1..7 the (2, i) matrix [A[i]; C[i]], and at index 8 the (4, 8) matrix [B; H];
    built once per dtype and device (a plain dict, which torch.compile reads without tracing the
    construction again, as it would through functools.cache)."""
    key = (dtype, torch.device(device))
    if key not in _COEFFICIENTS:
        as_t = lambda rows: torch.tensor(rows, dtype=dtype, device=device)  # noqa: E731
        _COEFFICIENTS[key] = (None, *(as_t([A[i], C[i]]) for i in range(1, 8)), as_t([B, *H]))
    return _COEFFICIENTS[key]


class Rodas5P(AbstractAdaptiveSolver):
    """Rodas5P step. jac: optional analytic J(t, y) of shape (..., n, n) (f_t is still by AD);
    jet: optional (f, J, f_t)(t, y) all at once, e.g. by forward-mode propagation through a network
    (`stiffbench.nn.mlp_jet`), replacing the reverse-mode derivatives altogether."""

    order = 5
    error_order = 4

    def __init__(self, jac: Jacobian | None = None, jet: Jet | None = None):
        if jac is not None and jet is not None:
            raise ValueError("give Rodas5P either jac or jet, not both")
        self.jac = jac
        self.jet = jet

    def init(self, f: Field, t0: float, y0: torch.Tensor) -> None:
        """Checks the dtype and builds the coefficient tensors for y0's dtype and device (here, so that a
        compiled `step` reads them as inputs instead of tracing their construction)."""
        if y0.dtype != torch.float64:
            raise ValueError(f"Rodas5P runs in float64; got a {y0.dtype} state (cast y0 and the vector field)")
        self.coefficients = _coefficients(y0.dtype, y0.device)

    def derivatives(self, f: Field, t: float, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f, J, f_t) at (t, y); J has shape (..., n, n), one Jacobian per trajectory.

        torch.func, reverse mode only: one vjp of f in (t, y); its pullback vmapped over the n unit
        cotangents (each broadcast over the trajectories, which are independent) gives row i of
        every J; f_t is the gradient in v of the t-part of the pullback, v . f_t. These compose
        with ordinary autograd (J and f_t stay differentiable in y and in f's parameters) and,
        unlike torch.autograd.grad, never traverse the graph of earlier steps.
        """
        if self.jet is not None:
            return self.jet(t, y)
        tt = t if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=y.dtype, device=y.device)
        if self.jac is None:
            n = y.shape[-1]
            f0, pullback = vjp(f, tt, y)
            units = torch.eye(n, dtype=y.dtype, device=y.device).reshape(n, *(1,) * (y.dim() - 1), n)
            J = vmap(pullback)(units.expand(n, *y.shape))[1].movedim(0, -2)
        else:
            f0, pullback = vjp(lambda s: f(s, y), tt)
            J = self.jac(t, y)
        # per-trajectory times: trajectory b's f depends on t_b only, so the sum's gradient is each f_t
        return f0, J, grad(lambda v: pullback(v)[0].sum())(torch.zeros_like(f0))

    def step(self, f: Field, t: float, y: torch.Tensor, h: float, carry: None) -> Step:
        """One step. The stage sums sum_j A[i,j] k_j and sum_j C[i,j] k_j are one small matrix
        product of the stacked stages each (`_coefficients`), and W = I/(h gamma) - J is inverted
        once (LU with partial pivoting) and applied to each stage's right-hand side: under
        autograd this records a few operations per stage instead of dozens."""
        f0, J, f_t = self.derivatives(f, t, y)
        eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
        h_matrix = h.unsqueeze(-1) if isinstance(h, torch.Tensor) else h  # per-trajectory h (..., 1)
        w_inv = torch.linalg.inv(eye / (h_matrix * GAMMA) - J)
        coefficients = getattr(self, "coefficients", None) or _coefficients(y.dtype, y.device)
        ks: list[torch.Tensor] = []
        for i in range(8):
            if i == 0:
                rhs = f0 + (h * d[0]) * f_t
            else:
                sums = coefficients[i] @ torch.stack(ks, -2)  # (..., 2, n): the A and C sums
                stage = f(t + c[i] * h, y + sums[..., 0, :])
                rhs = stage + sums[..., 1, :] / h
                if d[i] != 0.0:
                    rhs = rhs + (h * d[i]) * f_t
            ks.append((w_inv @ rhs.unsqueeze(-1)).squeeze(-1))
        out = coefficients[8] @ torch.stack(ks, -2)  # (..., 4, n): sum B_i k_i and the dense K_1..K_3
        return Step(y + out[..., 0, :], ks[7], (out[..., 1, :], out[..., 2, :], out[..., 3, :]), None)

    def interpolate(self, y0: torch.Tensor, y1: torch.Tensor, dense, theta: float) -> torch.Tensor:
        K1, K2, K3 = dense
        return (1 - theta) * y0 + theta * (y1 + (1 - theta) * (K1 + theta * (K2 + theta * K3)))


def rodas5p_solve(f: Field, y0: torch.Tensor, t_out, jac: Jacobian | None = None, **options) -> Solution:
    """Adaptive Rodas5P through the output times t_out; options as `solve_adaptive` (rtol, atol,
    first_step, max_steps, dense). The states are `.ys`, shape (len(t_out), *y0.shape)."""
    return solve_adaptive(Rodas5P(jac), f, y0, t_out, **options)


def rodas5p_rollout(
    f: Field, y0: torch.Tensor, t0: float, dt: float, n_steps: int, jac: Jacobian | None = None
) -> torch.Tensor:
    """Fixed-step Rodas5P (no error control): states at t0 + k dt, shape (n_steps + 1, *y0.shape)."""
    return solve_fixed(Rodas5P(jac), f, y0, t0, dt, n_steps)
