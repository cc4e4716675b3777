"""Gradient modes for fitting an ODE dy/dt = f(t, y; params) on a fixed grid of output times.

backprop       Plain autograd through the solver's steps (discretise-then-optimise): the exact
               gradient of the discrete solution; memory grows with the number of steps.
backsolve      torchdiffeq.odeint_adjoint (0.2.5): the augmented system (y, a, g) is integrated
               backwards from t_out[-1], re-integrating y, with y reset to the stored forward value
               at every output time (SciMLSensitivity's BacksolveAdjoint with checkpoints at the save
               points). torchdiffeq has neither Tsit5 nor a stiff solver: "heun" runs its "heun2"
               with step_size=dt, "tsit5" runs its "dopri5" (also an explicit 5(4) FSAL pair) at
               the same rtol/atol (max_steps becomes max_num_steps, an AssertionError there);
               "rodas5p" is not available (ValueError). Memory O(1) in the number of steps.
interpolating  The continuous adjoint a' = -a^T df/dy, g' = -a^T df/dparams, integrated backwards
               from a(t_out[-1]) = dL/dy there and g = 0, with the output-time loss gradients added
               to a as jumps, and y(t) read from the stored forward solution instead of being
               re-integrated (SciMLSensitivity's InterpolatingAdjoint); dL/dy0 = a(t0), dL/dparams
               = g(t0). Every right-hand side is one vector-Jacobian product of f at (t, y(t)).
               - heun: the forward states on the grid t0 + k dt are kept and the adjoint is
                 integrated by Heun with the same step, whose two stages fall on grid points, so
                 no interpolation is needed; the gradient differs from the exact discrete one by
                 O(dt^2).
               - tsit5, rodas5p: the accepted steps and their dense output are kept; the adjoint is
                 integrated by adaptive Tsit5 (same rtol/atol, RMS norm over a and g together)
                 between consecutive output times. The reverse pass is explicit whatever the
                 forward solver, so on stiff problems its step is bounded by stability; the
                 gradient differs from the exact discrete one by about the tolerance. It restarts
                 at every output time, so it costs at least 7 vector-Jacobian products per output
                 interval: on dense output grids it is slower than backprop; it saves memory.

`f(t, y)` closes over the tensors `params`; t is a float or a 0-d float64 tensor. Times are float64.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchdiffeq import odeint_adjoint

from stiffbench.solvers._adaptive import Field, as_times, solve_adaptive
from stiffbench.solvers.heun import heun_rollout
from stiffbench.solvers.rodas5p import Rodas5P
from stiffbench.solvers.tsit5 import Tsit5

SOLVERS = ("heun", "tsit5", "rodas5p")
_ADAPTIVE_OPTIONS = {"rtol", "atol", "first_step", "max_steps"}
OPTIONS = {"heun": {"dt"}, "tsit5": _ADAPTIVE_OPTIONS, "rodas5p": _ADAPTIVE_OPTIONS | {"jac"}}
GRAD_MODES = ("backprop", "backsolve", "interpolating")


def odeint_with_grad(
    f: Field,
    y0: torch.Tensor,
    t_out: Sequence[float] | torch.Tensor,
    params: Sequence[torch.Tensor] = (),
    solver: str = "heun",
    grad_mode: str = "backprop",
    **options,
) -> torch.Tensor:
    """States at t_out (shape (len(t_out), *y0.shape), y = y0 at t_out[0]), differentiable with
    respect to y0 and `params` by `grad_mode` (backprop differentiates whatever f depends on;
    the adjoint modes return gradients for y0 and `params` only).

    options: heun: dt (required; every output time must lie on t_out[0] + k dt);
             tsit5, rodas5p: rtol (1e-6), atol (1e-9), first_step, max_steps; rodas5p also jac.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; valid solvers: {', '.join(SOLVERS)}")
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"unknown grad_mode {grad_mode!r}; valid modes: {', '.join(GRAD_MODES)}")
    if set(options) - OPTIONS[solver] or (solver == "heun" and "dt" not in options):
        raise TypeError(f"{solver} takes the options {', '.join(sorted(OPTIONS[solver]))} (heun needs dt); "
                        f"got {', '.join(sorted(options)) or 'none'}")
    ts = as_times(t_out)
    if grad_mode == "backprop":
        return _forward(f, y0, ts, solver, options)[0]
    if grad_mode == "backsolve":
        return _backsolve(f, y0, ts, tuple(params), solver, options)
    return _InterpolatingAdjoint.apply(f, ts, solver, options, y0, *params)


def _grid(ts: list[float], dt: float) -> tuple[int, list[int]]:
    """Number of Heun steps and the step index of each output time (ValueError if off the grid)."""
    ks = [round((t - ts[0]) / dt) for t in ts]
    if any(abs(ts[0] + k * dt - t) > 1e-9 * max(1.0, abs(t)) + 1e-6 * dt for k, t in zip(ks, ts)):
        raise ValueError(f"every output time must lie on the Heun grid t_out[0] + k dt (dt={dt})")
    return ks[-1], ks


