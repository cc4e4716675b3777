"""Machinery shared by the built-in methods: observation statistics, the data loss, the batched
Adam loop, and the neural ODE (vector field, training rollout, forecast).

All models of a fit -- the seeds of one variant, or the members of a `fit_batch` across variants
(different loss weights, normalisation or observations) -- are trained as one `BatchedMLP`. The
optimised objective is the sum of the models' losses, so each model's gradient is the one it would
get alone, and Adam, being elementwise, then gives each model the trajectory it would follow alone:
a model's result depends only on its own variant, seed and data, not on its batch. With the
adaptive solvers each model keeps its own step-size control inside the batched solve
(`solve_independent`, see `rollout`) to keep that property.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Literal, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt, model_validator
from torch import nn

from stiffbench.api import (
    AbstractMethod,
    AbstractModel,
    BatchMember,
    FitConfig,
    PluginParams,
    TrainingTask,
    Trajectory,
    param,
)
from stiffbench.gc_freeze import freezing_survivors
from stiffbench.nn import BatchedMLP, TimeMLPField
from stiffbench.solvers import StepLimitExceeded
from stiffbench.solvers.adjoint import odeint_with_grad
from stiffbench.solvers.heun import heun_adjoint_rollout, heun_adjoint_rollout_at, heun_forecast, heun_forecast_at, heun_steps
from stiffbench.solvers.heun_backsolve import heun_backsolve_rollout, heun_backsolve_rollout_at
from stiffbench.times import is_uniform
from stiffbench.solvers.batched_adjoint import solve_independent_adjoint, solve_independent_backprop
from stiffbench.solvers.rodas5p import Rodas5P
from stiffbench.solvers.tsit5 import Tsit5

FieldFn = Callable[[float | torch.Tensor, torch.Tensor], torch.Tensor]

COMPILE_MIN_EPOCHS = 200
FORECAST_CHUNK = 1000  # output times per adaptive forecast solve (the granularity of NaN-from-failure)


class NetworkParams(PluginParams):
    """Parameters common to the built-in methods."""

    hidden: tuple[PositiveInt, ...] = Field(
        (64, 128, 64),
        min_length=1,
        description="Hidden-layer widths of the MLP (tanh); the paper's '3-layer MLP with 64-128 hidden units' "
        "(section 3.3).",
    )
    layer_norm: bool = Field(
        True, description="LayerNorm (per-model affine) after each hidden activation, 'for stability' (section 3.3)."
    )
    lr: PositiveFloat = Field(1e-3, description="Adam learning rate (section 3.5); full batch, one step per epoch.")
    dtype: Literal["float32", "float64"] = Field("float32", description="Floating-point type of training and forecast.")
    data_loss: Literal["sum_states", "mean_states", "standardised"] = Field(
        "sum_states",
        description="The data loss (eq. 7) over all N observation samples: 'sum_states' = (1/N) sum_i "
        "||z_hat_i - z_i||^2 in raw units, as the paper writes it; 'mean_states' divides that by the number of "
        "states, as the public reproduction's mean over all entries does; 'standardised' = (1/N) sum_i sum_j "
        "((z_hat_ij - z_ij) / sigma_j)^2 with sigma_j the std of the observed state j, i.e. the loss on "
        "'outputs normalised by dataset statistics' (section 3.3), which weighs a gate's error as much as the "
        "voltage's instead of ~1e-4 as much.",
    )


class NeuralODEParams(NetworkParams):
    """Parameters of a neural ODE dz/dt = f_theta(z, t) (eq. 4)."""

    normalise: bool = Field(
        True,
        description="Inputs z-scored by the training observations' per-channel mean/std (t by the training times'), "
        "outputs scaled by s_j, the std of the finite-difference derivative of state j (section 3.3, "
        "'inputs and outputs are normalised by dataset statistics'); False: raw inputs and outputs.",
    )
    solver: Literal["heun", "tsit5", "rodas5p"] = Field(
        "heun",
        description="Training and forecast solver. 'heun': fixed-step Heun with the sampling step dt, the "
        "paper's explicit training solver (section 4.4). 'tsit5' (explicit 5(4)) and 'rodas5p' (stiff "
        "Rosenbrock 5(4)): adaptive with rtol/atol, outputs at the observation (forecast) times by dense "
        "output; each model keeps its own step-size control (one batched loop, stiffbench.solvers.independent), "
        "so its step sizes, and hence its result, do not depend on its batch. A training solve past the fit's max_steps raises StepLimitExceeded (status timeout); a "
        "forecast that fails (step budget, non-finite state) is NaN from the failing chunk of "
        f"{FORECAST_CHUNK} output times on. 'rodas5p' computes in float64 (dtype defaults to it; "
        "float32 is rejected).",
    )
    gradient: Literal["backprop", "backsolve", "interpolating"] = Field(
        "backprop",
        description="Training gradient (stiffbench.solvers.adjoint). 'backprop': the exact gradient of the "
        "discrete solver (heun: a hand-written reverse sweep; tsit5/rodas5p: autograd through the steps), "
        "our stand-in for the paper's QuadratureAdjoint (section 3.3), which approximates that gradient. "
        "'backsolve': the backsolve adjoint, re-integrating the state backwards (the paper's backsolve "
        "ablation, section 5.2): torchdiffeq's odeint_adjoint arithmetic, in a batched hand-written reverse "
        "sweep (stiffbench.solvers.heun_backsolve); heun only, as torchdiffeq has no Tsit5 and no stiff solver. "
        "'interpolating': the continuous adjoint on the stored forward solution (InterpolatingAdjoint).",
    )
    rtol: PositiveFloat = Field(
        1e-5, description="Relative tolerance of the adaptive solvers, the public reproduction's (technical "
        "notes section 1.2); unused by heun."
    )
    atol: PositiveFloat = Field(
        1e-5, description="Absolute tolerance of the adaptive solvers, the public reproduction's (technical "
        "notes section 1.2); unused by heun."
    )
    step: Optional[PositiveFloat] = param(
        None, added=True,
        description="Heun's largest step, in the system's time unit: every interval between consecutive output "
        "times (observations in training, the forecast grid after) is split into ceil(interval / step) equal "
        "steps. None: one step per interval, i.e. the sampling step, as the paper steps its 0.01 ms grid. "
        "Unused by the adaptive solvers, which output at those times by dense output.",
    )
    state_scale: Literal["none", "observed_max"] = param(
        "none", added=True,
        description="Coordinates the solver integrates in. 'none': the states' raw units, so atol applies to every "
        "state as it is (the paper's). 'observed_max': each state divided by its largest |value| in the "
        "observations, so rtol/atol (and the Heun steps' round-off) act relative to each state's own scale: a "
        "state peaking at 3.6e-5 (Robertson's y2) is resolved like one near 1. The network's input and output "
        "normalisation are unchanged (the rescaling is folded into its first and last layers).",
    )
    autonomous: bool = param(
        False, added=True,
        description="True: dz/dt = f_theta(z), no time input (a time-invariant system). False: f_theta(z, t) with "
        "t as an input, as the paper's eq. 4 writes it.",
    )
    compile: bool | Literal["auto"] = param(
        "auto", performance=True,
        description="Run the training rollout's steps through torch.compile: about 2x faster per epoch for "
        "the paper's network, after about 30 s of compilation per batch shape (reused by later fits in the "
        f"process, and cached on disk by torch). 'auto': compile when a fit has at least {COMPILE_MIN_EPOCHS} "
        "epochs. Compiled and eager results agree to rounding.",
    )

    @model_validator(mode="before")
    @classmethod
    def _solver_constraints(cls, data):
        """rodas5p: float64 by default, float32 rejected; backsolve: heun only."""
        if not isinstance(data, dict):
            return data
        if data.get("solver") == "rodas5p":
            if data.get("dtype", "float64") != "float64":
                raise ValueError("solver 'rodas5p' runs in float64 (its stages lose too many digits in float32): "
                                 "leave dtype out or set it to 'float64'")
            data = {**data, "dtype": "float64"}
        if data.get("step") is not None and data.get("gradient") == "interpolating":
            raise ValueError("gradient 'interpolating' steps the output grid itself: leave step unset")
        if data.get("gradient") == "backsolve" and data.get("solver", "heun") != "heun":
            raise ValueError("gradient 'backsolve' uses torchdiffeq, which has no Tsit5 and no stiff solver: "
                             "use it with solver 'heun', or use gradient 'backprop' or 'interpolating'")
        return data


@dataclass(frozen=True)
class ObservationStats:
    """Statistics of the training observations (float64, std with ddof=1).

    deriv_std[j] is s_j of eq. 8: the std of diff(z_j) / diff(t). A constant channel gets 1 in place
    of a zero std so that no scale divides by zero.
    """

    z_mean: np.ndarray
    z_std: np.ndarray
    t_mean: float
    t_std: float
    deriv_std: np.ndarray

    @classmethod
    def identity(cls, n_states: int) -> "ObservationStats":
        """Statistics that make normalisation the identity (mean 0, std 1, derivative scale 1)."""
        return cls(np.zeros(n_states), np.ones(n_states), 0.0, 1.0, np.ones(n_states))

    @classmethod
    def of(cls, obs: Trajectory) -> "ObservationStats":
        if len(obs.t) < 3:
            raise ValueError("at least 3 training samples are needed for the statistics")
        t, y = np.asarray(obs.t, np.float64), np.asarray(obs.y, np.float64)
        deriv = np.diff(y, axis=0) / np.diff(t)[:, None]
        return cls(
            z_mean=y.mean(axis=0),
            z_std=_nonzero(y.std(axis=0, ddof=1)),
            t_mean=float(t.mean()),
            t_std=float(_nonzero(np.array(t.std(ddof=1)))),
            deriv_std=_nonzero(deriv.std(axis=0, ddof=1)),
        )


def _nonzero(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def require_physics(task: TrainingTask, method: str):
    """The task's torch vector field; ValueError if the runner did not provide it."""
    if task.physics is None:
        raise ValueError(f"{method} needs the system's vector field (task.physics), which this task lacks")
    return task.physics


