"""Adaptive solves of B independent trajectories in one batched loop, each with its own step size.

`solve_adaptive` shares one step size across everything it integrates, so a batch of models
solved together would step at the pace of its stiffest member and each model's result would
depend on its batch. Here trajectory b keeps its own time t_b, step h_b, error estimate and
accept/reject decisions, exactly as if it were solved alone by `solve_adaptive` (same controller,
same first step, same landing on the last output time); only the arithmetic is batched: every
iteration attempts one step for every unfinished trajectory, with per-trajectory h (shape (B, 1)),
and a finished trajectory idles. The cost is about max_b(attempts_b) batched steps instead of
sum_b(attempts_b) single ones. Batched steps of small networks cost little more than single ones
while per-operation overhead dominates, but not once the arithmetic does (Rodas5P's derivative
and stage work grows with B): given `restrict`, finished trajectories leave the batch, so the
long tail of a straggler runs on a small batch.

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
with a tiny step (see `_iteration`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from stiffbench.solvers._adaptive import (
    AbstractAdaptiveSolver,
    Field,
    StepLimitExceeded,
    as_times,
    initial_step,
    rms,
    scaled_ratio,
    step_factor,
)
from stiffbench.solvers._compile import maybe_compiled


Restrict = Callable[[torch.Tensor], tuple[AbstractAdaptiveSolver, Field]]

ITERATIONS_PER_CALL = 4
"""Iterations per compiled call when `compile` is on (see `_iterations`)."""


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
    restrict: Restrict | None = None,
    iterations_per_call: int | None = None,
) -> torch.Tensor:
    """States of the B trajectories y0 (B, n) at the output times, shape (len(t_out), B, n).

    Each trajectory is integrated with its own adaptive steps from t_out[0]. Raises
    StepLimitExceeded when any trajectory needs more than `max_steps` attempts (accepted plus
    rejected), as its own solve would. Differentiable by plain autograd. compile: run the
    solver's step through torch.compile (forward and backward; about 3x faster per step for the
    paper's network after ~30 s of compilation; the same arithmetic reordered, so step decisions
    can differ from eager ones where an error estimate sits at rounding distance from 1).

    restrict(rows) -> (solver, f) for the trajectories `rows` (indices into 0..B-1, in that order)
    lets finished trajectories leave the batch: once at most half of the rows still stepping are
    unfinished, the loop continues on the smallest power-of-two number of rows that holds them
    (`_compacted_size`; a few distinct batch shapes, each compiled once). A batch whose models
    need very different step counts then costs about the slowest one's steps at the cost of a
    small batch, not of the whole one (the step's arithmetic grows with B). Row b's arithmetic is
    the same in any batch, so the states do not change (bitwise in eager mode); gradients with
    respect to parameters that `restrict` indexes are summed in another order (the index's
    backward adds the parts before and after each shrink), so they agree to rounding (3e-7
    relative in float32 for the paper's network).

    iterations_per_call: attempted steps per call of the (compiled) iteration function; default
    `ITERATIONS_PER_CALL` when compiling, else 1. Several per call pay the per-call overhead of a
    compiled function (guards, autograd wrappers, the loop's own checks) once for all of them;
    the arithmetic is the same, and eagerly the states and gradients are bitwise those of one per
    call. Rows that finish within a call idle for the rest of it, and the batch shrinks only
    between calls.
    """
    ts_out = checked_times(y0, t_out)
    if ts_out[-1] == ts_out[0]:
        return y0.unsqueeze(0)
    solver, records = integrate(solver, f, y0, ts_out, rtol=rtol, atol=atol, max_steps=max_steps, compile=compile,
                                restrict=restrict, iterations_per_call=iterations_per_call)
    return records.outputs(solver, y0, ts_out)


def checked_times(y0: torch.Tensor, t_out: Sequence[float] | torch.Tensor) -> list[float]:
    """The output times as floats; ValueError unless y0 has shape (B, n) and the times increase."""
    ts_out = as_times(t_out)
    if y0.dim() != 2:
        raise ValueError(f"y0 must have shape (B, n), got {tuple(y0.shape)}")
    return ts_out


def integrate(
    solver: AbstractAdaptiveSolver,
    f: Field,
    y0: torch.Tensor,
    ts_out: list[float],
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    compile: bool,
    restrict: Restrict | None,
    iterations_per_call: int | None,
) -> tuple[AbstractAdaptiveSolver, "Records"]:
    """`solve_independent`'s loop from ts_out[0] to ts_out[-1] > ts_out[0]: the solver it ended
    with (restricted to the last rows) and the record of every attempted step."""
    t0, t_end = ts_out[0], ts_out[-1]
    n_traj = y0.shape[0]
    rows = torch.arange(n_traj, device=y0.device)  # the trajectory of each row still in the loop
    t = torch.full((n_traj, 1), t0, dtype=torch.float64, device=y0.device)
    h = initial_step(f, t0, y0, solver.order, rtol, atol, per_trajectory=True)
    done = torch.zeros(n_traj, 1, dtype=torch.bool, device=y0.device)
    # h_safe: the step an idle trajectory repeats, its last accepted one (or its first)
    state = _Loop(t, h, h, torch.zeros(n_traj, 1, dtype=torch.long, device=y0.device), done, y0,
                  solver.init(f, t.to(y0.dtype), y0))
    steps = []  # per iteration: (rows, accepted (R, 1), t_old, h_try, y_old, y_new, dense)
    limits = (t_end, rtol, atol)
    if iterations_per_call is not None and iterations_per_call < 1:
        raise ValueError(f"iterations_per_call must be at least 1, got {iterations_per_call}")
    chunk = iterations_per_call or (ITERATIONS_PER_CALL if compile else 1)
    while not bool(state.done.all()):
        attempts = torch.where(state.done, 0, state.attempts)
        most = int(attempts.max())
        if most >= max_steps:
            r = int(attempts.argmax())
            raise StepLimitExceeded(
                f"{solver.__class__.__name__} reached max_steps={max_steps} for trajectory {int(rows[r])} at "
                f"t={float(state.t[r])} of [{t0}, {t_end}] (last h={float(state.h[r]):.3g}); the problem may be too "
                "stiff for this solver or the tolerances too tight"
            )
        records = None
        if chunk > 1 and most + chunk <= max_steps:
            bad, records, new = maybe_compiled(_iterations, compile, solver, f, state, limits, chunk)
            if bool(bad):  # a non-finite attempt somewhere: discard the call, advance one iteration below
                records = None
        if records is None:
            bad, record, new = maybe_compiled(_iteration, compile, solver, f, state, limits, None)
            if bool(bad.any()):  # redo the non-finite attempts with a tiny h (see _iteration)
                bad, record, new = maybe_compiled(_iteration, compile, solver, f, state, limits, bad)
            records = [record]
        steps.extend((rows, *record) for record in records)
        state = new
        size = _compacted_size(int((~state.done).sum()), len(rows)) if restrict is not None else len(rows)
        if size < len(rows):
            keep = torch.sort(torch.argsort(state.done.squeeze(1).byte(), stable=True)[:size]).values
            rows = rows[keep]
            carry = None if state.carry is None else tree_map(lambda x: x[keep], state.carry)
            state = _Loop(*(x[keep] for x in state[:-1]), carry)
            solver, f = restrict(rows)
            solver.init(f, state.t.to(y0.dtype), state.y)  # its set-up only: the rows keep their own carry
    return solver, Records.of(steps, n_traj)


class _Loop(NamedTuple):
    """The per-trajectory loop state, (R, 1) or (R, n) per row: time, proposed step, the step an
    idle row repeats, attempts so far, finished, state and the solver's carry."""

    t: torch.Tensor
    h: torch.Tensor
    h_safe: torch.Tensor
    attempts: torch.Tensor
    done: torch.Tensor
    y: torch.Tensor
    carry: Any


def _iteration(solver, f, s: _Loop, limits: tuple[float, float, float], redo: torch.Tensor | None):
    """One attempted step for every row and the controller's update, as one function (compiled as
    one graph): (bad, record, next state). bad: rows whose state or EEst is not finite. With `redo`
    (the previous call's bad), those rows attempt h * 1e-3 instead, so that no inf enters the graph
    (0 * inf in the backward of the rejected branch), and count as rejected with EEst NaN."""
    t_end, rtol, atol = limits
    dtype = s.y.dtype
    last = s.t + 1.01 * s.h >= t_end
    h_try = torch.where(s.done, s.h_safe, torch.where(last, t_end - s.t, s.h))
    h_step = h_try if redo is None else torch.where(redo, 1e-3 * h_try, h_try)
    step = solver.step(f, s.t.to(dtype), s.y, h_step.to(dtype), s.carry)
    eest = rms(scaled_ratio(step.err, s.y, step.y, rtol, atol)).double()
    bad = ~(eest.isfinite() & step.y.detach().isfinite().all(-1, keepdim=True))
    if redo is not None:
        eest = torch.where(redo, torch.nan, eest)
    accept = ~s.done & (eest <= 1.0)
    h_next = h_try * step_factor(eest, solver.error_order)
    h_next = torch.where(accept & last, torch.maximum(h_next, s.h), h_next)  # see solve_adaptive
    new = _Loop(
        t=torch.where(accept, torch.where(last, t_end, s.t + h_try), s.t),
        h=torch.where(s.done, s.h, h_next),
        h_safe=torch.where(accept, h_try, s.h_safe),
        attempts=s.attempts + (~s.done).long(),
        done=s.done | (accept & last),
        y=torch.where(accept, step.y, s.y),
        carry=_where_tree(accept, step.carry, s.carry),
    )
    return bad, (accept, s.t, h_try, s.y, step.y, step.dense), new


def _iterations(solver, f, s: _Loop, limits: tuple[float, float, float], count: int):
    """`count` successive `_iteration`s as one function (one compiled graph, so the per-call
    overhead is paid once): (any attempt non-finite, their records, the state after them). With
    a non-finite attempt the caller discards the result and advances by one `_iteration` (which
    redoes such attempts with a tiny step) before calling again."""
    records, bad = [], None
    for _ in range(count):
        bad_now, record, s = _iteration(solver, f, s, limits, None)
        bad = bad_now if bad is None else bad | bad_now
        records.append(record)
    return bad.any(), records, s


def _compacted_size(unfinished: int, rows: int) -> int:
    """The number of rows to continue with: `rows` while more than half of them are unfinished,
    else the smallest power of two >= unfinished (finished rows fill the rest and idle)."""
    if unfinished == 0 or 2 * unfinished > rows:
        return rows
    return 1 << (unfinished - 1).bit_length()


def _where_tree(mask: torch.Tensor, new, old):
    """Elementwise choice between two structures of tensors with leading dim B (None stays None)."""
    if new is None:
        return None
    new_leaves, spec = tree_flatten(new)
    return tree_unflatten([torch.where(mask, a, b) for a, b in zip(new_leaves, tree_flatten(old)[0])], spec)


class Positions(NamedTuple):
    """Where the outputs t_out[1:] fall: index (B, N - 1) of the step whose dense output covers each
    one, theta (B, N - 1) its fraction of that step, at_end (B, N - 1) whether it is the step's end."""

    index: np.ndarray
    theta: np.ndarray
    at_end: np.ndarray


class Records(NamedTuple):
    """Every attempted step of `integrate`, in iteration order (R rows): its start time and step
    (numpy), and its tensors y_old, y_new (R, n) and dense output (a structure of (R, ...)
    tensors). `table` lists each trajectory's accepted rows in order, trajectory after
    trajectory, `counts` (B,) how many each has."""

    t_old: np.ndarray
    h_try: np.ndarray
    y_old: torch.Tensor
    y_new: torch.Tensor
    dense: Any
    table: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, steps: list, n_traj: int) -> "Records":
        """From the loop's per-iteration (rows, accepted, t_old, h_try, y_old, y_new, dense)."""
        column = lambda i: torch.cat([s[i] for s in steps]).squeeze(1).cpu().numpy()  # noqa: E731
        trajectory, accepted = torch.cat([s[0] for s in steps]).cpu().numpy(), column(1)
        per_trajectory = [np.flatnonzero(accepted & (trajectory == b)) for b in range(n_traj)]
        spec = tree_flatten(steps[0][6])[1]
        dense = tree_unflatten([torch.cat(leaves) for leaves in zip(*(tree_flatten(s[6])[0] for s in steps))], spec)
        return cls(
            column(2), column(3), torch.cat([s[4] for s in steps]),
            torch.cat([s[5] for s in steps]), dense, np.concatenate(per_trajectory),
            np.array([len(its) for its in per_trajectory]),
        )

    def positions(self, ts_out: list[float]) -> Positions:
        """The output positions, `index` counting in `table` (the accepted steps)."""
        s_out = np.asarray(ts_out[1:])
        shape = (len(self.counts), len(s_out))
        index, theta, at_end = np.empty(shape, dtype=np.int64), np.empty(shape), np.empty(shape, dtype=bool)
        start = 0
        for b, count in enumerate(self.counts):
            its = self.table[start : start + count]
            t_new = self.t_old[its] + self.h_try[its]
            t_new[-1] = ts_out[-1]  # the last accepted step lands on t_end exactly
            j = np.minimum(np.searchsorted(t_new, s_out, side="left"), count - 1)
            index[b] = start + j
            at_end[b] = s_out == t_new[j]
            theta[b] = (s_out - self.t_old[its[j]]) / self.h_try[its[j]]
            start += count
        return Positions(index, theta, at_end)

    def outputs(self, solver: AbstractAdaptiveSolver, y0: torch.Tensor, ts_out: list[float]) -> torch.Tensor:
        """Every trajectory's states at ts_out, (N, B, n), from the dense output of its accepted
        steps (one gather from all rows)."""
        where = self.positions(ts_out)
        return interpolated(solver, y0, where._replace(index=self.table[where.index]), self.y_old, self.y_new,
                            self.dense)


def interpolated(solver, y0: torch.Tensor, where: Positions, y_old, y_new, dense) -> torch.Tensor:
    """y0 and the states at the output positions, (N, B, n), from steps given by their y_old,
    y_new (S, n) and dense output ((S, ...) tensors) that `where.index` counts in."""
    idx = torch.as_tensor(where.index, device=y0.device)
    gather = lambda x: x[idx]  # noqa: E731  S rows -> (B, N - 1, ...)
    # theta in float64: the interpolant's weights are formed in float64, as solve_adaptive's are
    th = torch.as_tensor(where.theta, dtype=torch.float64, device=y0.device).unsqueeze(-1)
    ends = gather(y_new)
    mid = solver.interpolate(gather(y_old), ends, tree_map(gather, dense), th).to(y0.dtype)
    out = torch.where(torch.as_tensor(where.at_end, device=y0.device).unsqueeze(-1), ends, mid)
    return torch.cat([y0.unsqueeze(0), out.transpose(0, 1)])
