"""torchdiffeq's backsolve adjoint for Heun on a fixed grid, batched over B models and without autograd.

`torchdiffeq.odeint_adjoint(f, y0, t, method="heun2", options={"step_size": dt})` with output
times t_k = t0 + k dt integrates the augmented system (y, a, g) backwards one output interval at a
time: one Heun step from t_{k+1} to t_k, starting from the stored forward state y_{k+1}, with
stage 1 at (t_{k+1}, y_{k+1}) and stage 2 at (t_k, y_{k+1} - dt f(t_{k+1}, y_{k+1})), a
re-integrated state rather than the stored y_k. Its gradient therefore differs from the exact
discrete gradient of `heun_adjoint_rollout`: by O(dt^3) relative on smooth fields, by O(1) on stiff
ones (|h lambda| near 1). On a grid given by its steps (torchdiffeq's option grid_constructor)
with several steps between output times, the backward steps between two outputs also carry the
re-integrated state y from step to step; it is reset to the stored one at each output time.
`heun_backsolve_rollout` (uniform) and `heun_backsolve_rollout_at` (given steps) compute the same
numbers (up to rounding) for an `AdjointField`, reusing the discrete adjoint's chunked and
optionally compiled sweeps (`stiffbench.solvers.heun`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from stiffbench.solvers.heun import AdjointField, _at, _chunks, _run, _step_grid


def heun_backsolve_rollout(
    field: AdjointField,
    params: tuple[torch.Tensor, ...],
    y0: torch.Tensor,
    t0: float,
    dt: float,
    n_steps: int,
    compile: bool = False,
) -> torch.Tensor:
    """(B, n) -> states (B, n_steps + 1, n) at t0 + k dt; gradient = torchdiffeq's backsolve adjoint.

    The states are those of `heun_adjoint_rollout`; the gradient with respect to y0 and `params`
    is, for each model, what torchdiffeq's odeint_adjoint with heun2 and step_size dt returns for
    that model alone. Memory: the states; the reverse sweep collects every evaluation's cotangents
    for one parameter-gradient product at the end, as `heun_adjoint_rollout` does. compile: as for
    `heun_adjoint_rollout`.
    """
    k = torch.arange(n_steps, dtype=torch.float64)
    times = torch.stack([t0 + k * dt, t0 + (k + 1) * dt], -1).to(y0.device, y0.dtype)
    return _HeunBacksolve.apply(field, times, float(dt), None, compile, y0, *params)


def heun_backsolve_rollout_at(
    field: AdjointField,
    params: tuple[torch.Tensor, ...],
    y0: torch.Tensor,
    step_times: Sequence[float],
    compile: bool = False,
    *,
    out_index: Sequence[int] | None = None,
) -> torch.Tensor:
    """`heun_backsolve_rollout` on the grid step_times (S + 1 boundaries): y0 (B, n) -> states
    (B, S + 1, n) at every boundary, the states of `heun_adjoint_rollout_at`.

    The gradient is, for each model, that of torchdiffeq's odeint_adjoint(f, y0,
    step_times[out_index], method="heun2") stepping on step_times (option grid_constructor):
    out_index (e.g. from `heun_steps`; default every boundary) are the output times, where the
    reverse sweep resets its re-integrated state to the stored one. A loss on a state at another
    boundary enters the adjoint there. Step sizes and compile: as for `heun_adjoint_rollout_at`.
    """
    times, h = _step_grid(step_times, y0)
    resets = None
    if out_index is not None:
        resets = torch.zeros(len(times) + 1, dtype=torch.bool)
        resets[torch.as_tensor(out_index, dtype=torch.long)] = True
        resets = resets.to(y0.device)
    return _HeunBacksolve.apply(field, times, h, resets, compile, y0, *params)


class _HeunBacksolve(torch.autograd.Function):
    """Forward: Heun steps keeping the states. Backward: with a = dL/dy_{k+1} (including later
    steps), step k pulls back g1 = h/2 a through the field at (t_{k+1}, y_{k+1}) and g2 = h/2 a'
    through the field at (t_k, y_{k+1} - h f1), a' = a + h m1, m1 = a^T J1; then
    dL/dy_k = G_k + a + h/2 (m1 + m2), dL/dparams += h/2 (p1 + p2). The pullbacks return h/2 m and
    h/2 p since they are linear in g. h: as for `_HeunAdjoint`. resets: None when y_{k+1} is the
    stored state at every step, else a bool tensor (steps + 1,) marking the boundaries where it is;
    elsewhere y_{k+1} is the previous reverse step's re-integrated y_{k+2} - h/2 (f1 + f2)."""

    @staticmethod
    def forward(ctx, field, times, h, resets, compile, y0, *params):
        net = field.prepare(params)
        y, states = y0.unsqueeze(1), [y0.unsqueeze(1)]
        for chunk in _chunks(len(times)):
            y, chunk_states = _run(_forward_chunk, compile, chunk, field, net, y, times[chunk], _at(h, chunk))
            states.append(chunk_states)
        states = torch.cat(states, 1)
        ctx.field, ctx.net, ctx.h, ctx.resets, ctx.compile = field, net, h, resets, compile
        ctx.save_for_backward(times, states, *params)
        return states

    @staticmethod
    def backward(ctx, grad_states):
        times, states, *params = ctx.saved_tensors
        a = torch.zeros_like(grad_states[:, :1])
        y = None if ctx.resets is None else states[:, -1:]
        cotangents = []
        for chunk in reversed(_chunks(len(times))):
            ends = slice(chunk.start + 1, chunk.stop + 1)
            resets = None if ctx.resets is None else ctx.resets[ends]
            args = (ctx.field, ctx.net, a, y, grad_states[:, ends], states[:, ends], resets, times[chunk],
                    _at(ctx.h, chunk))
            a, y, chunk_cotangents = _run(_backward_chunk, ctx.compile, chunk, *args)
            cotangents.append(chunk_cotangents)
        cotangents = tuple(torch.cat(parts, 1) for parts in zip(*reversed(cotangents)))
        grads = ctx.field.param_grads(ctx.net, times.reshape(-1), cotangents)
        return (None, None, None, None, None, (a + grad_states[:, :1]).squeeze(1), *grads)