def data_loss(pred: torch.Tensor, obs: torch.Tensor, reduction: str, obs_std: torch.Tensor) -> torch.Tensor:
    """Eq. 7 per model: pred (B, N, n) vs obs (N, n) or (B, N, n) -> (B,); obs_std (B, 1, n), each
    model's observed per-state std, divides the errors for reduction 'standardised'."""
    error = (pred - obs) / obs_std if reduction == "standardised" else pred - obs
    loss = error.square().sum(-1).mean(-1)
    return loss / obs.shape[-1] if reduction == "mean_states" else loss


def train(
    module: nn.Module, losses: Callable[[], torch.Tensor], n_models: int, lr: float, config: FitConfig
) -> np.ndarray:
    """Full-batch Adam on module's parameters, one step per epoch on the sum of the per-model losses
    `losses()` (shape (B,)).

    Reports the mean finite loss to `config.check` every epoch. Stops early once every model's loss
    has been non-finite (nothing is left to train). With `config.checkpoint`, resumes from its saved
    state (module, Adam, history, training seconds, which count against the deadline) and saves
    whenever it is due. Long-lived objects (compiled graphs) are kept out of the garbage
    collector's full collections (`freezing_survivors`). Returns the loss history (epochs run, B).
    """
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    history = []
    alive = np.ones(n_models, dtype=bool)
    start, spent, began = 1, 0.0, time.monotonic()
    saved = None if config.checkpoint is None else config.checkpoint.load()
    if saved is not None:
        module.load_state_dict(saved["module"])
        opt.load_state_dict(saved["optimizer"])
        history, alive, start, spent = list(saved["history"]), saved["alive"], saved["epoch"] + 1, saved["train_s"]
        if config.deadline is not None:
            config = replace(config, deadline=config.deadline - spent)
    with freezing_survivors() as epoch_done:
        for epoch in range(start, config.epochs + 1):
            opt.zero_grad(set_to_none=True)
            loss = losses()
            loss.sum().backward()
            opt.step()
            values = loss.detach().to("cpu", torch.float64).numpy()
            history.append(values)
            epoch_done()
            finite = np.isfinite(values)
            alive &= finite
            config.check(epoch, float(values[finite].mean()) if finite.any() else float("nan"))
            if not alive.any():
                break
            if config.checkpoint is not None and epoch < config.epochs and config.checkpoint.due():
                config.checkpoint.save({
                    "epoch": epoch, "module": module.state_dict(), "optimizer": opt.state_dict(), "history": history,
                    "alive": alive, "train_s": spent + time.monotonic() - began,
                })
    return np.array(history, dtype=np.float64).reshape(len(history), n_models)


