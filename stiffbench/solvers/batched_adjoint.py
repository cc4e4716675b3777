"""The gradient of `solve_independent` by a discrete adjoint batched over the accepted steps.

Backprop through the adaptive loop (plain autograd on `solve_independent`) runs its backward pass
one attempted step after another on a small batch, through rejected attempts too (they enter the
graph through untaken `torch.where` branches, so their backward computes zeros). For a model that
needs thousands of steps that sequential chain of small network evaluations sets the training
time. Here the forward loop runs without autograd and keeps each trajectory's accepted steps
(t_n, h_n, y_n); the backward pass then linearises all of a model's steps at once, as one batch of
S samples per model (the network's products become GEMMs over hundreds of rows):

- the step's derivatives in its input state, M_n = d y_{n+1} / d y_n and D_n = d dense_n / d y_n,
  by forward mode along the n state directions (one `jvp`, vmapped over the directions; the
  step's rows are independent, so a direction applied to every sample gives every step's column);
- the adjoint recursion a_{n-1} = g_new_{n-1} + g_old_n + D_n^T g_dense_n + M_n^T a_n, where the g
  are the cotangents of the outputs' interpolation: a loop of n x n products, the only
  sequential part;
- the parameter gradient sum_n (d step_n / d theta)^T (a_n, g_dense_n): one vjp over all steps.

This is the gradient backprop gives (the exact gradient of each trajectory's discrete solution for
its accepted step sequence; step-size decisions are constants in both), with the arithmetic
reordered, so the two agree to rounding.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.func import jvp, vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from stiffbench.solvers._adaptive import AbstractAdaptiveSolver, Field
from stiffbench.solvers._compile import maybe_compiled
from stiffbench.solvers.independent import Records, checked_times, integrate, interpolated, solve_independent

with warnings.catch_warnings():  # forward mode imports this on first use, which warns about torch.jit.script
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
    import torch._decomp.decompositions_for_jvp  # noqa: F401

Build = Callable[[tuple[torch.Tensor, ...]], tuple[AbstractAdaptiveSolver, Field]]

SAMPLES_PER_PASS = 128
"""Steps linearised in one (compiled) pass, one model per pass, its last pass padded to this width,
so that each of the two linearisation functions compiles one shape per process. At 128 rows the
paper network's passes cost about as much per step as one pass over thousands of steps (measured
at the trained Rodas5P weights), while the forward-mode pass's activations (n tangents per sample)
stay small. Packing several models of similar step counts into one pass instead
compiled one pair of graphs per group size, 20 for the paper's 10-model batch, and measured
slower (docs/design.md)."""


def solve_independent_adjoint(
    build: Build,
    params: Sequence[torch.Tensor],
    y0: torch.Tensor,
    t_out: Sequence[float] | torch.Tensor,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    compile: bool = False,
    iterations_per_call: int | None = None,
) -> torch.Tensor:
    """The states of `solve_independent(*build(params), y0, t_out, restrict=...)`, shape
    (len(t_out), B, n), differentiable with respect to params and y0 through the batched adjoint.

    build(params) -> (solver, f) for the models whose parameters are `params` (each of leading
    dim B, row b for trajectory b); the loop calls it on row subsets as finished trajectories
    leave the batch. For the linearisation f (and the solver's derivatives, e.g. Rodas5P's jet)
    must also take M samples per model: y (B, M, n) with times and steps of shape (B, M, 1).
    """
    ts_out = checked_times(y0, t_out)
    if ts_out[-1] == ts_out[0]:
        return y0.unsqueeze(0)
    options = dict(rtol=rtol, atol=atol, max_steps=max_steps, compile=compile, iterations_per_call=iterations_per_call)
    return _BatchedAdjoint.apply((build, ts_out, options), y0, *params)


def solve_independent_backprop(
    build: Build, params: Sequence[torch.Tensor], y0: torch.Tensor, t_out: Sequence[float] | torch.Tensor, **options
) -> torch.Tensor:
    """The same states with `solve_independent_adjoint`'s signature, differentiable by plain
    autograd through the loop (every attempt recorded; the backward pass one attempt after
    another). Cheaper where steps are few and cheap (an explicit solver, small step counts): it
    compiles much less and pads nothing; options as `solve_independent`."""
    restrict = lambda rows: build(tuple(p[rows] for p in params))  # noqa: E731
    return solve_independent(*build(params), y0, t_out, restrict=restrict, **options)


class _BatchedAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        build, ts_out, options = spec
        params = tuple(p.detach() for p in params)
        restrict = lambda rows: build(tuple(p[rows] for p in params))  # noqa: E731
        solver, records = integrate(*build(params), y0.detach(), ts_out, restrict=restrict, **options)
        ctx.spec, ctx.solver, ctx.records = spec, solver, records
        ctx.save_for_backward(y0, *params)
        return records.outputs(solver, y0.detach(), ts_out)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        build, ts_out, options = ctx.spec
        compile = options["compile"]
        y0, *params = ctx.saved_tensors
        records: Records = ctx.records
        steps = _Accepted.of(records)
        cotangents = _output_cotangents(ctx.solver, y0, records.positions(ts_out), steps, g)
        grad_y0 = g[0].clone()
        grads = [torch.zeros_like(p) if ctx.needs_input_grad[2 + i] else None for i, p in enumerate(params)]
        for b in range(len(records.counts)):  # one model per pass (SAMPLES_PER_PASS)
            sample = _sample_index(records.counts, b).to(y0.device)
            theta = tuple(p[b : b + 1] for p in params)
            chunks = sample.split(SAMPLES_PER_PASS, dim=1)
            columns, from_dense = zip(*(_state_derivatives(build, theta, steps, cotangents, c, compile) for c in chunks))
            adjoints, grad_start = _adjoint_recursion(
                torch.cat(columns, 1), torch.cat(from_dense, 1), _take(cotangents.y_new, sample), sample >= 0
            )
            grad_y0[b : b + 1] += grad_start
            start = 0
            for c in chunks:
                part = _parameter_gradient(build, theta, [g is not None for g in grads], steps, cotangents, c,
                                           adjoints[:, start : start + c.shape[1]], compile)
                start += c.shape[1]
                for i, grad in enumerate(part):
                    if grads[i] is not None and grad is not None:
                        grads[i][b : b + 1] += grad
        return None, grad_y0 if ctx.needs_input_grad[1] else None, *grads


class _Accepted(NamedTuple):
    """The accepted steps in `Records.table` order: t (S, 1) and h (S, 1) in the state's dtype,
    y_old and y_new (S, n), the dense output's leaves (S, ...) and its structure."""

    t: torch.Tensor
    h: torch.Tensor
    y_old: torch.Tensor
    y_new: torch.Tensor
    dense: list
    spec: Any

    @classmethod
    def of(cls, records: Records) -> "_Accepted":
        table = torch.as_tensor(records.table, device=records.y_old.device)
        as_column = lambda x: torch.as_tensor(  # noqa: E731
            x[records.table], dtype=records.y_old.dtype, device=table.device
        ).unsqueeze(1)
        dense, spec = tree_flatten(tree_map(lambda x: x[table], records.dense))
        return cls(as_column(records.t_old), as_column(records.h_try), records.y_old[table], records.y_new[table],
                   dense, spec)

    def at(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, h, y_old) at the sample positions (G, S, ...); padding repeats the first step."""
        index = sample.clamp(min=0)
        return self.t[index], self.h[index], self.y_old[index]


class _Cotangents(NamedTuple):
    """Cotangents of the accepted steps' y_old, y_new (S, n) and dense leaves (None where a leaf is
    not floating point)."""

    y_old: torch.Tensor
    y_new: torch.Tensor
    dense: list


def _output_cotangents(solver, y0, where, steps: _Accepted, g: torch.Tensor) -> _Cotangents:
    """The accepted steps' cotangents from those of the outputs (their interpolation,
    differentiated by autograd: one gather and a few products)."""
    leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in (steps.y_old, steps.y_new, *steps.dense)]
    with torch.enable_grad():
        dense = tree_unflatten(leaves[2:], steps.spec)
        out = interpolated(solver, y0.detach(), where, leaves[0], leaves[1], dense)[1:]
        wanted = [x for x in leaves if x.requires_grad]
        found = iter(torch.autograd.grad(out, wanted, g[1:], allow_unused=True))
    grads = [next(found) if x.requires_grad else None for x in leaves]
    grads = [torch.zeros_like(x) if d is None and x.is_floating_point() else d for x, d in zip(leaves, grads)]
    return _Cotangents(grads[0], grads[1], grads[2:])


def _sample_index(counts: np.ndarray, b: int) -> torch.Tensor:
    """(1, W) positions in the accepted-step table of trajectory b's steps, -1 padding; W is its
    step count rounded up to a multiple of SAMPLES_PER_PASS."""
    start, count = int(np.sum(counts[:b])), int(counts[b])
    index = np.full((1, -(-count // SAMPLES_PER_PASS) * SAMPLES_PER_PASS), -1, dtype=np.int64)
    index[0, :count] = start + np.arange(count)
    return torch.as_tensor(index)


def _take(x: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """x's rows at the sample positions, zero at the padding: (G, S, ...)."""
    taken = x[sample.clamp(min=0)]
    return torch.where((sample >= 0).reshape(*sample.shape, *(1,) * (x.dim() - 1)), taken, 0)


