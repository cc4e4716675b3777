"""One training epoch of each built-in method on the HH task (1469 observations, 5 seeds, float32,
eager), stiffbench's compiled path on the paper suite's 25-model Heun batch (timed runs only), and
the adaptive batch's epoch from initial and from trained weights."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stiffbench.api import FitConfig
from stiffbench.bench import paper_members
from stiffbench_methods.pinode_sr import PINODESR
from stiffbench_methods.vanilla_node import VanillaNODE
from stiffbench_methods.vanilla_pinn import VanillaPINN
from stiffbench_systems.hh import HodgkinHuxley

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

SEEDS = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def hh_task():
    system = HodgkinHuxley()
    return replace(system.training_task(), physics=system.torch_vector_field())


@pytest.mark.benchmark(group="training-epoch")
@pytest.mark.parametrize("method_cls", [VanillaNODE, PINODESR, VanillaPINN], ids=lambda c: c.name)
def test_one_epoch(benchmark, method_cls, hh_task):
    method = method_cls({"compile": False} if method_cls is not VanillaPINN else {})
    model = benchmark(method.fit, hh_task, SEEDS, FitConfig(epochs=1))
    assert model.loss_history.shape == (1, len(SEEDS)) and np.isfinite(model.loss_history).all()


@pytest.mark.benchmark(group="training-epoch")
def test_one_epoch_paper_batch_compiled(benchmark):
    if benchmark.disabled:
        pytest.skip("compiles for ~30 s: timed runs only (--benchmark-enable)")
    members = paper_members(25, "float32", True, None)
    model = benchmark.pedantic(PINODESR.fit_batch, (members, FitConfig(epochs=1)), rounds=3, warmup_rounds=1)
    assert model.loss_history.shape == (1, 25) and np.isfinite(model.loss_history).all()


def adaptive_objective(solver: str, hh_task, compile: bool):
    """vanilla_node's objective on the paper suite's adaptive batch: both normalisation variants x 5 seeds."""
    from stiffbench.api import BatchMember

    members = [BatchMember(VanillaNODE.Params(solver=solver, normalise=n), hh_task, s) for n in (True, False) for s in SEEDS]
    return VanillaNODE.objective(members, "cpu", compile)


def per_model_losses(field, batch, solver: str) -> "torch.Tensor":
    """The same losses with each model in its own autograd solve (solve_adaptive through
    odeint_with_grad), the baseline that solve_independent's batched loop is timed against."""
    import torch

    from stiffbench.solvers.adjoint import odeint_with_grad
    from stiffbench_methods._neural_ode import data_loss

    params = field.rollout_params()
    times = batch.times
    out = []
    for b in range(len(batch.y0)):
        ps = tuple(p[b : b + 1] for p in params)
        ys = odeint_with_grad(field.evaluator(ps), batch.y0[b : b + 1], times, ps, solver, "backprop", rtol=1e-5, atol=1e-5)
        out.append(ys.transpose(0, 1))
    return data_loss(torch.cat(out), batch.z, "sum_states", batch.obs_std())


@pytest.mark.benchmark(group="adaptive-training-epoch")
@pytest.mark.parametrize("solver", ["tsit5", "rodas5p"])
@pytest.mark.parametrize("path", ["per_model", "batched", "batched_compiled"])
def test_adaptive_epoch(benchmark, solver, path, hh_task):
    """Forward + backward of one epoch of the 10-model adaptive batch from its initial weights:
    per-model solves (baseline), one batched solve with per-model step control, and that compiled."""
    if path == "batched_compiled" and benchmark.disabled:
        pytest.skip("compiles for minutes: timed runs only (--benchmark-enable)")
    field, batch, losses = adaptive_objective(solver, hh_task, path == "batched_compiled")

    def epoch():
        field.zero_grad()
        loss = per_model_losses(field, batch, solver) if path == "per_model" else losses()
        loss.sum().backward()
        return loss.detach()

    if path == "batched_compiled":
        loss = benchmark.pedantic(epoch, rounds=3, warmup_rounds=1)
    else:
        loss = benchmark(epoch)
    assert loss.shape == (10,) and np.isfinite(loss.numpy()).all()
    # every path: the same models, the same loss; in float32 a reordered sum can flip an accept/reject
    # decision whose error estimate is within rounding of 1, which moves the loss at the tolerance level
    expected = per_model_losses(field, batch, solver).detach()
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-3)


TRAINED_RODAS5P = Path(__file__).parent / "data" / "rodas5p-paper-batch-epoch1406.pt"


