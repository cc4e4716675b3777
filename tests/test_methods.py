"""The built-in methods on a toy harmonic oscillator (x' = v, v' = -x), trained for a few epochs;
cross-variant batches of the neural ODEs against each variant trained alone."""

import time
from dataclasses import replace

import numpy as np
import pydantic
import pytest
import torch

import stiffbench_methods._neural_ode as neural_ode
import stiffbench_methods.vanilla_pinn as vanilla_pinn
from stiffbench.api import BatchMember, BudgetExceeded, FitConfig, FullyObserved, KnownPhysics, TrainingTask, Trajectory
from stiffbench.nn import BatchedMLP
from stiffbench.solvers import StepLimitExceeded
from stiffbench_methods._neural_ode import NeuralODEParams, ObservationStats, VectorField
from stiffbench_methods.pinode_sr import PINODESR
from stiffbench_methods.vanilla_node import VanillaNODE
from stiffbench_methods.vanilla_pinn import TimeNet, VanillaPINN

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

SMALL = {"hidden": (8, 8), "dtype": "float64"}
VARIANTS = [
    (VanillaNODE, {}),
    (VanillaNODE, {"solver": "tsit5"}),
    (PINODESR, {}),
    (PINODESR, {"gradient": "backsolve"}),
    (PINODESR, {"residual_points": "trajectory", "normalise": False, "data_loss": "mean_states"}),
    (VanillaPINN, {}),
    (VanillaPINN, {"collocation": "uniform", "n_collocation": 57, "layer_norm": False}),
]
IDS = ["node", "node-tsit5", "pinode_sr", "pinode_sr-backsolve", "pinode_sr-trajectory", "pinn", "pinn-uniform"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def oscillator(t, z):
    return torch.stack([z[..., 1], -z[..., 0]], dim=-1)


@pytest.fixture(scope="module")
def task():
    dt = 0.05
    t = np.arange(41) * dt
    clean = np.stack([np.cos(t), -np.sin(t)], axis=1)
    noisy = clean + 0.01 * np.random.default_rng(0).standard_normal(clean.shape)
    return TrainingTask("oscillator", Trajectory(t, noisy, ("x", "v")), clean[0], np.arange(121) * dt, dt, oscillator)


@pytest.fixture(scope="module")
def other_task(task):
    """The same grid with other observations (another noise draw, a shifted start) and a faster oscillator."""
    obs = task.observations
    noisy = obs.y + 0.02 * np.random.default_rng(1).standard_normal(obs.y.shape)
    faster = lambda t, z: 1.2 * oscillator(t, z)  # noqa: E731
    return replace(task, observations=replace(obs, y=noisy), y0=task.y0 + 0.1, physics=faster)


def fit(method_cls, task, seeds, epochs=5, **params):
    return method_cls({**SMALL, **params}).fit(task, seeds, FitConfig(epochs=epochs))


@pytest.mark.parametrize(("method_cls", "params"), VARIANTS, ids=IDS)
def test_batched_seeds_equal_separate_training(method_cls, params, task):
    batched = fit(method_cls, task, [0, 1, 2], **params)
    alone = fit(method_cls, task, [1], **params)
    assert batched.loss_history.shape == (5, 3)
    np.testing.assert_allclose(batched.loss_history[:, 1], alone.loss_history[:, 0], rtol=1e-10)
    np.testing.assert_allclose(
        batched.forecast(task.forecast_t)[1], alone.forecast(task.forecast_t)[0], rtol=1e-8, atol=1e-12
    )


@pytest.mark.parametrize(("method_cls", "params"), VARIANTS, ids=IDS)
def test_same_seed_same_model_and_finite_forecast(method_cls, params, task):
    first = fit(method_cls, task, [3, 4], **params)
    second = fit(method_cls, task, [3, 4], **params)
    np.testing.assert_array_equal(first.loss_history, second.loss_history)
    fc = first.forecast(task.forecast_t)
    np.testing.assert_array_equal(fc, second.forecast(task.forecast_t))
    assert fc.shape == (2, len(task.forecast_t), 2) and fc.dtype == np.float64 and np.isfinite(fc).all()
    assert not np.array_equal(fc[0], fc[1])


@pytest.mark.parametrize("method_cls", [VanillaNODE, PINODESR, VanillaPINN])
def test_loss_decreases(method_cls, task):
    history = method_cls({"hidden": (16, 16)}).fit(task, [0, 1], FitConfig(epochs=50)).loss_history
    assert history.shape == (50, 2)
    assert (history[-1] < 0.7 * history[0]).all(), history[[0, -1]]


def test_default_float32_training(task):
    model = VanillaNODE({"hidden": (8, 8)}).fit(task, [0], FitConfig(epochs=2))
    assert model.field.mlp.weights[0].dtype == torch.float32
    assert np.isfinite(model.forecast(task.forecast_t)).all()


def test_progress_and_budget(task):
    seen = []
    VanillaNODE(SMALL).fit(task, [0, 1], FitConfig(epochs=4, progress=lambda e, loss: seen.append((e, loss))))
    assert [e for e, _ in seen] == [1, 2, 3, 4] and all(np.isfinite(loss) for _, loss in seen)
    with pytest.raises(BudgetExceeded):
        VanillaNODE(SMALL).fit(task, [0], FitConfig(epochs=100, deadline=time.monotonic() - 1))


def test_pinode_sr_without_physics_weight_is_vanilla_node(task):
    pinode = fit(PINODESR, task, [0, 1], epochs=8, lam=0.0)
    vanilla = fit(VanillaNODE, task, [0, 1], epochs=8)
    np.testing.assert_allclose(pinode.loss_history, vanilla.loss_history, rtol=1e-13)


def test_pinode_sr_physics_loss_is_eq8(task):
    """First-epoch loss difference = lam * (1/N) sum_i sum_j (r_ij / s_j)^2 at the observations."""
    lam, seeds = 2.5, [0, 1]
    with_physics = fit(PINODESR, task, seeds, epochs=1, lam=lam).loss_history[0]
    data_only = fit(VanillaNODE, task, seeds, epochs=1).loss_history[0]
    stats = ObservationStats.of(task.observations)
    field = VectorField(NeuralODEParams(**SMALL), [stats] * len(seeds), seeds, "cpu")
    t = torch.tensor(task.observations.t)
    z = torch.tensor(task.observations.y).expand(2, -1, -1)
    with torch.no_grad():
        r = (field(t, z) - oscillator(t, z)) / torch.tensor(stats.deriv_std)
    np.testing.assert_allclose(with_physics - data_only, lam * r.square().sum(-1).mean(-1).numpy(), rtol=1e-10)


def test_data_loss_reductions(task):
    summed = fit(VanillaNODE, task, [0], epochs=1).loss_history[0, 0]
    mean = fit(VanillaNODE, task, [0], epochs=1, data_loss="mean_states").loss_history[0, 0]
    assert mean == pytest.approx(summed / 2, rel=1e-12)
    for method_cls in (VanillaNODE, VanillaPINN):
        assert np.isfinite(fit(method_cls, task, [0], epochs=2, data_loss="standardised").loss_history).all()


def test_data_loss_by_hand():
    """Two samples, two states: errors (1, 2) and (0, -1), observed stds (2, 0.5)."""
    pred = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]], dtype=torch.float64)
    obs = torch.zeros(2, 2, dtype=torch.float64)
    std = torch.tensor([[[2.0, 0.5]]], dtype=torch.float64)
    assert neural_ode.data_loss(pred, obs, "sum_states", std).item() == pytest.approx((1 + 4 + 0 + 1) / 2)
    assert neural_ode.data_loss(pred, obs, "mean_states", std).item() == pytest.approx(6 / 2 / 2)
    assert neural_ode.data_loss(pred, obs, "standardised", std).item() == pytest.approx((0.25 + 16 + 0 + 4) / 2)


