"""Cost of the differentiable solvers on the true HH right-hand side and on the paper's neural one
(B = 5 trajectories, 200 steps of 0.01 ms through a spike's upstroke), forward only and forward +
backward (backprop through the fixed steps of Heun, RK4, Tsit5 and Rodas5P; `heun_adjoint` and
`heun_backsolve` are stiffbench's hand-written reverse sweeps; `*_independent` the adaptive training
solves with per-model step control). The neural field runs in float32 (the paper's training dtype), except under Rodas5P, which needs float64."""

import pytest
import torch

from stiffbench.nn import BatchedMLP, TimeMLPField
from stiffbench.solvers.heun import heun_adjoint_rollout
from stiffbench.solvers.heun_backsolve import heun_backsolve_rollout
from stiffbench.solvers.independent import solve_independent
from stiffbench.solvers.rodas5p import Rodas5P
from stiffbench.solvers.tsit5 import Tsit5
from stiffbench_systems.hh import HodgkinHuxley

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

B, N_STEPS, DT = 5, 200, 0.01
SOLVERS = ["heun", "rk4", "tsit5", "rodas5p"]
HH_ATOL = {"heun": 0.2}  # mV at the end, against the LSODA reference (default 1e-2)
NEURAL_DTYPE = {"rodas5p": torch.float64}


def rollout_fn(name: str):
    """The solver's fixed-step rollout (f, y0, t0, dt, n_steps); skips solvers not (yet) installed."""
    return getattr(pytest.importorskip(f"stiffbench.solvers.{name}"), f"{name}_rollout")


def hh_start() -> torch.Tensor:
    y0 = torch.tensor(HodgkinHuxley().params.y0, dtype=torch.float64)
    dv = torch.zeros(B, 4, dtype=torch.float64)
    dv[:, 0] = torch.linspace(0.0, 4.0, B)  # V0 from -65 to -61 mV
    return y0 + dv


def neural_field(dtype: torch.dtype):
    """The paper's MLP 5-64-128-64-4 (LayerNorm) for B models as a TimeMLPField and its parameters."""
    mlp = BatchedMLP([5, 64, 128, 64, 4], list(range(B)), True, dtype)
    ws, bs = mlp.folded_layers()
    shifts = (torch.zeros(B, 1, 4, dtype=dtype), torch.zeros(B, 1, 1, dtype=dtype))
    params = tuple(p.detach().requires_grad_() for p in (ws[0][:, :4], *ws[1:], *bs, ws[0][:, 4:]))
    return TimeMLPField(True), params + shifts


@pytest.mark.benchmark(group="solver-hh-forward")
@pytest.mark.parametrize("name", SOLVERS)
def test_hh_forward(benchmark, name):
    rollout, f, y0 = rollout_fn(name), HodgkinHuxley().torch_vector_field(), hh_start()
    with torch.no_grad():
        states = benchmark(rollout, f, y0, 0.0, DT, N_STEPS)
    reference = HodgkinHuxley().reference(N_STEPS * DT).y[-1]
    assert states.shape == (N_STEPS + 1, B, 4)
    torch.testing.assert_close(states[-1, 0], torch.as_tensor(reference), rtol=0, atol=HH_ATOL.get(name, 1e-2))


@pytest.mark.benchmark(group="solver-hh-backward")
@pytest.mark.parametrize("name", SOLVERS)
def test_hh_forward_backward(benchmark, name):
    rollout, f = rollout_fn(name), HodgkinHuxley().torch_vector_field()
    y0 = hh_start().requires_grad_()

    def run():
        v_end = rollout(f, y0, 0.0, DT, N_STEPS)[-1, :, 0]
        return v_end.detach(), torch.autograd.grad(v_end.sum(), y0)[0]

    v_end, grad = benchmark(run)
    assert grad.shape == (B, 4) and torch.isfinite(grad).all()
    with torch.no_grad():  # dV(T)/dV(0) against a forward difference
        shifted = rollout(f, y0 + torch.tensor([1e-6, 0, 0, 0], dtype=y0.dtype), 0.0, DT, N_STEPS)[-1, :, 0]
    torch.testing.assert_close(grad[:, 0], (shifted - v_end) / 1e-6, rtol=1e-3, atol=1e-4)


def neural_rollout(name: str):
    """rollout(field, params, y0 (B, n)) -> (B, N_STEPS + 1, n) through the named solver; the
    `_independent` names are the adaptive training solves (per-model step control, rtol = atol =
    1e-5, outputs at the N_STEPS + 1 grid times; Rodas5P with the forward-mode jet)."""
    if name == "heun_adjoint":
        return lambda field, params, y0: heun_adjoint_rollout(field, params, y0, 0.0, DT, N_STEPS)
    if name == "heun_backsolve":
        return lambda field, params, y0: heun_backsolve_rollout(field, params, y0, 0.0, DT, N_STEPS)
    if name.endswith("_independent"):
        return independent_rollout(name.removesuffix("_independent"))
    rollout = rollout_fn(name)

    def run(field, params, y0):
        net = field.prepare(params)
        states = rollout(lambda t, y: field.evaluate(net, t, y)[0], y0.unsqueeze(1), 0.0, DT, N_STEPS)
        return states.squeeze(2).transpose(0, 1)

    return run


def independent_rollout(solver: str):
    def run(field, params, y0):
        net = field.prepare(params)
        f = lambda t, y: field.evaluate(net, t, y.unsqueeze(1))[0].squeeze(1)  # noqa: E731
        if solver == "rodas5p":
            def jet(t, y):
                out, J, f_t = field.jet(net, t, y.unsqueeze(1))
                return out.squeeze(1), J, f_t
            method = Rodas5P(jet=jet)
        else:
            method = Tsit5()
        times = [k * DT for k in range(N_STEPS + 1)]
        return solve_independent(method, f, y0, times, rtol=1e-5, atol=1e-5).transpose(0, 1)

    return run


NEURAL = [*SOLVERS, "heun_adjoint", "heun_backsolve", "tsit5_independent", "rodas5p_independent"]


def neural_case(name):
    """(rollout, field, params, y0) for a solver on the neural HH right-hand side."""
    dtype = NEURAL_DTYPE.get(name.removesuffix("_independent"), torch.float32)
    field, params = neural_field(dtype)
    return neural_rollout(name), field, params, hh_start().to(dtype)


@pytest.mark.benchmark(group="solver-neural-forward")
@pytest.mark.parametrize("name", NEURAL)
def test_neural_forward(benchmark, name):
    rollout, field, params, y0 = neural_case(name)
    with torch.no_grad():
        states = benchmark(rollout, field, params, y0)
    assert states.shape == (B, N_STEPS + 1, 4) and torch.isfinite(states).all()
    torch.testing.assert_close(states[:, 0], y0)


@pytest.mark.benchmark(group="solver-neural-backward")
@pytest.mark.parametrize("name", NEURAL)
def test_neural_forward_backward(benchmark, name):
    rollout, field, params, y0 = neural_case(name)

    def run():
        return torch.autograd.grad(rollout(field, params, y0).square().mean(), params[:-2])

    grads = benchmark(run)
    assert all(g.shape == p.shape and torch.isfinite(g).all() for g, p in zip(grads, params))
    assert grads[-1].abs().sum() > 0