def _step_outputs(build: Build, theta: tuple[torch.Tensor, ...], t: torch.Tensor, h: torch.Tensor, y: torch.Tensor):
    """(y_new, dense leaves) of the steps from states y (G, S, n) at times t and with steps h
    (G, S, 1), with the models' parameters theta."""
    solver, f = build(theta)
    out = solver.step(f, t, y, h, solver.init(f, t, y))
    return out.y, tree_flatten(out.dense)[0]


def _state_tangents(build: Build, theta, t, h, y):
    """The steps' derivatives along each of the n state directions, applied to every sample at
    once (the samples are independent): (d y_new (n, G, S, n), d dense leaves (n, G, S, ...))."""
    n = y.shape[-1]
    units = torch.eye(n, dtype=y.dtype, device=y.device).reshape(n, 1, 1, n).expand(n, *y.shape)
    return vmap(lambda v: jvp(lambda z: _step_outputs(build, theta, t, h, z), (y,), (v,))[1])(units)


def _state_derivatives(build, theta, steps, cotangents, sample, compile: bool = False):
    """For each step of the chunk, M^T (G, S, n, n) and g_old + D^T g_dense (G, S, n), by forward
    mode along the n state directions."""
    d_new, d_dense = maybe_compiled(_state_tangents, compile, build, theta, *steps.at(sample))
    columns = d_new.permute(1, 2, 0, 3)  # [g, s, i, j] = dy_new_j / dy_i: M^T
    from_dense = _take(cotangents.y_old, sample)
    for d, g in zip(d_dense, cotangents.dense):
        if d.is_floating_point():
            from_dense = from_dense + (d * _take(g, sample)).flatten(3).sum(-1).permute(1, 2, 0)
    mask = (sample >= 0).reshape(*sample.shape, 1)
    return torch.where(mask.unsqueeze(-1), columns, 0), torch.where(mask, from_dense, 0)


