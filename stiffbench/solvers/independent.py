"""Adaptive solves of B independent trajectories in one batched loop, each with its own step size.

`solve_adaptive` shares one step size across everything it integrates, so a batch of models
solved together would step at the pace of its stiffest member and each model's result would
depend on its batch. Here trajectory b keeps its own time t_b, step h_b, error estimate and
accept/reject decisions, exactly as if it were solved alone by `solve_adaptive` (same controller,
same first step, same landing on the last output time); only the arithmetic is batched: every
iteration attempts one step for every unfinished trajectory, with per-trajectory h (shape (B, 1)),
and a finished trajectory idles. The cost is about max_b(attempts_b) batched steps instead of
sum_b(attempts_b) single ones, and batched steps of small networks cost little more than single
ones (per-operation overhead dominates).

The vector field gets per-trajectory times: a tensor of shape (B, 1) in the state's dtype (the
field must treat row b of it as trajectory b's time). The solvers' `step` and `interpolate` take
h and theta as tensors broadcasting against the state.

Outputs are formed after the loop by one gather: output time s of trajectory b is read from the
dense output of b's accepted step that covers it (the step's end state itself when s is that end).
Under autograd the gradient is the exact gradient of each trajectory's discrete solution for its
accepted step sequence, as with `solve_adaptive`. A rejected or idle attempt enters the graph but
only through `torch.where` branches that are not taken, so it contributes zero -- unless its stages
overflowed to inf/NaN, where 0 * inf would poison that trajectory's gradient: idle trajectories
therefore repeat their last accepted step size, and a non-finite rejected attempt is recomputed
under no_grad semantics (see `_attempt`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from stiffbench.solvers._adaptive import (
    AbstractAdaptiveSolver,
    Field,
    Step,
    StepLimitExceeded,
    as_times,
    initial_step,
    rms,
    scaled_ratio,
    step_factor,
)
from stiffbench.solvers._compile import maybe_compiled


def solve_independent(
    solver: AbstractAdaptiveSolver,
    f: Field,
    y0: torch.Tensor,
    t_out: Sequence[float] | torch.Tensor,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    compile: bool = False,
) -> torch.Tensor:
    """States of the B trajectories y0 (B, n) at the output times, shape (len(t_out), B, n).

    Each trajectory is integrated with its own adaptive steps from t_out[0]. Raises
    StepLimitExceeded when any trajectory needs more than `max_steps` attempts (accepted plus
    rejected), as its own solve would. Differentiable by plain autograd. compile: run the
    solver's step through torch.compile (forward and backward; about 3x faster per step for the
    paper's network after ~30 s of compilation; the same arithmetic reordered, so step decisions
    can differ from eager ones where an error estimate sits at rounding distance from 1).
    """
    ts_out = as_times(t_out)
    if y0.dim() != 2:
        raise ValueError(f"y0 must have shape (B, n), got {tuple(y0.shape)}")
    t0, t_end = ts_out[0], ts_out[-1]
    if t_end == t0:
        return y0.unsqueeze(0)
    n_traj = y0.shape[0]
    t = torch.full((n_traj, 1), t0, dtype=torch.float64, device=y0.device)
    h = initial_step(f, t0, y0, solver.order, rtol, atol, per_trajectory=True)
    h_safe = h  # the step an idle trajectory repeats: its last accepted one (or its first)
    attempts = torch.zeros(n_traj, 1, dtype=torch.long, device=y0.device)
    done = torch.zeros(n_traj, 1, dtype=torch.bool, device=y0.device)
    y, carry = y0, solver.init(f, t.to(y0.dtype), y0)
    steps = []  # per iteration: (accepted (B, 1), t_old, h_try, y_old, y_new, dense)
    while not bool(done.all()):
        over = ~done & (attempts >= max_steps)
        if bool(over.any()):
            b = int(over.nonzero()[0, 0])
            raise StepLimitExceeded(
                f"{solver.__class__.__name__} reached max_steps={max_steps} for trajectory {b} at t={float(t[b])} "
                f"of [{t0}, {t_end}] (last h={float(h[b]):.3g}); the problem may be too stiff for this solver "
                "or the tolerances too tight"
            )
        last = t + 1.01 * h >= t_end
        h_try = torch.where(done, h_safe, torch.where(last, t_end - t, h))
        step, eest = _attempt(solver, f, t, y, h_try, carry, rtol, atol, compile)
        accept = ~done & (eest <= 1.0)
        attempts += (~done).long()
        h_next = h_try * step_factor(eest, solver.error_order)
        h_next = torch.where(accept & last, torch.maximum(h_next, h), h_next)  # see solve_adaptive
        h = torch.where(done, h, h_next)
        h_safe = torch.where(accept, h_try, h_safe)
        steps.append((accept, t, h_try, y, step.y, step.dense))
        t = torch.where(accept, torch.where(last, t_end, t + h_try), t)
        y = torch.where(accept, step.y, y)
        carry = _where_tree(accept, step.carry, carry)
        done = done | (accept & last)
    return _outputs(solver, y0, ts_out, steps)


def _attempt(solver, f, t, y, h_try, carry, rtol, atol, compile: bool):
    """One batched step and each trajectory's EEst (float64, (B, 1); NaN where not finite). A step
    with a non-finite state or estimate in some trajectory is redone with that trajectory's h
    scaled by 1e-3 (its result is discarded by the rejection either way), so no inf enters the
    graph; the returned EEst is still the original one."""
    dtype = y.dtype
    step = maybe_compiled(_step, compile, solver, f, t.to(dtype), y, h_try.to(dtype), carry)
    eest = rms(scaled_ratio(step.err, y, step.y, rtol, atol)).double()
    bad = ~(eest.isfinite() & step.y.detach().isfinite().all(-1, keepdim=True))
    if bool(bad.any()):
        h_retry = torch.where(bad, 1e-3 * h_try, h_try).to(dtype)
        step = maybe_compiled(_step, compile, solver, f, t.to(dtype), y, h_retry, carry)
        eest = torch.where(bad, torch.nan, eest)
    return step, eest


def _step(solver: AbstractAdaptiveSolver, f: Field, t, y, h, carry) -> Step:
    return solver.step(f, t, y, h, carry)


def _where_tree(mask: torch.Tensor, new, old):
    """Elementwise choice between two structures of tensors with leading dim B (None stays None)."""
    if new is None:
        return None
    new_leaves, spec = tree_flatten(new)
    return tree_unflatten([torch.where(mask, a, b) for a, b in zip(new_leaves, tree_flatten(old)[0])], spec)


def _outputs(solver, y0: torch.Tensor, ts_out: list[float], steps: list) -> torch.Tensor:
    """Every trajectory's states at ts_out from the dense output of its accepted steps (one gather)."""
    accepted = torch.cat([s[0] for s in steps], 1).cpu().numpy()  # (B, I)
    t_old = torch.cat([s[1] for s in steps], 1).cpu().numpy()
    h_try = torch.cat([s[2] for s in steps], 1).cpu().numpy()
    n_traj, s_out = y0.shape[0], np.asarray(ts_out[1:])
    index = np.empty((n_traj, len(s_out)), dtype=np.int64)
    theta = np.empty((n_traj, len(s_out)))
    at_end = np.empty((n_traj, len(s_out)), dtype=bool)
    for b in range(n_traj):
        its = np.flatnonzero(accepted[b])
        t_new = t_old[b, its] + h_try[b, its]
        t_new[-1] = ts_out[-1]  # the last accepted step lands on t_end exactly
        j = np.minimum(np.searchsorted(t_new, s_out, side="left"), len(its) - 1)
        index[b] = its[j]
        at_end[b] = s_out == t_new[j]
        theta[b] = (s_out - t_old[b, its[j]]) / h_try[b, its[j]]
    rows = torch.arange(n_traj, device=y0.device).unsqueeze(1)
    idx = torch.as_tensor(index, device=y0.device)
    gather = lambda xs: torch.stack(xs)[idx, rows]  # noqa: E731  (I, B, ...) -> (B, N, ...)
    spec = tree_flatten(steps[0][5])[1]
    per_leaf = zip(*(tree_flatten(s[5])[0] for s in steps))
    dense = tree_unflatten([gather(list(leaves)) for leaves in per_leaf], spec)
    y_old, y_new = gather([s[3] for s in steps]), gather([s[4] for s in steps])
    # theta in float64: the interpolant's weights are formed in float64, as solve_adaptive's are
    th = torch.as_tensor(theta, dtype=torch.float64, device=y0.device).unsqueeze(-1)
    mid = solver.interpolate(y_old, y_new, dense, th).to(y0.dtype)
    out = torch.where(torch.as_tensor(at_end, device=y0.device).unsqueeze(-1), y_new, mid)
    return torch.cat([y0.unsqueeze(0), out.transpose(0, 1)])