class VectorField(nn.Module):
    """f_theta(z, t) of B models (eq. 4): BatchedMLP on [z; t] -> dz/dt, inputs z-scored by stats[b] and
    outputs scaled by its derivative scales s_j (`ObservationStats.identity` for no normalisation);
    f_theta(z) without the time input when `autonomous`.

    The scalings are folded into the first and last layers (`rollout_params`), so evaluating the
    field costs the bare MLP plus centring its input; t enters through a t-dependent first-layer bias.
    With `solver_scales` (one (n,) array per model) the folded field is the same field in solver
    coordinates u = z / scale: du/dt = f(t, scale u) / scale.
    """

    def __init__(self, params: NeuralODEParams, stats: Sequence[ObservationStats], seeds: Sequence[int], device,
                 solver_scales: Sequence[np.ndarray] | None = None):
        super().__init__()
        n = len(stats[0].z_mean)
        dtype = torch_dtype(params.dtype)
        self.n_states = n
        self.autonomous = params.autonomous
        self.field = TimeMLPField(params.layer_norm)
        self.mlp = BatchedMLP([n + (0 if self.autonomous else 1), *params.hidden, n], seeds, params.layer_norm,
                              dtype, device)
        stack = lambda name: torch.as_tensor(  # noqa: E731
            np.array([getattr(s, name) for s in stats], np.float64), dtype=dtype, device=device
        )
        self.register_buffer("z_mean", stack("z_mean"))
        self.register_buffer("z_std", stack("z_std"))
        self.register_buffer("t_mean", stack("t_mean").reshape(-1, 1, 1))
        self.register_buffer("t_std", stack("t_std").reshape(-1, 1, 1))
        self.register_buffer("out_scale", stack("deriv_std").unsqueeze(1))
        scales = None if solver_scales is None else torch.as_tensor(np.array(solver_scales), dtype=dtype, device=device)
        self.register_buffer("solver_scale", scales)

    def to_solver(self, z: torch.Tensor) -> torch.Tensor:
        """States (B, ..., n) in solver coordinates."""
        return z if self.solver_scale is None else z / self.solver_scale.reshape(len(z), *[1] * (z.dim() - 2), -1)

    def from_solver(self, u: torch.Tensor) -> torch.Tensor:
        """Solver coordinates (B, ..., n) back to states."""
        return u if self.solver_scale is None else u * self.solver_scale.reshape(len(u), *[1] * (u.dim() - 2), -1)

    def rollout_params(self, solver_coordinates: bool = True) -> tuple[torch.Tensor, ...]:
        """The folded layers and input shifts in `TimeMLPField`'s order, differentiable with respect
        to the raw parameters; for the field in solver coordinates unless told otherwise."""
        n = self.n_states
        ws, bs = self.mlp.folded_layers()
        z_std, z_mean, out_scale = self.z_std, self.z_mean, self.out_scale
        if solver_coordinates and self.solver_scale is not None:
            z_std, z_mean = z_std / self.solver_scale, z_mean / self.solver_scale
            out_scale = out_scale / self.solver_scale.unsqueeze(1)
        w_z = ws[0][:, :n] / z_std.unsqueeze(-1)
        w_time = ws[0][:, :1].new_zeros(()).expand_as(ws[0][:, :1]) if self.autonomous else ws[0][:, n:] / self.t_std
        scaled = (ws[-1] * out_scale, bs[-1] * out_scale)
        return (w_z, *ws[1:-1], scaled[0], *bs[:-1], scaled[1], w_time, z_mean.unsqueeze(1), self.t_mean)

    def evaluator(self, params: tuple[torch.Tensor, ...]) -> FieldFn:
        """f(t, z) with the given `rollout_params`: z (B, M, n) or (B, n); t a float, a 0-d tensor, times
        (M,), or one time per model (B, 1) (as `solve_independent` passes them)."""
        net = self.field.prepare(params)

        def f(t, z):
            single = z.dim() == 2
            out = self.field.evaluate(net, t, z.unsqueeze(1) if single else z)[0]
            return out.squeeze(1) if single else out

        return f

    def jet(self, params: tuple[torch.Tensor, ...]):
        """(f, J, f_t)(t, z) for z (B, n), or at M samples per model z (B, M, n) with t (B, M, 1), with
        the given `rollout_params`, by forward mode (`TimeMLPField.jet`): Rodas5P's derivatives at a
        fraction of reverse mode's cost."""
        net = self.field.prepare(params)

        def jet(t, z):
            if z.dim() == 3:
                return self.field.jet(net, t, z, per_sample=True)
            out, J, f_t = self.field.jet(net, t, z.unsqueeze(1))
            return out.squeeze(1), J, f_t

        return jet

    def forward(self, t, z: torch.Tensor) -> torch.Tensor:
        return self.evaluator(self.rollout_params())(t, z)