def test_folded_vector_field_equals_normalised_mlp():
    t = np.linspace(0.0, 3.0, 31)
    y = np.stack([10 * np.sin(t) + 3, 0.1 * np.cos(2 * t)], axis=1)
    stats = ObservationStats.of(Trajectory(t, y, ("a", "b")))
    field = VectorField(NeuralODEParams(**SMALL), [stats] * 2, [5, 6], "cpu")
    z = torch.randn(2, 7, 2, dtype=torch.float64) * 5
    tt = torch.linspace(-1, 4, 7, dtype=torch.float64)
    zn = (z - torch.tensor(stats.z_mean)) / torch.tensor(stats.z_std)
    tn = ((tt - stats.t_mean) / stats.t_std).expand(2, -1).unsqueeze(-1)
    expected = field.mlp(torch.cat([zn, tn], -1)) * torch.tensor(stats.deriv_std)
    with torch.no_grad():
        torch.testing.assert_close(field(tt, z), expected, rtol=1e-12, atol=1e-12)
        at_tensor_time = field(torch.tensor([0.7], dtype=torch.float64), z[:, :1])[:, 0]
        torch.testing.assert_close(field(0.7, z[:, 0]), at_tensor_time, rtol=1e-12, atol=1e-12)


def test_pinn_time_derivative_matches_finite_differences(task):
    net = fit(VanillaPINN, task, [0, 1], epochs=3).net
    t = torch.linspace(0.0, 2.0, 17, dtype=torch.float64)
    _, dz = net.with_derivative(t)
    eps = 1e-6
    fd = (net((t + eps).expand(2, -1)) - net((t - eps).expand(2, -1))) / (2 * eps)
    torch.testing.assert_close(dz.detach(), fd, rtol=1e-6, atol=1e-8)