def _forward_chunk(field, net, y, times, h: float | torch.Tensor):
    """Heun steps from y at times[:, 0] of sizes h (`_at`): (last state, states (B, K, n))."""
    states = []
    for k in range(times.shape[0]):
        hk = _at(h, k)
        k1 = field.evaluate(net, times[k, 0], y)[0]
        k2 = field.evaluate(net, times[k, 1], y + hk * k1)[0]
        y = y + (0.5 * hk) * (k1 + k2)
        states.append(y)
    return y, torch.cat(states, 1)


def _backward_chunk(field, net, a, y, grad_states, ends, resets, times, h: float | torch.Tensor):
    """Reverse sweep over one chunk whose steps end at the stored states `ends` (B, K, n), starting
    from the re-integrated state y at its end (None, and unused, when resets is None: see
    `_HeunBacksolve`): (dL/dy at its first state, except that state's own G; y there; the
    evaluations' cotangents concatenated (B, 2K, ...) in time order, stage 2 of a step (at its
    start) before stage 1 (at its end))."""
    cotangents = [None] * 2 * grad_states.shape[1]
    for k in reversed(range(grad_states.shape[1])):
        hk = _at(h, k)
        a = a + grad_states[:, k : k + 1]
        y_end = ends[:, k : k + 1] if resets is None else torch.where(resets[k], ends[:, k : k + 1], y)
        f1, r1 = field.evaluate(net, times[k, 1], y_end)
        m1, cotangents[2 * k + 1] = field.pullback(net, r1, (0.5 * hk) * a)  # h/2 a^T J1
        f2, r2 = field.evaluate(net, times[k, 0], y_end - hk * f1)
        m2, cotangents[2 * k] = field.pullback(net, r2, (0.5 * hk) * a + hk * m1)  # h/2 (a + h a^T J1)^T J2
        a = a + m1 + m2
        if resets is not None:
            y = y_end - (0.5 * hk) * (f1 + f2)
    return a, y, tuple(torch.cat(parts, 1) for parts in zip(*cotangents))