def _adjoint_recursion(m_t: torch.Tensor, from_dense: torch.Tensor, g_new: torch.Tensor, valid: torch.Tensor):
    """a_s (G, S, n), the total cotangent of each step's y_new, by the backward recursion
    a_{s-1} = g_new_{s-1} + from_dense_s + M_s^T a_s (zero at the padding, whose m_t, from_dense
    and g_new are zero); and the cotangent of the start state, from_dense_0 + M_0^T a_0. In
    numpy: the recursion is S small products one after another."""
    m, e, gn = (x.detach().cpu().numpy() for x in (m_t, from_dense, g_new))
    a = np.zeros_like(gn)
    width = gn.shape[1]
    a[:, width - 1] = gn[:, width - 1]
    for s in range(width - 1, 0, -1):
        a[:, s - 1] = gn[:, s - 1] + e[:, s] + np.matmul(m[:, s], a[:, s, :, None])[..., 0]
    start = e[:, 0] + np.matmul(m[:, 0], a[:, 0, :, None])[..., 0]
    as_t = lambda x: torch.as_tensor(x, dtype=g_new.dtype, device=g_new.device)  # noqa: E731
    return torch.where(valid.unsqueeze(-1), as_t(a), 0), as_t(start)


def _parameter_gradient(build, theta, needed, steps, cotangents, sample, adjoints, compile: bool = False):
    """sum over the chunk's steps of (d step / d theta)^T (a, g_dense) for the parameters `needed`
    marks (None for the others), one vjp by autograd."""
    wanted = tuple(p.detach().requires_grad_(need) for p, need in zip(theta, needed))
    with torch.enable_grad():
        y_new, dense = maybe_compiled(_step_outputs, compile, build, wanted, *steps.at(sample))
        outputs, cots = [y_new], [adjoints]
        for d, g in zip(dense, cotangents.dense):
            if d.requires_grad:
                outputs.append(d)
                cots.append(_take(g, sample))
        inputs = [p for p in wanted if p.requires_grad]
        found = iter(torch.autograd.grad(outputs, inputs, cots, allow_unused=True))
    return [next(found) if p.requires_grad else None for p in wanted]