def test_pinn_forward_mode_derivative_has_the_reverse_mode_parameter_gradient(task):
    """The residual's parameter gradient through with_derivative (forward mode) equals the one
    through n reverse-mode passes with create_graph, the textbook PINN construction (float64)."""
    net = TimeNet(VanillaPINN.Params(hidden=(8, 16), dtype="float64"), ObservationStats.of(task.observations),
                  [0, 1], "cpu")
    t = torch.linspace(0.0, 2.0, 17, dtype=torch.float64)

    def reverse_mode():
        tb = t.expand(2, -1).clone().requires_grad_(True)
        z = net(tb)
        dz = [torch.autograd.grad(z[..., j].sum(), tb, create_graph=True)[0] for j in range(z.shape[-1])]
        return z, torch.stack(dz, dim=-1)

    def parameter_gradient(z, dz):
        return torch.autograd.grad((dz - z.square()).square().sum(), list(net.parameters()))

    for forward, reverse in zip(parameter_gradient(*net.with_derivative(t)), parameter_gradient(*reverse_mode())):
        torch.testing.assert_close(forward, reverse, rtol=1e-10, atol=1e-12)


def test_diverging_model_does_not_affect_the_others(task, monkeypatch):
    class PoisonedMLP(BatchedMLP):
        """Model with seed 99 starts with huge output weights, so its rollout overflows."""

        def __init__(self, sizes, seeds, *args, **kwargs):
            super().__init__(sizes, seeds, *args, **kwargs)
            with torch.no_grad():
                for b, seed in enumerate(seeds):
                    if seed == 99:
                        self.weights[-1][b] *= 1e200

    monkeypatch.setattr(neural_ode, "BatchedMLP", PoisonedMLP)
    poisoned = fit(VanillaNODE, task, [99, 1, 2], epochs=4)
    clean = fit(VanillaNODE, task, [1, 2], epochs=4)
    assert poisoned.diverged.tolist() == [True, False, False]
    np.testing.assert_allclose(poisoned.loss_history[:, 1:], clean.loss_history, rtol=1e-10)
    fc = poisoned.forecast(task.forecast_t)
    assert np.isnan(fc[0]).all() and np.isfinite(fc[1:]).all()
    assert fit(VanillaNODE, task, [99], epochs=10).loss_history.shape == (1, 1)  # nothing left to train


