"""solve_independent: B trajectories in one batched loop, each with its own step-size control,
give what each gives solved alone by solve_adaptive (same steps, same rejections, same outputs
and gradients); the step budget; the forward-mode Jacobian that Rodas5P uses for networks."""

import math

import pytest
import torch

import stiffbench.solvers._compile as _compile
from stiffbench.nn import BatchedMLP, TimeMLPField
from stiffbench.solvers._adaptive import StepLimitExceeded, solve_adaptive
from stiffbench.solvers.independent import _compacted_size, solve_independent
from stiffbench.solvers.rodas5p import Rodas5P
from stiffbench.solvers.tsit5 import Tsit5

F64 = torch.float64
SOLVERS = {"tsit5": Tsit5, "rodas5p": Rodas5P}
MU = (1.0, 5.0, 20.0)  # van der Pol stiffness per trajectory: very different step sequences


def van_der_pol(mu):
    """Forced van der Pol, one mu per trajectory; t a float, 0-d tensor or per-trajectory (B, 1)."""
    mu = torch.tensor(mu, dtype=F64).reshape(-1, 1)

    def f(t, y):
        x, v = y[..., :1], y[..., 1:]
        forcing = 0.1 * torch.sin(torch.as_tensor(t, dtype=F64)) * torch.ones_like(x)
        return torch.cat([v, mu * (1 - x**2) * v - x + forcing], -1)

    return f


@pytest.mark.slow
@pytest.mark.parametrize("name", SOLVERS)
def test_each_trajectory_equals_its_own_solve(name):
    y0 = torch.tensor([[2.0, 0.0], [1.5, 0.5], [2.0, -1.0]], dtype=F64, requires_grad=True)
    t_out = torch.linspace(0, 5, 51, dtype=F64).tolist()
    batch = solve_independent(SOLVERS[name](), van_der_pol(MU), y0, t_out, rtol=1e-6, atol=1e-8)
    assert batch.shape == (51, 3, 2)
    grads = torch.autograd.grad(batch.square().sum(), y0)[0]
    steps = []
    for b, mu in enumerate(MU):
        y0_b = y0[b : b + 1].detach().clone().requires_grad_()
        alone = solve_adaptive(SOLVERS[name](), van_der_pol([mu]), y0_b, t_out, rtol=1e-6, atol=1e-8)
        steps.append(alone.n_steps)
        assert alone.n_rejected > 0 or b > 0  # the comparison covers rejected steps
        torch.testing.assert_close(batch[:, b], alone.ys[:, 0], rtol=1e-13, atol=1e-13)
        grad_b = torch.autograd.grad(alone.ys.square().sum(), y0_b)[0]
        torch.testing.assert_close(grads[b], grad_b[0], rtol=1e-11, atol=1e-11)
    assert len(set(steps)) > 1  # the trajectories really took different step sequences


def restricting(solver_cls, mu, calls=None):
    """A `restrict` for van_der_pol(mu) that records the rows it is asked for."""

    def restrict(rows):
        if calls is not None:
            calls.append(rows.tolist())
        return solver_cls(), van_der_pol([mu[i] for i in rows.tolist()])

    return restrict


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("per_call", [1, 3])
def test_step_budget_counts_each_trajectory(compact, per_call):
    y0 = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]], dtype=F64)
    t_out = [0.0, 5.0]
    easy = solve_adaptive(Tsit5(), van_der_pol([1.0]), y0[:1], t_out, rtol=1e-6, atol=1e-8)
    budget = easy.n_steps + easy.n_rejected
    mu = [1.0, 1.0, 1.0]
    solve_independent(Tsit5(), van_der_pol(mu), y0, t_out, rtol=1e-6, atol=1e-8, max_steps=budget,
                      restrict=restricting(Tsit5, mu) if compact else None, iterations_per_call=per_call)
    mu = [1.0, 1.0, 20.0]  # with compaction trajectory 2 is row 0 of the last batch: the message names 2
    with pytest.raises(StepLimitExceeded, match="trajectory 2"):
        solve_independent(Tsit5(), van_der_pol(mu), y0, t_out, rtol=1e-6, atol=1e-8, max_steps=budget,
                          restrict=restricting(Tsit5, mu) if compact else None, iterations_per_call=per_call)


@pytest.mark.parametrize(
    "unfinished, rows, expected",
    [(6, 10, 10), (5, 10, 8), (3, 8, 4), (2, 4, 2), (1, 10, 1), (1, 2, 1), (1, 1, 1), (0, 10, 10)],
)
def test_compacted_size(unfinished, rows, expected):
    """Shrink only once at most half the rows are unfinished, to a power of two that holds them."""
    assert _compacted_size(unfinished, rows) == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", SOLVERS)