@dataclass(frozen=True)
class TrainingBatch:
    """The members' observations at their shared observation times: t (N,), z (B, N, n), y0 (B, n) at
    the initial time t0, each member's statistics (raw, whatever its normalisation), and the
    rollout's output times (the observation times, after t0 when it precedes them)."""

    t: torch.Tensor
    z: torch.Tensor
    y0: torch.Tensor
    t0: float
    stats: list[ObservationStats]
    times: list[float]

    @property
    def skip(self) -> int:
        """Rollout outputs before the first observation (1 when t0 precedes it)."""
        return len(self.times) - len(self.t)

    def obs_std(self) -> torch.Tensor:
        """Each member's observed per-state std, (B, 1, n): the scale of the 'standardised' data loss."""
        return self.z.new_tensor(np.array([s.z_std for s in self.stats])).unsqueeze(1)

    def observed_max(self) -> list[np.ndarray]:
        """Each member's largest |observed value| per state (1 where a state is observed as all 0)."""
        return [_nonzero(np.abs(z)) for z in self.z.detach().abs().amax(1).to("cpu", torch.float64).numpy()]

    @classmethod
    def of(cls, tasks: Sequence[TrainingTask], dtype: torch.dtype, device) -> "TrainingBatch":
        first = tasks[0]
        for task in tasks:
            if not task.fully_observed:
                raise ValueError(f"the built-in neural ODEs fit every state; this task observes "
                                 f"{', '.join(task.observations.state_names)} only")
            obs = task.observations
            if not np.array_equal(obs.t, first.observations.t) or obs.y.shape != first.observations.y.shape \
                    or task.initial_time != first.initial_time:
                raise ValueError("the members of a batch must share the observation times, initial time and states")
        t_obs, t0 = np.asarray(first.observations.t, np.float64), first.initial_time
        if t0 > t_obs[0]:
            raise ValueError(f"the initial time {t0} follows the first observation at {t_obs[0]}")
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype, device=device)  # noqa: E731
        return cls(
            t=as_t(t_obs),
            z=as_t(np.stack([task.observations.y for task in tasks])),
            y0=as_t(np.stack([task.y0 for task in tasks])),
            t0=t0,
            stats=[ObservationStats.of(task.observations) for task in tasks],
            times=([t0] if t0 < t_obs[0] else []) + t_obs.tolist(),
        )