def _forward(f: Field, y0: torch.Tensor, ts: list[float], solver: str, options: dict, dense: bool = False):
    """(outputs, forward solution): Heun's states on its whole grid, or the adaptive Solution."""
    if solver == "heun":
        dt = float(options["dt"])
        n_steps, ks = _grid(ts, dt)
        states = heun_rollout(f, y0, ts[0], dt, n_steps)
        return states[ks], states
    options = dict(options)
    method = Rodas5P(options.pop("jac", None)) if solver == "rodas5p" else Tsit5()
    sol = solve_adaptive(method, f, y0, ts, dense=dense, **options)
    return sol.ys, sol


def _backsolve(f: Field, y0: torch.Tensor, ts: list[float], params, solver: str, options: dict) -> torch.Tensor:
    if solver == "rodas5p":
        raise ValueError("backsolve uses torchdiffeq, which has no Rosenbrock or other stiff solver; "
                         "use grad_mode 'backprop' or 'interpolating' with rodas5p")
    t = torch.tensor(ts, dtype=torch.float64, device=y0.device)
    if solver == "heun":
        _grid(ts, float(options["dt"]))
        return odeint_adjoint(f, y0, t, method="heun2", options={"step_size": float(options["dt"])},
                              adjoint_params=params)
    renamed = {"first_step": "first_step", "max_steps": "max_num_steps"}
    return odeint_adjoint(f, y0, t, rtol=options.get("rtol", 1e-6), atol=options.get("atol", 1e-9), method="dopri5",
                          options={renamed[k]: v for k, v in options.items() if k in renamed}, adjoint_params=params)


def _vjp(f: Field, params, t: float, y: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(a^T df/dy, a^T df/dp for each p in params) at (t, y). The graph is retained because f may
    close over tensors computed from params (e.g. folded weights), whose graph every call reuses."""
    with torch.enable_grad():
        y = y.detach().requires_grad_()
        return torch.autograd.grad(f(t, y), (y, *params), a, retain_graph=True, materialize_grads=True)


class _InterpolatingAdjoint(torch.autograd.Function):
    """Forward: solve without a graph, keep the forward solution. Backward: the adjoint pass."""

    @staticmethod
    def forward(ctx, f, ts, solver, options, y0, *params):
        ys, trajectory = _forward(f, y0, ts, solver, options, dense=True)
        ctx.f, ctx.ts, ctx.solver, ctx.options, ctx.trajectory = f, ts, solver, options, trajectory
        ctx.save_for_backward(*params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        params = ctx.saved_tensors
        wanted = [p for p, need in zip(params, ctx.needs_input_grad[5:]) if need]
        if ctx.solver == "heun":
            a, gs = _adjoint_heun(ctx.f, wanted, ctx.ts, ctx.trajectory, float(ctx.options["dt"]), grad_ys)
        else:
            a, gs = _adjoint_adaptive(ctx.f, wanted, ctx.ts, ctx.trajectory, ctx.options, grad_ys)
        it = iter(gs)
        return (None, None, None, None, a, *(next(it) if need else None for need in ctx.needs_input_grad[5:]))


def _adjoint_heun(f, params, ts, states, dt, grad_ys):
    """Heun backwards on the forward grid: stage 1 at t_k with y_k, stage 2 at t_{k-1} with y_{k-1}."""
    n_steps, ks = _grid(ts, dt)
    jumps = dict(zip(ks, grad_ys))
    a = torch.zeros_like(states[0])
    gs = [torch.zeros_like(p) for p in params]
    for k in range(n_steps, 0, -1):
        if k in jumps:
            a = a + jumps[k]
        v1 = _vjp(f, params, ts[0] + k * dt, states[k], a)
        v2 = _vjp(f, params, ts[0] + (k - 1) * dt, states[k - 1], a + dt * v1[0])
        a = a + 0.5 * dt * (v1[0] + v2[0])
        gs = [g + 0.5 * dt * (u1 + u2) for g, u1, u2 in zip(gs, v1[1:], v2[1:])]
    return a + jumps[0], gs


def _adjoint_adaptive(f, params, ts, sol, options, grad_ys):
    """Adaptive Tsit5 on z = (a, g) flattened, in reversed time s = -t, one output interval at a
    time (jumps in between); y(t) from the forward dense output."""
    a = torch.zeros_like(grad_ys[0])
    sizes = [a.numel()] + [p.numel() for p in params]

    def rhs(s, z):
        t = -float(s)
        with torch.no_grad():
            y = sol.at(t)
        vs = _vjp(f, params, t, y, z[: sizes[0]].view_as(a))
        return torch.cat([v.reshape(-1) for v in vs])

    z = torch.zeros(sum(sizes), dtype=a.dtype, device=a.device)
    tol = {k: options[k] for k in ("rtol", "atol", "max_steps") if k in options}
    h = None
    for k in range(len(ts) - 1, 0, -1):
        z = torch.cat([z[: sizes[0]] + grad_ys[k].reshape(-1), z[sizes[0]:]])
        back = solve_adaptive(Tsit5(), rhs, z, [-ts[k], -ts[k - 1]], first_step=h, **tol)
        z, h = back.ys[-1], back.next_h
    parts = torch.split(z, sizes)
    return parts[0].view_as(a) + grad_ys[0], [g.view_as(p) for g, p in zip(parts[1:], params)]