def trained_rodas5p(hh_task, compile: bool):
    """(field, losses) of the paper suite's Rodas5P batch at its epoch-1406 weights."""
    import torch

    field, batch, losses = adaptive_objective("rodas5p", hh_task, compile)
    field.load_state_dict(torch.load(TRAINED_RODAS5P, weights_only=True))
    return field, losses


@pytest.mark.benchmark(group="adaptive-training-epoch-trained")
@pytest.mark.parametrize("gradient", ["batched_adjoint", "backprop_through_loop"])
def test_trained_rodas5p_epoch(benchmark, gradient, hh_task, monkeypatch):
    """Forward + backward of one epoch of the paper suite's Rodas5P batch (both normalisations x
    seeds 0-4) at its weights after 1406 of 5000 epochs (the training checkpoint's network, float64),
    where one model needs ~770 accepted steps per epoch and the other nine 57-87: the training path
    (`batched_adjoint`: the forward loop without autograd, then the accepted steps linearised in
    batches) against autograd through the loop. Timed runs compile (minutes); the smoke run is eager."""
    import torch

    import stiffbench_methods._neural_ode as neural_ode
    from stiffbench.solvers.batched_adjoint import solve_independent_backprop

    field, losses = trained_rodas5p(hh_task, compile=not benchmark.disabled)
    reference = losses().detach()
    if gradient == "backprop_through_loop":
        monkeypatch.setattr(neural_ode, "solve_independent_adjoint", solve_independent_backprop)

    def epoch():
        field.zero_grad()
        loss = losses()
        loss.sum().backward()
        return loss.detach()

    loss = benchmark.pedantic(epoch, rounds=3, warmup_rounds=1) if not benchmark.disabled else benchmark(epoch)
    # the same loop either way (the same states; compiled graphs compiled apart may round differently)
    torch.testing.assert_close(loss, reference, rtol=0 if benchmark.disabled else 1e-9, atol=0)
    assert all(torch.isfinite(p.grad).all() for p in field.parameters())


OVERHEAD_VARIANTS = {  # name: (gc frozen, activation memory budget, iterations per call)
    "as_trained": (True, 0.0, None),
    "gc_default": (False, 0.0, None),
    "save_activations": (True, 1.0, None),
    "one_iteration_per_call": (True, 0.0, 1),
}


@pytest.mark.benchmark(group="adaptive-training-epoch-trained-overheads")
@pytest.mark.parametrize("variant", OVERHEAD_VARIANTS)
def test_trained_rodas5p_epoch_overheads(benchmark, variant, hh_task, monkeypatch):
    """The trained epoch after compilation as the training loop runs it (`as_trained`: objects
    frozen out of the cyclic garbage collector after the first epoch, see stiffbench.gc_freeze;
    activations recomputed in the backward pass, `_compile.ACTIVATION_MEMORY_BUDGET` 0;
    `independent.ITERATIONS_PER_CALL` attempts per compiled call), against each of those undone:
    Python's default collection, which traverses everything torch.compile left behind whenever a
    full collection falls in an epoch (`gc_default`); AOTAutograd's default of saving activations
    (`save_activations`, budget 1); one attempt per compiled call (`one_iteration_per_call`).
    Each variant compiles afresh (minutes for the 4-iteration calls)."""
    import gc

    import torch

    import stiffbench.solvers._compile as _compile
    import stiffbench.solvers.independent as independent

    if benchmark.disabled:
        pytest.skip("compiles for minutes; the mechanisms are tested in tests/: timed runs only")
    frozen, budget, per_call = OVERHEAD_VARIANTS[variant]
    monkeypatch.setattr(_compile, "ACTIVATION_MEMORY_BUDGET", budget)
    if per_call is not None:
        monkeypatch.setattr(independent, "ITERATIONS_PER_CALL", per_call)
    torch._dynamo.reset()  # compile afresh under these settings
    field, losses = trained_rodas5p(hh_task, compile=True)

    def epoch():
        field.zero_grad()
        loss = losses()
        loss.sum().backward()
        return loss.detach()

    reference = epoch()  # compiles
    if frozen:
        gc.collect()
        gc.freeze()
    try:
        loss = benchmark.pedantic(epoch, rounds=8)
    finally:
        gc.unfreeze()
    assert loss.shape == (10,) and np.isfinite(loss.numpy()).all()
    assert torch.equal(loss, reference)  # deterministic: every round of a variant gives its first loss
