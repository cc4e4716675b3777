"""Machinery shared by the built-in methods: observation statistics, the data loss, the batched
Adam loop, and the neural ODE (vector field, Heun training rollout, forecast).

All seeds of a `fit` call are trained as one `BatchedMLP`. The optimised objective is the sum of
the models' losses, so each model's gradient is the one it would get alone, and Adam, being
elementwise, then gives each model the trajectory it would follow alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from stiffbench.api import AbstractMethod, AbstractModel, FitConfig, PluginParams, TrainingTask, Trajectory
from stiffbench.nn import BatchedMLP
from stiffbench.solvers.heun import heun_forecast, heun_rollout

FieldFn = Callable[[float | torch.Tensor, torch.Tensor], torch.Tensor]


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
    data_loss: Literal["sum_states", "mean_states"] = Field(
        "sum_states",
        description="Reduction of the data loss (eq. 7), in raw units over all N observation samples: 'sum_states' "
        "= (1/N) sum_i ||z_hat_i - z_i||^2 as in the paper; 'mean_states' divides that by the number of "
        "states, as the public reproduction's mean over all entries does.",
    )


class NeuralODEParams(NetworkParams):
    """Parameters of a neural ODE dz/dt = f_theta(z, t) (eq. 4)."""

    normalise: bool = Field(
        True,
        description="Inputs z-scored by the training observations' per-channel mean/std (t by the training times'), "
        "outputs scaled by s_j, the std of the finite-difference derivative of state j (section 3.3, "
        "'inputs and outputs are normalised by dataset statistics'); False: raw inputs and outputs.",
    )
    solver: Literal["heun"] = Field(
        "heun",
        description="Training and forecast solver: fixed-step Heun with the sampling step dt, the paper's "
        "explicit training solver (section 4.4); gradients by backprop through the steps.",
    )


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


def uniform_step(t: np.ndarray) -> float:
    """The spacing of an increasing uniform grid (ValueError otherwise; relative tolerance 1e-6)."""
    t = np.asarray(t, np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError("a uniform grid needs at least two times")
    h = (t[-1] - t[0]) / (len(t) - 1)
    if not h > 0 or np.max(np.abs(np.diff(t) - h)) > 1e-6 * h:
        raise ValueError("the time grid is not uniform and increasing")
    return float(h)


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def require_physics(task: TrainingTask, method: str):
    """The task's torch vector field; ValueError if the runner did not provide it."""
    if task.physics is None:
        raise ValueError(f"{method} needs the system's vector field (task.physics), which this task lacks")
    return task.physics


def data_loss(pred: torch.Tensor, obs: torch.Tensor, reduction: str) -> torch.Tensor:
    """Eq. 7 per model, in raw units: pred (B, N, n) vs obs (N, n) -> (B,)."""
    loss = (pred - obs).square().sum(-1).mean(-1)
    return loss / obs.shape[-1] if reduction == "mean_states" else loss


def train(
    parameters, losses: Callable[[], torch.Tensor], n_models: int, lr: float, config: FitConfig
) -> np.ndarray:
    """Full-batch Adam, one step per epoch on the sum of the per-model losses `losses()` (shape (B,)).

    Reports the mean finite loss to `config.check` every epoch. Stops early once every model's loss
    has been non-finite (nothing is left to train). Returns the loss history (epochs run, B).
    """
    opt = torch.optim.Adam(parameters, lr=lr)
    history = []
    alive = np.ones(n_models, dtype=bool)
    for epoch in range(1, config.epochs + 1):
        opt.zero_grad(set_to_none=True)
        loss = losses()
        loss.sum().backward()
        opt.step()
        values = loss.detach().to("cpu", torch.float64).numpy()
        history.append(values)
        finite = np.isfinite(values)
        alive &= finite
        config.check(epoch, float(values[finite].mean()) if finite.any() else float("nan"))
        if not alive.any():
            break
    return np.array(history, dtype=np.float64).reshape(len(history), n_models)