def test_forecast_grid_validation(task):
    model = fit(VanillaNODE, task, [0], epochs=1)
    uneven = model.forecast(np.array([0.0, 0.1, 0.3]))  # any increasing times from t0
    assert uneven.shape == (1, 3, 2) and np.isfinite(uneven).all()
    with pytest.raises(ValueError):
        model.forecast(task.forecast_t + 0.05)
    np.testing.assert_array_equal(model.forecast(np.array([0.0]))[0, 0], task.y0)


@pytest.mark.parametrize("method_cls", [PINODESR, VanillaPINN])
def test_physics_methods_need_the_vector_field(method_cls, task):
    no_physics = TrainingTask(task.system, task.observations, task.y0, task.forecast_t, task.dt)
    with pytest.raises(ValueError, match="physics"):
        method_cls(SMALL).fit(no_physics, [0], FitConfig(epochs=1))


@pytest.mark.parametrize(
    ("method_cls", "bad"),
    [
        (VanillaNODE, {"unknown": 1}),
        (VanillaNODE, {"hidden": ()}),
        (VanillaNODE, {"solver": "rk4"}),
        (VanillaNODE, {"lr": 0.0}),
        (VanillaNODE, {"compile": "sometimes"}),
        (VanillaNODE, {"gradient": "adjoint"}),
        (VanillaNODE, {"solver": "tsit5", "rtol": 0.0}),
        (PINODESR, {"lam": -0.5}),
        (PINODESR, {"residual_points": "collocation"}),
        (VanillaPINN, {"lam": -1.0}),
        (VanillaPINN, {"unknown": 1}),
        (VanillaPINN, {"n_collocation": 1}),
    ],
)
def test_params_validation(method_cls, bad):
    with pytest.raises(pydantic.ValidationError):
        method_cls(bad)


def test_defaults_and_metadata():
    p = PINODESR().params
    assert (p.hidden, p.layer_norm, p.normalise, p.lr, p.lam) == ((64, 128, 64), True, True, 1e-3, 1.5)
    assert (p.dtype, p.data_loss, p.residual_points, p.compile) == ("float32", "sum_states", "observations", "auto")
    assert (p.solver, p.gradient, p.rtol, p.atol) == ("heun", "backprop", 1e-5, 1e-5)
    assert VanillaPINN().params.lam == 1.0
    assert [m.name for m in (VanillaNODE, PINODESR, VanillaPINN)] == ["vanilla_node", "pinode_sr", "vanilla_pinn"]
    assert all(m.batches_seeds for m in (VanillaNODE, PINODESR, VanillaPINN))
    assert VanillaNODE.requires == (FullyObserved,)
    assert set(PINODESR.requires) == set(VanillaPINN.requires) == {KnownPhysics, FullyObserved}
    for m in (VanillaNODE, PINODESR, VanillaPINN):
        assert all(f.description for f in m.Params.model_fields.values())


def test_forecast_on_training_grid_reproduces_training_rollout(task):
    """The first epoch's loss is the data loss of the untrained models; a 0-epoch fit forecasts with them."""
    first_loss = fit(VanillaNODE, task, [0, 1], epochs=1).loss_history[0]
    untrained = fit(VanillaNODE, task, [0, 1], epochs=0)
    assert untrained.loss_history.shape == (0, 2)
    fc = untrained.forecast(task.observations.t)
    np.testing.assert_allclose(((fc - task.observations.y) ** 2).sum(-1).mean(-1), first_loss, rtol=1e-12)


def test_pinn_forecast_in_chunks(task, monkeypatch):
    model = fit(VanillaPINN, task, [0, 1], epochs=2)
    t = np.linspace(0.0, 6.0, 1001)
    whole = model.forecast(t)
    monkeypatch.setattr(vanilla_pinn, "FORECAST_CHUNK", 64)
    np.testing.assert_array_equal(model.forecast(t), whole)
    assert whole.shape == (2, 1001, 2) and np.isfinite(whole).all()


