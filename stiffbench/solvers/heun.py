"""Heun (explicit trapezoid, RK2) on a fixed grid: explicit, order 2, stable for |h lambda| <= 2 on the real axis.

One step: k1 = f(t, y), k2 = f(t + h, y + h k1), y' = y + h/2 (k1 + k2). Its amplification factor
on dy/dt = lambda y is 1 + h lambda + (h lambda)^2 / 2, whose modulus is <= 1 for real h lambda in
[-2, 0]; stiff systems therefore force h below 2 / |lambda_max| or the solution blows up.
The grid is either uniform, times t0 + k h (no accumulated round-off), or given as its step
boundaries (the `*_at` functions), each step's h their float64 difference; `heun_steps` builds such
a grid through arbitrary output times with a step of at most max_step.

Two ways to differentiate a rollout: `heun_rollout` records autograd's graph (any f);
`heun_adjoint_rollout` runs the same steps for a field with a hand-written pullback
(`AdjointField`) and computes the same gradient (the discrete adjoint) in its own reverse sweep,
in chunks of steps that can be compiled. The second avoids autograd's per-operation bookkeeping,
which dominates small-network rollouts.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch

from stiffbench.solvers._compile import maybe_compiled

Field = Callable[[float, torch.Tensor], torch.Tensor]


def heun_step(f: Field, t: float, y: torch.Tensor, h: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """One Heun step from (t, y) to t + h, written into `out` if given (no autograd then)."""
    k1 = f(t, y)
    k2 = f(t + h, torch.add(y, k1, alpha=h))
    return torch.add(y, k1 + k2, alpha=0.5 * h, out=out)


def heun_steps(t_out: Sequence[float], max_step: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(step_times, out_index): a grid through the output times t_out with steps of at most max_step.

    Each interval [s_i, s_{i+1}] of t_out is split into m_i = max(1, ceil(d_i / max_step - 1e-9))
    equal steps, d_i = s_{i+1} - s_i, with boundaries s_i + j d_i / m_i (m_i = 1 for max_step None;
    the 1e-9 keeps an interval that is a multiple of max_step up to rounding from gaining a step).
    step_times (float64) holds every boundary, the output times copied exactly (so a solver's
    states at them are its outputs, not interpolated): step_times[out_index] == t_out.
    """
    t = np.asarray(t_out, dtype=np.float64)
    if t.ndim != 1 or len(t) == 0 or not np.isfinite(t).all() or not (np.diff(t) > 0).all():
        raise ValueError("t_out must be a non-empty 1-d sequence of finite, strictly increasing times")
    if max_step is not None and not max_step > 0:
        raise ValueError(f"max_step must be None or > 0, got {max_step!r}")
    d = np.diff(t)
    m = np.ones(len(d), np.int64)
    if max_step is not None:
        m = np.maximum(1, np.ceil(d / max_step - 1e-9).astype(np.int64))
    out_index = np.concatenate([[0], np.cumsum(m)])
    interval = np.repeat(np.arange(len(d)), m)
    j = np.arange(out_index[-1]) - out_index[interval]
    step_times = np.append(t[interval] + j * d[interval] / m[interval], t[-1])
    step_times[out_index] = t
    return step_times, out_index


def heun_rollout(f: Field, y0: torch.Tensor, t0: float, dt: float, n_steps: int) -> torch.Tensor:
    """States at t0 + k dt, k = 0..n_steps, shape (n_steps + 1, *y0.shape).

    Differentiable by plain backprop: the gradient is the exact gradient of the discrete solver
    (discretise-then-optimise), at the cost of keeping every step's graph in memory.
    """
    t0, dt = float(t0), float(dt)
    states = [y0]
    y = y0
    for k in range(n_steps):
        y = heun_step(f, t0 + k * dt, y, dt)
        states.append(y)
    return torch.stack(states)


def heun_forecast(
    f: Field, y0: torch.Tensor, t0: float, dt: float, n_steps: int, check_every: int = 100
) -> torch.Tensor:
    """Like `heun_rollout` but without a graph, for long forecasts; shape (n_steps + 1, *y0.shape).

    The last dimension is the state; leading dimensions are independent trajectories (e.g. one per
    model of a batch). A trajectory is NaN from its first non-finite state on. Every `check_every`
    steps the solver stops early if all trajectories are non-finite (the rest stays NaN); checking
    only then avoids a device synchronisation per step. Runs under torch.inference_mode (about 10%
    faster than no_grad), so the result is an inference tensor: read or copy it, don't update it in place.
    """
    t0, dt = float(t0), float(dt)
    return _forecast(f, y0, ((t0 + k * dt, dt) for k in range(n_steps)), n_steps, check_every)


