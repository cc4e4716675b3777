"""torch.compile for the solvers' hot functions, with a one-time fallback to eager execution.

Compiling a fixed-shape step (inductor generates C++ on CPU) removes most of PyTorch's
per-operation overhead, which dominates the small-network rollouts of neural ODE training.
Where compilation fails (no C++ compiler, unsupported platform) the process warns once and runs
eagerly from then on: the same arithmetic, up to rounding.
"""

from __future__ import annotations

import functools
import logging
import warnings

import torch
import torch._functorch.config

compile_failed: list[str] = []  # the first compilation error of this process, if any


RECOMPILE_LIMIT = 64

ACTIVATION_MEMORY_BUDGET = 0.0
"""AOTAutograd's activation_memory_budget for the solvers' compiled functions: 0 saves the fewest
activations for the backward pass and recomputes the rest there. A Rodas5P iteration saves ~140
tensors (~180 KB for one model) per step, kept until the backward pass, and writing and reading
back that much fresh memory costs more than recomputing it: one epoch of the paper's Rodas5P batch
at trained weights takes 1.07 s instead of 1.32 s with bitwise-equal losses and gradients
(`pytest tests/bench/test_bench_training.py -k overheads --benchmark-enable`; docs/design.md)."""


@functools.cache
def compiled(fn):
    """fn compiled for static shapes, its activations recomputed in the backward pass as far as
    possible (`ACTIVATION_MEMORY_BUDGET`, applied per call, as the partition is chosen when a call
    compiles; the setting is not left on for other compiled code in the process). Each (solver,
    batch shape) pair is its own compilation, and a worker meets several (solve_independent's
    compacted batches, several batches per process): dynamo's default limit of 8 per function
    would silently fall back to eager, hence 64."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    logging.getLogger("torch._inductor.ir").addFilter(_no_c_shim_notice)
    compiled_fn = torch.compile(fn, dynamic=False, options={"cpp_wrapper": True})

    functorch_config = torch._functorch.config

    @functools.wraps(fn)
    def call(*args):
        # set and restore by hand: config.patch() costs ~18 us per call, this ~6 us (hot loop)
        previous = functorch_config.activation_memory_budget
        functorch_config.activation_memory_budget = ACTIVATION_MEMORY_BUDGET
        try:
            return compiled_fn(*args)
        finally:
            functorch_config.activation_memory_budget = previous

    return call


def _no_c_shim_notice(record: logging.LogRecord) -> bool:
    """Drops inductor's "missing a c-shim implementation, using proxy executor" warning: on CPU it
    is logged for every compiled Rodas5P step shape (linalg_inv has no C shim) and means only that
    the op is called through the dispatcher, at no cost to correctness."""
    return "missing a c-shim implementation" not in record.getMessage()


def maybe_compiled(fn, compile: bool, *args):
    """fn(*args), through torch.compile when asked and compilation has not failed before."""
    if compile and not compile_failed:
        try:
            return compiled(fn)(*args)
        except Exception as exc:  # eager gives the same numbers
            compile_failed.append(repr(exc))
            warnings.warn(f"torch.compile failed, running the solver eagerly: {exc!r}", RuntimeWarning)
    return fn(*args)