MIXED = [  # (method params, which task, seed): loss weights, normalisation, observations, physics and seeds differ
    ({"lam": 1.5}, "task", 0),
    ({"lam": 0.0, "normalise": False}, "task", 0),
    ({"lam": 2.5}, "other_task", 3),
    ({"lam": 0.5, "normalise": False}, "other_task", 1),
    ({"lam": 1.5}, "task", 2),
]


@pytest.mark.parametrize("shared", [{}, {"residual_points": "trajectory", "layer_norm": False}], ids=["obs", "traj"])
def test_fit_batch_members_equal_their_variant_alone(shared, request):
    tasks = {name: request.getfixturevalue(name) for name in ("task", "other_task")}
    members = [BatchMember(PINODESR.Params(**SMALL, **shared, **p), tasks[name], seed) for p, name, seed in MIXED]
    batched = PINODESR.fit_batch(members, FitConfig(epochs=6))
    forecast = batched.forecast(tasks["task"].forecast_t)
    assert batched.loss_history.shape == (6, len(MIXED)) and forecast.shape == (len(MIXED), 121, 2)
    for b, (p, name, seed) in enumerate(MIXED):
        alone = fit(PINODESR, tasks[name], [seed], epochs=6, **shared, **p)
        np.testing.assert_allclose(batched.loss_history[:, b], alone.loss_history[:, 0], rtol=1e-9)
        np.testing.assert_allclose(forecast[b], alone.forecast(tasks[name].forecast_t)[0], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("solver", ["heun", "tsit5", "rodas5p"])
def test_vanilla_node_batches_across_normalisation(solver, task, other_task):
    variants = [(True, task), (False, other_task)]
    members = [BatchMember(VanillaNODE.Params(**SMALL, normalise=n, solver=solver), t, 0) for n, t in variants]
    batched = VanillaNODE.fit_batch(members, FitConfig(epochs=4))
    alone = fit(VanillaNODE, other_task, [0], epochs=4, normalise=False, solver=solver)
    np.testing.assert_allclose(batched.loss_history[:, 1], alone.loss_history[:, 0], rtol=1e-9)


def test_batch_key_excludes_only_member_fields():
    key = PINODESR({"lam": 0.5}).batch_key()
    assert key == PINODESR({"lam": 2.5, "normalise": False}).batch_key() and hash(key) is not None
    others = [{"hidden": (8,)}, {"layer_norm": False}, {"dtype": "float64"}, {"lr": 0.01},
              {"data_loss": "mean_states"}, {"residual_points": "trajectory"}, {"compile": False},
              {"solver": "tsit5"}, {"gradient": "interpolating"}, {"solver": "tsit5", "rtol": 1e-6}]
    assert all(PINODESR(p).batch_key() != key for p in others)
    assert VanillaNODE({"normalise": False}).batch_key() == VanillaNODE().batch_key() != PINODESR().batch_key()


def test_fit_batch_rejects_incompatible_members(task):
    shorter = replace(task, observations=Trajectory(task.observations.t[:30], task.observations.y[:30], ("x", "v")))
    with pytest.raises(ValueError, match="parameters differ"):
        PINODESR.fit_batch([BatchMember(PINODESR.Params(**SMALL), task, 0),
                            BatchMember(PINODESR.Params(hidden=(4,)), task, 0)], FitConfig(epochs=1))
    with pytest.raises(ValueError, match="observation times"):
        PINODESR.fit_batch([BatchMember(PINODESR.Params(**SMALL), t, 0) for t in (task, shorter)], FitConfig(epochs=1))


def test_compile_auto_means_long_fits(task, monkeypatch):
    seen = []
    rollout = neural_ode.heun_adjoint_rollout

    def spy(*args):
        seen.append(args[-1])
        return rollout(*args[:-1], False)

    monkeypatch.setattr(neural_ode, "heun_adjoint_rollout", spy)
    monkeypatch.setattr(neural_ode, "COMPILE_MIN_EPOCHS", 3)
    for epochs, compile in [(2, "auto"), (3, "auto"), (1, True), (1, False)]:
        fit(VanillaNODE, task, [0], epochs=epochs, compile=compile)
    assert seen == [False, False, True, True, True, True, False]


SOLVER_GRADIENTS = [("heun", "backprop"), ("heun", "backsolve"), ("heun", "interpolating"), ("tsit5", "backprop"),
                    ("tsit5", "interpolating"), ("rodas5p", "backprop"), ("rodas5p", "interpolating")]


@pytest.mark.parametrize(("solver", "gradient"), SOLVER_GRADIENTS)
def test_solvers_and_gradients_train_and_forecast(solver, gradient, task):
    """Every supported combination trains and forecasts; the adjoint gradients follow backprop's loss curve
    (on this smooth toy problem they agree with the exact discrete gradient to ~1e-8 relative)."""
    params = {"hidden": (8,), "solver": solver, "residual_points": "trajectory"}  # the loss depends on z_hat only
    model = fit(PINODESR, task, [0, 1], epochs=3, gradient=gradient, **params)
    fc = model.forecast(task.forecast_t)
    assert fc.shape == (2, len(task.forecast_t), 2) and np.isfinite(fc).all()
    exact = fit(PINODESR, task, [0, 1], epochs=3, **params)
    np.testing.assert_allclose(model.loss_history, exact.loss_history, rtol=1e-6)


def test_rodas5p_computes_in_float64(task):
    assert VanillaNODE({"solver": "rodas5p"}).params.dtype == "float64"
    assert fit(VanillaNODE, task, [0], epochs=1, solver="rodas5p").field.mlp.weights[0].dtype == torch.float64
    with pytest.raises(pydantic.ValidationError, match="rodas5p.*float64"):
        VanillaNODE({"solver": "rodas5p", "dtype": "float32"})


@pytest.mark.parametrize("solver", ["tsit5", "rodas5p"])
def test_backsolve_needs_heun(solver):
    with pytest.raises(pydantic.ValidationError, match="backsolve.*torchdiffeq"):
        PINODESR({"solver": solver, "gradient": "backsolve"})


@pytest.mark.parametrize(("solver", "gradient"), [("tsit5", "backprop"), ("rodas5p", "interpolating")])
def test_training_step_budget(solver, gradient, task):
    with pytest.raises(StepLimitExceeded):
        VanillaNODE({**SMALL, "solver": solver, "gradient": gradient}).fit(task, [0], FitConfig(epochs=2, max_steps=2))
    assert issubclass(StepLimitExceeded, BudgetExceeded)


def test_adaptive_forecast_chunks_and_failures(task, monkeypatch):
    """The chunked forecast agrees with one solve to the tolerance; a model whose solve fails is NaN after y0."""
    model = fit(VanillaNODE, task, [0, 1], epochs=2, solver="tsit5", rtol=1e-8, atol=1e-8)
    whole = model.forecast(task.forecast_t)
    monkeypatch.setattr(neural_ode, "FORECAST_CHUNK", 7)
    np.testing.assert_allclose(model.forecast(task.forecast_t), whole, rtol=1e-6, atol=1e-7)

    class PoisonedMLP(BatchedMLP):
        """Model with seed 99 has a huge, stiff output: its forecast exhausts the step budget."""

        def __init__(self, sizes, seeds, *args, **kwargs):
            super().__init__(sizes, seeds, *args, **kwargs)
            with torch.no_grad():
                self.weights[-1][list(seeds).index(99)] *= 1e6

    monkeypatch.setattr(neural_ode, "BatchedMLP", PoisonedMLP)
    poisoned = VanillaNODE({**SMALL, "solver": "tsit5"}).fit(task, [99, 1], FitConfig(epochs=0, max_steps=50))
    fc = poisoned.forecast(task.forecast_t)
    np.testing.assert_array_equal(fc[0, 0], task.y0)
    assert np.isnan(fc[0, 1:]).all() and np.isfinite(fc[1]).all()