def heun_forecast_at(
    f: Field, y0: torch.Tensor, step_times: Sequence[float], check_every: int = 100
) -> torch.Tensor:
    """`heun_forecast` on the grid step_times (S + 1 boundaries): shape (S + 1, *y0.shape).

    Step k is `heun_step` from t = step_times[k] with h = step_times[k + 1] - step_times[k], both
    Python floats, as on the uniform grid."""
    st = _checked_step_times(step_times)
    return _forecast(f, y0, zip(st[:-1].tolist(), np.diff(st).tolist()), len(st) - 1, check_every)


def _forecast(f: Field, y0: torch.Tensor, steps: Iterable[tuple[float, float]], n_steps: int, check_every: int):
    """`heun_forecast`'s loop over the n_steps steps (t, h)."""
    with torch.inference_mode():
        out = torch.full((n_steps + 1, *y0.shape), float("nan"), dtype=y0.dtype, device=y0.device)
        out[0] = y0
        y = y0
        for k, (t, h) in enumerate(steps):
            y = heun_step(f, t, y, h, out=out[k + 1])
            if (k + 1) % check_every == 0 and not torch.isfinite(y).all(dim=-1).any():
                break
        bad = ~torch.isfinite(out).all(dim=-1, keepdim=True)
        out.masked_fill_(torch.cummax(bad.to(torch.uint8), dim=0).values.bool(), float("nan"))
    return out


def _checked_step_times(step_times: Sequence[float]) -> np.ndarray:
    """step_times as float64, checked to be a non-empty 1-d strictly increasing grid."""
    st = np.asarray(step_times, dtype=np.float64)
    if st.ndim != 1 or len(st) == 0 or not (np.diff(st) > 0).all():
        raise ValueError("step_times must be a non-empty 1-d sequence of strictly increasing times")
    return st