def test_finished_trajectories_leaving_the_batch_change_nothing(name):
    """With `restrict`, the batch shrinks as trajectories finish (to 2 rows, then the slowest alone),
    and states and gradients are bitwise those of the full-batch loop."""
    mu = (1.0, 1.5, 2.0, 3.0, 30.0)
    y0 = torch.tensor([[2.0, 0.0], [1.5, 0.5], [2.0, -1.0], [1.0, 1.0], [2.0, 0.0]], dtype=F64, requires_grad=True)
    t_out = torch.linspace(0, 5, 51, dtype=F64).tolist()
    full = solve_independent(SOLVERS[name](), van_der_pol(mu), y0, t_out, rtol=1e-6, atol=1e-8)
    calls = []
    compact = solve_independent(SOLVERS[name](), van_der_pol(mu), y0, t_out, rtol=1e-6, atol=1e-8,
                                restrict=restricting(SOLVERS[name], mu, calls))
    assert len(calls) >= 2 and len(calls[-1]) == 1
    assert all(len(a) > len(b) for a, b in zip(calls, calls[1:]))
    assert torch.equal(compact, full)
    grads = [torch.autograd.grad(out.square().sum(), y0)[0] for out in (compact, full)]
    assert torch.equal(grads[0], grads[1])


@pytest.mark.slow
@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("compact", [False, True])
def test_several_iterations_per_call_change_nothing(name, compact):
    """3 attempts per call (the batch shrinking only between calls) against 1: the same
    operations in the same order, so states and gradients are bitwise equal (eager)."""
    mu = (1.0, 1.5, 2.0, 3.0, 30.0)
    y0 = torch.tensor([[2.0, 0.0], [1.5, 0.5], [2.0, -1.0], [1.0, 1.0], [2.0, 0.0]], dtype=F64, requires_grad=True)
    t_out = torch.linspace(0, 5, 51, dtype=F64).tolist()
    restrict = restricting(SOLVERS[name], mu) if compact else None
    outs = [
        solve_independent(SOLVERS[name](), van_der_pol(mu), y0, t_out, rtol=1e-6, atol=1e-8, restrict=restrict,
                          iterations_per_call=k)
        for k in (1, 3)
    ]
    assert torch.equal(outs[0], outs[1])
    grads = [torch.autograd.grad(out.square().sum(), y0)[0] for out in outs]
    assert torch.equal(grads[0], grads[1])