Penalty = Callable[[FieldFn, torch.Tensor], torch.Tensor]


def solve_options(p: NeuralODEParams, times: Sequence[float], max_steps: int | None) -> dict:
    """`odeint_with_grad`'s options for p.solver: heun's step (the spacing of uniform `times`), or the
    tolerances and step budget."""
    if p.solver == "heun":
        if not is_uniform(times):
            raise ValueError("gradient 'interpolating' with heun needs uniformly spaced output times")
        return {"dt": (times[-1] - times[0]) / (len(times) - 1)}
    return {"rtol": p.rtol, "atol": p.atol, **({} if max_steps is None else {"max_steps": max_steps})}


def heun_grid(times: Sequence[float], step: float | None) -> tuple[float, None] | tuple[np.ndarray, np.ndarray]:
    """How Heun steps through the output times: (dt, None) when they are uniform and one step per
    interval is wanted (the uniform grid t0 + k dt, the paper's), else (step boundaries, the
    outputs' positions among them) from `heun_steps`."""
    if is_uniform(times) and (step is None or step >= (times[-1] - times[0]) / (len(times) - 1)):
        return (times[-1] - times[0]) / (len(times) - 1), None
    return heun_steps(times, step)


def rollout(
    field: VectorField, params: tuple[torch.Tensor, ...], y0: torch.Tensor, times: list[float],
    p: NeuralODEParams, max_steps: int | None, compile: bool = False,
) -> torch.Tensor:
    """The B models' states at `times` (any increasing times), (B, N, n), in the coordinates of
    `params` and y0, differentiable by p.gradient. heun: steps through the times (`heun_grid`),
    with the hand-written reverse sweeps, exact discrete adjoint (backprop) or torchdiffeq's
    backsolve adjoint (backsolve); adaptive + backprop: one batched solve with each model's own
    step-size control, finished models leaving the batch (`solve_independent`), differentiated for
    rodas5p by the batched discrete adjoint over the accepted steps (`solve_independent_adjoint`: a
    stiff model's thousands of small sequential steps dominate its backward pass otherwise) and for
    tsit5 by autograd through the loop (cheaper there: at the paper batch's initial weights 0.048
    against 0.075 s per epoch, and 10 s against 180 s of compilation); interpolating:
    `odeint_with_grad`, one solve per model for the adaptive solvers (their step size is shared by
    whatever one solve holds)."""
    if p.solver == "heun" and p.gradient in ("backprop", "backsolve"):
        dt, out_index = heun_grid(times, p.step)
        if out_index is None:
            rollout_fn = heun_adjoint_rollout if p.gradient == "backprop" else heun_backsolve_rollout
            return rollout_fn(field.field, params, y0, times[0], dt, len(times) - 1, compile)
        if p.gradient == "backprop":
            states = heun_adjoint_rollout_at(field.field, params, y0, dt, compile)
        else:  # torchdiffeq's backsolve resets its re-integrated state at the output times only
            states = heun_backsolve_rollout_at(field.field, params, y0, dt, compile, out_index=out_index)
        return states[:, torch.as_tensor(out_index, device=y0.device)]
    if p.gradient == "backprop":
        limit = {} if max_steps is None else {"max_steps": max_steps}

        def solver_and_field(ps: tuple[torch.Tensor, ...]):
            return Rodas5P(jet=field.jet(ps)) if p.solver == "rodas5p" else Tsit5(), field.evaluator(ps)

        solve = solve_independent_adjoint if p.solver == "rodas5p" else solve_independent_backprop
        ys = solve(solver_and_field, params, y0, times, rtol=p.rtol, atol=p.atol, compile=compile, **limit)
        return ys.transpose(0, 1)
    groups = [slice(None)] if p.solver == "heun" else [slice(b, b + 1) for b in range(len(y0))]
    options = solve_options(p, times, max_steps)
    out = []
    for g in groups:
        ps = tuple(x[g] for x in params)
        out.append(odeint_with_grad(field.evaluator(ps), y0[g], times, ps, p.solver, p.gradient, **options))
    return torch.cat(out, dim=1).transpose(0, 1)