class VectorField(nn.Module):
    """f_theta(z, t) of B models (eq. 4): BatchedMLP on [z; t] -> dz/dt, inputs z-scored and outputs
    scaled by s_j when `normalise` (identity statistics otherwise)."""

    def __init__(self, params: NeuralODEParams, stats: ObservationStats, seeds: Sequence[int], device):
        super().__init__()
        n = len(stats.z_mean)
        dtype = torch_dtype(params.dtype)
        self.n_states = n
        self.mlp = BatchedMLP([n + 1, *params.hidden, n], seeds, params.layer_norm, dtype, device)
        norm = params.normalise
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype, device=device)  # noqa: E731
        self.register_buffer("z_mean", as_t(stats.z_mean if norm else np.zeros(n)))
        self.register_buffer("z_std", as_t(stats.z_std if norm else np.ones(n)))
        self.register_buffer("t_mean", as_t(stats.t_mean if norm else 0.0))
        self.register_buffer("t_std", as_t(stats.t_std if norm else 1.0))
        self.register_buffer("out_scale", as_t(stats.deriv_std if norm else np.ones(n)))

    def folded(self) -> FieldFn:
        """f(t, z) with the normalisation folded into the first and last layers.

        Built once per rollout (differentiably, so gradients reach the raw parameters) and then
        evaluated at the cost of the bare MLP: z (B, n) or (B, N, n); t a float, a 0-d tensor or a
        tensor of shape (N,). The raw t enters through a t-dependent first-layer bias.
        """
        n = self.n_states
        ws, bs = self.mlp.folded_layers()
        ws[-1] = ws[-1] * self.out_scale
        bs[-1] = bs[-1] * self.out_scale
        wz = ws[0][:, :n, :] / self.z_std[:, None]
        wt_1 = (ws[0][:, n, :] / self.t_std).unsqueeze(1)
        b_first_1 = bs[0] - (self.z_mean @ wz).unsqueeze(1) - wt_1 * self.t_mean
        weights_t, biases = [wz, *ws[1:]], bs[1:]

        def f(t, z):
            if isinstance(t, torch.Tensor):
                bias = b_first_1 + t.reshape(-1, 1) * wt_1
            else:
                bias = torch.add(b_first_1, wt_1, alpha=t)
            return self.mlp.evaluate(z, weights_t, [bias, *biases])

        return f

    def forward(self, t, z: torch.Tensor) -> torch.Tensor:
        return self.folded()(t, z)


@dataclass(frozen=True)
class TrainingData:
    """The task's observations as tensors: t (N,), z (N, n), y0 (n,), on the training grid t0 + k dt."""

    t: torch.Tensor
    z: torch.Tensor
    y0: torch.Tensor
    t0: float
    dt: float
    stats: ObservationStats

    @classmethod
    def of(cls, task: TrainingTask, dtype: torch.dtype, device) -> "TrainingData":
        obs = task.observations
        h = uniform_step(obs.t)
        if abs(h - task.dt) > 1e-6 * task.dt:
            raise ValueError(f"observations are spaced {h}, not the task's dt {task.dt}")
        as_t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype, device=device)  # noqa: E731
        return cls(as_t(obs.t), as_t(obs.y), as_t(task.y0), float(obs.t[0]), float(task.dt), ObservationStats.of(obs))


Penalty = Callable[[FieldFn, torch.Tensor], torch.Tensor]


class NeuralODEMethod(AbstractMethod):
    """A neural ODE trained through a Heun rollout over the whole training window from task.y0,
    on the data loss (eq. 7) plus an optional per-model `penalty`."""

    Params = NeuralODEParams
    batches_seeds = True

    def penalty(self, task: TrainingTask, data: TrainingData) -> Penalty | None:
        """Extra loss term(s) as a function of (f, z_hat (B, N, n)) -> (B,); None for data loss only."""
        return None

    def fit(self, task: TrainingTask, seeds: Sequence[int], config: FitConfig) -> "NeuralODEModel":
        p = self.params
        device = torch.device(config.device)
        data = TrainingData.of(task, torch_dtype(p.dtype), device)
        field = VectorField(p, data.stats, seeds, device)
        penalty = self.penalty(task, data)
        y0 = data.y0.expand(len(seeds), 1, -1)

        def losses() -> torch.Tensor:
            f = field.folded()
            z_hat = heun_rollout(f, y0, data.t0, data.dt, len(data.t) - 1)[:, :, 0].transpose(0, 1)
            loss = data_loss(z_hat, data.z, p.data_loss)
            return loss if penalty is None else loss + penalty(f, z_hat)

        history = train(field.parameters(), losses, len(seeds), p.lr, config)
        return NeuralODEModel(field, data.y0, data.t0, history)


class NeuralODEModel(AbstractModel):
    """Trained neural ODEs; forecasts by Heun from y0 with the forecast grid's step.

    loss_history : (epochs run, n_seeds) training losses; a model whose loss was ever non-finite
                   is diverged and forecasts NaN.
    """

    def __init__(self, field: VectorField, y0: torch.Tensor, t0: float, loss_history: np.ndarray):
        self.field = field.eval().requires_grad_(False)
        self.y0 = y0
        self.t0 = t0
        self.loss_history = loss_history
        self.diverged = ~np.isfinite(loss_history).all(axis=0)

    def forecast(self, t: np.ndarray) -> np.ndarray:
        """Heun with step = the spacing of t (uniform, starting at the training t0), no graph kept."""
        t = np.asarray(t, np.float64)
        if t.ndim != 1 or len(t) == 0 or abs(t[0] - self.t0) > 1e-9 * max(1.0, abs(self.t0)):
            raise ValueError(f"the forecast grid must start at the initial time {self.t0}")
        h = uniform_step(t) if len(t) > 1 else 0.0  # no step is taken on a one-point grid
        y0 = self.y0.expand(self.field.mlp.n_models, 1, -1)
        traj = heun_forecast(self.field.folded(), y0, self.t0, h, len(t) - 1)
        out = traj[:, :, 0].transpose(0, 1).to("cpu", torch.float64).numpy().copy()
        out[self.diverged] = np.nan
        return out