def test_trivial_span_and_shape_checks():
    y0 = torch.ones(2, 2, dtype=F64)
    assert solve_independent(Tsit5(), van_der_pol(MU[:2]), y0, [1.0]).shape == (1, 2, 2)
    with pytest.raises(ValueError, match=r"shape \(B, n\)"):
        solve_independent(Tsit5(), van_der_pol(MU[:1]), y0[0], [0.0, 1.0])
    with pytest.raises(ValueError, match="iterations_per_call must be at least 1"):
        solve_independent(Tsit5(), van_der_pol(MU[:2]), y0, [0.0, 1.0], iterations_per_call=0)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_network_jet_equals_reverse_mode_derivatives(layer_norm):
    """TimeMLPField.jet (forward mode) against Rodas5P's reverse-mode (f, J, f_t), per-model times."""
    mlp = BatchedMLP([4, 8, 16, 3], [0, 1], layer_norm, F64)
    ws, bs = mlp.folded_layers()
    z_shift = torch.randn(2, 1, 3, dtype=F64)
    t_shift = torch.rand(2, 1, 1, dtype=F64)
    field = TimeMLPField(layer_norm)
    net = field.prepare((ws[0][:, :3], *ws[1:], *bs, ws[0][:, 3:], z_shift, t_shift))
    y = torch.randn(2, 3, dtype=F64)
    t = torch.tensor([[0.3], [1.7]], dtype=F64)
    f = lambda s, z: field.evaluate(net, s, z.unsqueeze(1))[0].squeeze(1)  # noqa: E731
    f0, J, f_t = Rodas5P().derivatives(f, t, y)
    out, J_fwd, f_t_fwd = field.jet(net, t, y.unsqueeze(1))
    torch.testing.assert_close(out.squeeze(1), f0, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(J_fwd, J, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f_t_fwd, f_t, rtol=1e-12, atol=1e-12)
    # finite differences on one entry of J, as an independent check of both
    eps = 1e-6
    shifted = y.clone()
    shifted[:, 1] += eps
    torch.testing.assert_close((f(t, shifted) - f(t, y)) / eps, J[:, :, 1], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_compiled_step_equals_eager():
    y0 = torch.tensor([[2.0, 0.0], [1.5, 0.5]], dtype=F64, requires_grad=True)
    t_out = [0.0, 0.5, 1.0]
    eager = solve_independent(Tsit5(), van_der_pol(MU[:2]), y0, t_out, rtol=1e-6, atol=1e-8)
    compiled = solve_independent(Tsit5(), van_der_pol(MU[:2]), y0, t_out, rtol=1e-6, atol=1e-8, compile=True)
    assert not _compile.compile_failed, _compile.compile_failed
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(out.square().sum(), y0)[0] for out in (compiled, eager)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


def test_inductor_c_shim_notice_is_filtered_and_nothing_else():
    import logging

    record = lambda msg: logging.LogRecord("torch._inductor.ir", logging.WARNING, "ir.py", 1, msg, None, None)  # noqa: E731
    assert not _compile._no_c_shim_notice(record("aten.linalg_inv_ex.default is missing a c-shim implementation, x"))
    assert _compile._no_c_shim_notice(record("some other inductor warning"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("per_call", [1, 3])
def test_overflowing_attempts_are_redone_and_do_not_poison_gradients(name, per_call, monkeypatch):
    """y' = -y whose field overflows (y * inf) at stage states more than 1e-4 off the exact
    solution, as the stages of a too-large attempt are: those attempts are redone with a tiny step
    (without that, 0 * inf in the rejected branch's backward makes the gradient NaN), and the
    solution and its gradient d/dy0 sum_k y(t_k) = 1 + e^-0.5 + e^-1 stay exact. With several
    attempts per call, a call holding such an attempt is discarded and redone one by one."""
    import stiffbench.solvers.independent as independent

    redone = []
    original = independent._iteration

    def spy(solver, f, state, limits, redo):
        redone.append(redo is not None)
        return original(solver, f, state, limits, redo)

    monkeypatch.setattr(independent, "_iteration", spy)
    y0_exact = torch.tensor([[1.0], [2.0]], dtype=F64)

    def f(t, y):
        off = (y - y0_exact * torch.exp(-torch.as_tensor(t, dtype=F64))).abs() > 1e-4
        return y * torch.where(off, torch.inf, -1.0)

    y0 = y0_exact.clone().requires_grad_()
    t_out = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    out = solve_independent(SOLVERS[name](), f, y0, t_out.tolist(), rtol=1e-6, atol=1e-8,
                            iterations_per_call=per_call)
    assert any(redone)
    torch.testing.assert_close(out, y0_exact * torch.exp(-t_out).reshape(3, 1, 1), rtol=0, atol=1e-9)
    grad = torch.autograd.grad(out.sum(), y0)[0]
    torch.testing.assert_close(grad, torch.full((2, 1), 1 + math.exp(-0.5) + math.exp(-1.0), dtype=F64), rtol=1e-8, atol=0)


@pytest.mark.parametrize("layer_norm", [True, False])
def test_rodas5p_step_parameter_gradient_through_the_jet_matches_finite_differences(layer_norm):
    """Backprop through a Rosenbrock step differentiates J, so the forward-mode jet must be
    differentiable in the parameters, LayerNorm statistics included (torch.native_layer_norm's rstd
    output is not, and once cost the paper network's gradient 0.015-0.05 %)."""
    gen = torch.Generator().manual_seed(3)
    mlp = BatchedMLP([4, 8, 16, 3], [0, 1], layer_norm, F64)
    field = TimeMLPField(layer_norm)
    z_shift = torch.randn(2, 1, 3, dtype=F64, generator=gen)
    t_shift = torch.rand(2, 1, 1, dtype=F64, generator=gen)
    y = torch.tensor([[0.3, -0.2, 0.5], [0.1, 0.4, -0.3]], dtype=F64)
    t, h = torch.tensor([[0.3], [1.7]], dtype=F64), torch.tensor([[0.2], [0.1]], dtype=F64)

    def step_loss():
        ws, bs = mlp.folded_layers()
        net = field.prepare((ws[0][:, :3], *ws[1:], *bs, ws[0][:, 3:], z_shift, t_shift))
        f = lambda s, z: field.evaluate(net, s, z.unsqueeze(1))[0].squeeze(1)  # noqa: E731

        def jet(s, z):
            out, J, f_t = field.jet(net, s, z.unsqueeze(1))
            return out.squeeze(1), J, f_t

        solver = Rodas5P(jet=jet)
        solver.init(f, t, y)
        return solver.step(f, t, y, h, None).y.square().sum()

    weight = mlp.weights[1]
    grad = torch.autograd.grad(step_loss(), weight)[0]
    eps = 1e-6
    for index in [(0, 0, 0), (1, 5, 3), (0, 15, 7)]:
        with torch.no_grad():
            weight[index] += eps
            up = step_loss()
            weight[index] -= 2 * eps
            down = step_loss()
            weight[index] += eps
        assert float(grad[index]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-6, abs=1e-9)


def test_compiled_calls_recompute_activations_and_restore_the_setting(monkeypatch):
    """The partition (what the backward pass saves) is chosen when a call compiles, under
    ACTIVATION_MEMORY_BUDGET; other compiled code in the process keeps torch's setting."""
    import torch._functorch.config as functorch_config

    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: lambda *a: seen.append(functorch_config.activation_memory_budget))
    before = functorch_config.activation_memory_budget
    _compile.compiled(lambda x: x)(1.0)
    assert seen == [_compile.ACTIVATION_MEMORY_BUDGET] == [0.0]
    assert functorch_config.activation_memory_budget == before == 1.0