class NeuralODEMethod(AbstractMethod):
    """A neural ODE trained through a rollout of p.solver over the whole training window from task.y0,
    on the data loss (eq. 7) plus an optional per-model `penalty`.

    Variants that differ only in `member_fields` (and in their tasks' observations and seeds)
    share a `batch_key` and train as one batch through `fit_batch`; `fit` is a batch of one variant.
    """

    Params = NeuralODEParams
    batches_seeds = True
    member_fields: ClassVar[frozenset[str]] = frozenset({"normalise"})

    def batch_key(self) -> tuple[str, str, str]:
        shared = self.params.model_dump_json(exclude=set(self.member_fields))
        return (type(self).__module__, type(self).__qualname__, shared)

    @classmethod
    def penalty(cls, members: Sequence[BatchMember], batch: TrainingBatch) -> Penalty | None:
        """Extra loss term(s) as a function of (f, z_hat (B, N, n)) -> (B,); None for data loss only."""
        return None

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> "NeuralODEModel":
        return self.fit_batch([BatchMember(self.params, task, seed) for seed in seeds], config)

    @classmethod
    def fit_batch(cls, members: Sequence[BatchMember], config: FitConfig) -> "NeuralODEModel":
        p = members[0].params
        compile = p.compile if p.compile != "auto" else config.epochs >= COMPILE_MIN_EPOCHS
        field, batch, losses = cls.objective(members, config.device, compile, config.max_steps)
        history = train(field, losses, len(members), p.lr, config)
        return NeuralODEModel(field, batch.y0, batch.t0, history, p, config.max_steps)

    @classmethod
    def objective(
        cls, members: Sequence[BatchMember], device: str, compile: bool, max_steps: int | None = None
    ) -> tuple[VectorField, TrainingBatch, Callable[[], torch.Tensor]]:
        """The members' untrained models, their data, and losses() -> (B,), each model's loss.
        max_steps: the adaptive solvers' step budget per solve (StepLimitExceeded past it)."""
        if len({cls(m.params).batch_key() for m in members}) != 1:
            raise ValueError(f"{cls.__name__}: the members' parameters differ beyond {sorted(cls.member_fields)}")
        p = members[0].params
        batch = TrainingBatch.of([m.task for m in members], torch_dtype(p.dtype), torch.device(device))
        identity = ObservationStats.identity(len(batch.stats[0].z_mean))
        stats = [s if m.params.normalise else identity for m, s in zip(members, batch.stats)]
        scales = batch.observed_max() if p.state_scale == "observed_max" else None
        field = VectorField(p, stats, [m.seed for m in members], device, scales)
        penalty = cls.penalty(members, batch)
        obs_std = batch.obs_std()
        y0 = field.to_solver(batch.y0)

        def losses() -> torch.Tensor:
            params = field.rollout_params()
            z_hat = field.from_solver(rollout(field, params, y0, batch.times, p, max_steps, compile))[:, batch.skip:]
            loss = data_loss(z_hat, batch.z, p.data_loss, obs_std)
            if penalty is None:
                return loss
            state_params = params if field.solver_scale is None else field.rollout_params(solver_coordinates=False)
            return loss + penalty(field.evaluator(state_params), z_hat)

        return field, batch, losses