def _step_grid(step_times: Sequence[float], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(times (S, 2) of each step's start and end, h (S,) their float64 difference), in like's
    dtype and on its device: what the chunked sweeps take for a grid of S + 1 boundaries."""
    st = _checked_step_times(step_times)
    times = torch.as_tensor(np.stack([st[:-1], st[1:]], -1)).to(like.device, like.dtype)
    return times, torch.as_tensor(np.diff(st)).to(like.device, like.dtype)


# ----------------------------------------------------------------------------------------------
# Discrete adjoint for fields with a hand-written pullback
# ----------------------------------------------------------------------------------------------

CHUNK_STEPS = 8  # steps per compiled call: amortises the call overhead, keeps compile time short


class AdjointField(Protocol):
    """A batched vector field written as pure tensor functions with its own reverse pass.

    prepare(params) -> net        what evaluate needs, computed once per rollout from the parameters
    evaluate(net, t, y) -> (dy/dt, residuals)
                                  y (B, 1, n), t a 0-d tensor; residuals: tensors (B, 1, ...) for pullback
    pullback(net, residuals, g) -> (dL/dy, cotangents)
                                  g = dL/d(dy/dt), shape (B, 1, n); cotangents: tensors (B, 1, ...),
                                  whatever param_grads needs
    param_grads(net, times, cotangents) -> one gradient per parameter
                                  from all E evaluations' cotangents, concatenated along dim 1
                                  (B, E, ...), and their times (E,)
    """

    def prepare(self, params: tuple[torch.Tensor, ...]) -> Any: ...
    def evaluate(self, net: Any, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple]: ...
    def pullback(self, net: Any, residuals: tuple, g: torch.Tensor) -> tuple[torch.Tensor, tuple]: ...
    def param_grads(self, net: Any, times: torch.Tensor, cotangents: tuple) -> tuple: ...


def heun_adjoint_rollout(
    field: AdjointField,
    params: tuple[torch.Tensor, ...],
    y0: torch.Tensor,
    t0: float,
    dt: float,
    n_steps: int,
    compile: bool = False,
) -> torch.Tensor:
    """States of B trajectories at t0 + k dt, k = 0..n_steps: y0 (B, n) -> (B, n_steps + 1, n).

    The same numbers as `heun_rollout` (up to rounding), differentiable with respect to y0 and
    `params` with the exact gradient of the discrete solver. Memory: the fields' residuals of all
    2 n_steps evaluations. compile: run chunks of CHUNK_STEPS steps through torch.compile (the
    last, shorter chunk eagerly); if compilation fails, warns once and runs eagerly.
    """
    k = torch.arange(n_steps, dtype=torch.float64)
    times = torch.stack([t0 + k * dt, t0 + (k + 1) * dt], -1).to(y0.device, y0.dtype)
    return _HeunAdjoint.apply(field, times, float(dt), compile, y0, *params)


def heun_adjoint_rollout_at(
    field: AdjointField,
    params: tuple[torch.Tensor, ...],
    y0: torch.Tensor,
    step_times: Sequence[float],
    compile: bool = False,
) -> torch.Tensor:
    """`heun_adjoint_rollout` on the grid step_times (S + 1 boundaries, e.g. from `heun_steps`):
    y0 (B, n) -> states (B, S + 1, n) at every boundary, with the exact discrete gradient.

    Step k's size is step_times[k + 1] - step_times[k] in float64, then in y0's dtype; the chunks
    take the step sizes as a tensor, so one compiled chunk serves every grid.
    """
    times, h = _step_grid(step_times, y0)
    return _HeunAdjoint.apply(field, times, h, compile, y0, *params)


class _HeunAdjoint(torch.autograd.Function):
    """Forward: Heun steps keeping each evaluation's residuals. Backward: with lam = dL/dy_{k+1}
    (including later steps), step k's two stages get g2 = h/2 lam and g1 = h/2 lam + h mu, where
    mu = J2^T g2 is the pullback through y + h k1; then dL/dy_k = G_k + lam + mu + J1^T g1.
    h: one Python float for all steps, or a tensor (steps,) of per-step sizes."""

    @staticmethod
    def forward(ctx, field, times, h, compile, y0, *params):
        net = field.prepare(params)
        y, states, residuals = y0.unsqueeze(1), [y0.unsqueeze(1)], []
        for chunk in _chunks(len(times)):
            y, chunk_states, chunk_residuals = _run(_forward_chunk, compile, chunk, field, net, y, times[chunk],
                                                    _at(h, chunk))
            states.append(chunk_states)
            residuals.append(chunk_residuals)
        ctx.field, ctx.net, ctx.h, ctx.compile, ctx.residuals = field, net, h, compile, residuals
        ctx.save_for_backward(times, *params)
        return torch.cat(states, 1)

    @staticmethod
    def backward(ctx, grad_states):
        times, *params = ctx.saved_tensors
        lam = torch.zeros_like(grad_states[:, :1])
        cotangents = []
        for chunk, residuals in reversed(list(zip(_chunks(len(times)), ctx.residuals))):
            g_chunk = grad_states[:, chunk.start + 1 : chunk.stop + 1]
            args = (ctx.field, ctx.net, lam, g_chunk, residuals, _at(ctx.h, chunk))
            lam, chunk_cotangents = _run(_backward_chunk, ctx.compile, chunk, *args)
            cotangents.append(chunk_cotangents)
        del ctx.residuals
        cotangents = tuple(torch.cat(parts, 1) for parts in zip(*reversed(cotangents)))
        grads = ctx.field.param_grads(ctx.net, times.reshape(-1), cotangents)
        return (None, None, None, None, (lam + grad_states[:, :1]).squeeze(1), *grads)


def _chunks(n_steps: int) -> list[slice]:
    return [slice(a, min(a + CHUNK_STEPS, n_steps)) for a in range(0, n_steps, CHUNK_STEPS)]


def _at(h: float | torch.Tensor, k: int | slice) -> float | torch.Tensor:
    """The step size(s) of step(s) k: h itself when one Python float serves all steps, else h[k]."""
    return h if isinstance(h, float) else h[k]


def _forward_chunk(field, net, y, times, h: float | torch.Tensor):
    """Heun steps from y at times[:, 0] of sizes h (`_at`): (last state, states (B, K, n), residuals
    stacked (2K, B, 1, ...)).

    Evaluation-major stacking keeps each evaluation's slice contiguous, as the reverse sweep reads
    it (CPU `native_layer_norm_backward` ignores the strides of its mean and rstd).
    """
    states, residuals = [], []
    for k in range(times.shape[0]):
        hk = _at(h, k)
        k1, r1 = field.evaluate(net, times[k, 0], y)
        k2, r2 = field.evaluate(net, times[k, 1], y + hk * k1)
        y = y + (0.5 * hk) * (k1 + k2)
        states.append(y)
        residuals += [r1, r2]
    return y, torch.cat(states, 1), tuple(torch.stack(parts) for parts in zip(*residuals))


def _backward_chunk(field, net, lam, grad_states, residuals, h: float | torch.Tensor):
    """Reverse sweep over one chunk: (dL/dy at its first state, except that state's own G; the
    evaluations' cotangents concatenated (B, 2K, ...))."""
    cotangents = [None] * 2 * grad_states.shape[1]
    for k in reversed(range(grad_states.shape[1])):
        hk = _at(h, k)
        lam = lam + grad_states[:, k : k + 1]
        g2 = (0.5 * hk) * lam
        mu, cotangents[2 * k + 1] = field.pullback(net, tuple(r[2 * k + 1] for r in residuals), g2)
        dy, cotangents[2 * k] = field.pullback(net, tuple(r[2 * k] for r in residuals), g2 + hk * mu)
        lam = lam + mu + dy
    return lam, tuple(torch.cat(parts, 1) for parts in zip(*cotangents))


def _run(fn, compile: bool, chunk: slice, *args):
    """fn(*args), compiled when asked and the chunk is full-length (one compiled shape per run)."""
    return maybe_compiled(fn, compile and chunk.stop - chunk.start == CHUNK_STEPS, *args)
