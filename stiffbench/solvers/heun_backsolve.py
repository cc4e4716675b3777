"""torchdiffeq's backsolve adjoint for fixed-step Heun, batched over B models and without autograd.

`torchdiffeq.odeint_adjoint(f, y0, t, method="heun2", options={"step_size": dt})` with output
times t_k = t0 + k dt integrates the augmented system (y, a, g) backwards one output interval at a
time: one Heun step from t_{k+1} to t_k, starting from the stored forward state y_{k+1}, with
stage 1 at (t_{k+1}, y_{k+1}) and stage 2 at (t_k, y_{k+1} - dt f(t_{k+1}, y_{k+1})), a
re-integrated state rather than the stored y_k. Its gradient therefore differs from the exact
discrete gradient of `heun_adjoint_rollout`: by O(dt^3) relative on smooth fields, by O(1) on stiff
ones (|h lambda| near 1).
`heun_backsolve_rollout` computes the same numbers (up to rounding) for an `AdjointField`, reusing
the discrete adjoint's chunked and optionally compiled sweeps (`stiffbench.solvers.heun`).
"""

from __future__ import annotations

import torch

from stiffbench.solvers.heun import AdjointField, _chunks, _run


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
    return _HeunBacksolve.apply(field, times, float(dt), compile, y0, *params)


class _HeunBacksolve(torch.autograd.Function):
    """Forward: Heun steps keeping the states. Backward: with a = dL/dy_{k+1} (including later
    steps), step k pulls back g1 = h/2 a through the field at (t_{k+1}, y_{k+1}) and g2 = h/2 a'
    through the field at (t_k, y_{k+1} - h f1), a' = a + h m1, m1 = a^T J1; then
    dL/dy_k = G_k + a + h/2 (m1 + m2), dL/dparams += h/2 (p1 + p2). The pullbacks return h/2 m and
    h/2 p since they are linear in g."""

    @staticmethod
    def forward(ctx, field, times, h, compile, y0, *params):
        net = field.prepare(params)
        y, states = y0.unsqueeze(1), [y0.unsqueeze(1)]
        for chunk in _chunks(len(times)):
            y, chunk_states = _run(_forward_chunk, compile, chunk, field, net, y, times[chunk], h)
            states.append(chunk_states)
        states = torch.cat(states, 1)
        ctx.field, ctx.net, ctx.h, ctx.compile = field, net, h, compile
        ctx.save_for_backward(times, states, *params)
        return states

    @staticmethod
    def backward(ctx, grad_states):
        times, states, *params = ctx.saved_tensors
        a = torch.zeros_like(grad_states[:, :1])
        cotangents = []
        for chunk in reversed(_chunks(len(times))):
            ends = slice(chunk.start + 1, chunk.stop + 1)
            args = (ctx.field, ctx.net, a, grad_states[:, ends], states[:, ends], times[chunk], ctx.h)
            a, chunk_cotangents = _run(_backward_chunk, ctx.compile, chunk, *args)
            cotangents.append(chunk_cotangents)
        cotangents = tuple(torch.cat(parts, 1) for parts in zip(*reversed(cotangents)))
        grads = ctx.field.param_grads(ctx.net, times.reshape(-1), cotangents)
        return (None, None, None, None, (a + grad_states[:, :1]).squeeze(1), *grads)


def _forward_chunk(field, net, y, times, h: float):
    """Heun steps from y at times[:, 0]: (last state, states (B, K, n))."""
    states = []
    for k in range(times.shape[0]):
        k1 = field.evaluate(net, times[k, 0], y)[0]
        k2 = field.evaluate(net, times[k, 1], y + h * k1)[0]
        y = y + (0.5 * h) * (k1 + k2)
        states.append(y)
    return y, torch.cat(states, 1)


def _backward_chunk(field, net, a, grad_states, ends, times, h: float):
    """Reverse sweep over one chunk whose steps end at the stored states `ends` (B, K, n):
    (dL/dy at its first state, except that state's own G; the evaluations' cotangents concatenated
    (B, 2K, ...) in time order, stage 2 of a step (at its start) before stage 1 (at its end))."""
    cotangents = [None] * 2 * grad_states.shape[1]
    for k in reversed(range(grad_states.shape[1])):
        a = a + grad_states[:, k : k + 1]
        y = ends[:, k : k + 1]
        f1, r1 = field.evaluate(net, times[k, 1], y)
        m1, cotangents[2 * k + 1] = field.pullback(net, r1, (0.5 * h) * a)  # h/2 a^T J1
        r2 = field.evaluate(net, times[k, 0], y - h * f1)[1]
        m2, cotangents[2 * k] = field.pullback(net, r2, (0.5 * h) * a + h * m1)  # h/2 (a + h a^T J1)^T J2
        a = a + m1 + m2
    return a, tuple(torch.cat(parts, 1) for parts in zip(*cotangents))