class NeuralODEModel(AbstractModel):
    """Trained neural ODEs; forecasts from each model's y0 with the training solver (heun: through
    the forecast times with the method's `step`).

    loss_history : (epochs run, n_models) training losses; a model whose loss was ever non-finite
                   is diverged and forecasts NaN.
    """

    def __init__(
        self, field: VectorField, y0: torch.Tensor, t0: float, loss_history: np.ndarray,
        params: NeuralODEParams, max_steps: int | None = None,
    ):
        self.field = field.eval().requires_grad_(False)
        self.y0 = y0
        self.t0 = t0
        self.loss_history = loss_history
        self.diverged = ~np.isfinite(loss_history).all(axis=0)
        self.params = params
        self.max_steps = max_steps

    def forecast(self, t: np.ndarray) -> np.ndarray:
        """States on t (any increasing times, starting at the initial time t0), no graph kept. heun:
        steps through t (`heun_grid`); adaptive: each model solved alone, in chunks of
        FORECAST_CHUNK output times, each with the training solves' step budget; from a chunk whose
        solve fails or turns non-finite on, NaN."""
        t = np.asarray(t, np.float64)
        if t.ndim != 1 or len(t) == 0 or abs(t[0] - self.t0) > 1e-9 * max(1.0, abs(self.t0)):
            raise ValueError(f"the forecast grid must start at the initial time {self.t0}")
        params = self.field.rollout_params()  # parameters frozen: no graph
        y0 = self.field.to_solver(self.y0)
        if self.params.solver == "heun":
            f = self.field.evaluator(params)
            if len(t) == 1:  # no step is taken on a one-point grid
                traj = y0.unsqueeze(0)
            else:
                dt, out_index = heun_grid(t.tolist(), self.params.step)
                traj = heun_forecast(f, y0, self.t0, dt, len(t) - 1) if out_index is None \
                    else heun_forecast_at(f, y0, dt)[torch.as_tensor(out_index, device=y0.device)]
            out = self.field.from_solver(traj.transpose(0, 1)).to("cpu", torch.float64).numpy().copy()
        else:
            out = np.stack([self._forecast_adaptive(tuple(p[b : b + 1] for p in params), b, y0, t)
                            for b in range(len(self.y0))])
        out[self.diverged] = np.nan
        return out

    def _forecast_adaptive(self, params: tuple[torch.Tensor, ...], b: int, y0: torch.Tensor, t: np.ndarray) -> np.ndarray:
        """Model b's forecast (len(t), n) by chunks, each continuing from the previous chunk's end."""
        out = np.full((len(t), self.y0.shape[-1]), np.nan)
        out[0] = self.y0[b].to("cpu", torch.float64).numpy()
        f, y = self.field.evaluator(params), y0[b : b + 1]
        scale = self.field.from_solver(torch.ones_like(y0))[b].to("cpu", torch.float64).numpy()
        options = solve_options(self.params, t, self.max_steps)
        for start in range(0, len(t) - 1, FORECAST_CHUNK):
            times = t[start : start + FORECAST_CHUNK + 1].tolist()
            try:
                with torch.no_grad():
                    ys = odeint_with_grad(f, y, times, (), self.params.solver, "backprop", **options)[:, 0]
            except StepLimitExceeded:
                break
            chunk = ys.to("cpu", torch.float64).numpy() * scale
            finite = np.isfinite(chunk).all(axis=1)
            out[start : start + len(times)] = np.where(np.logical_and.accumulate(finite)[:, None], chunk, np.nan)
            if not finite.all():
                break
            y = ys[-1:]
        return out
