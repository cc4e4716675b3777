"""`stiffbench bench training`: the cost of one training epoch of the paper's PI-NODE-SR
configuration (MLP 5-64-128-64-4 with LayerNorm, fixed-step Heun at the sampling step 0.01 ms over
[0, 14.68] ms, data loss + 1.5 x scale-aware residual at the observations, Adam), timed in one process:

baseline  plain torchdiffeq.odeint(method="heun2") with backprop, one model (an nn.Sequential);
ours      the built-in pinode_sr's `fit_batch` on the paper suite's Heun batch: its five variants
          sharing solver and gradient mode (lam 1.5, 0, 0.5, 2.5 and noise preset "none") x seeds.

max_rel_grad_diff checks that the two compute the same gradient: for the first model of each
variant, the gradient of its loss with respect to every parameter tensor by both paths, from
identical weights and data; per tensor max |g_ours - g_plain| / max |g_plain|, the largest over
tensors and models. It is computed in float64 (so that it measures the difference of the math,
not float32 rounding), through the same code and compile setting as the timing.
max_rel_grad_diff_float32 is the same on the timed float32 batch itself; each path's own float32
rounding error against float64 is of the same size there (about 1e-5).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

# Only the standard library at import time: the CLI builds its parser without importing torch.

# (label, method params, system params) of the paper suite's pinode_sr variants that train as one batch.
PAPER_BATCH = (
    ("pinode_sr", {}, {}),
    ("pinode_sr-no_physics", {"lam": 0.0}, {}),
    ("pinode_sr-no_noise", {}, {"noise_preset": "none"}),
    ("pinode_sr-lam0.5", {"lam": 0.5}, {}),
    ("pinode_sr-lam2.5", {"lam": 2.5}, {}),
)


def _method():
    from stiffbench.registry import Registry

    return Registry().load("methods", "pinode_sr")


def paper_members(n_models: int, dtype: str, compile: bool, steps: int | None, cache_dir=None) -> list:
    """BatchMembers: model i is variant i % 5 with seed i // 5; steps: truncate the training window
    to its first `steps` Heun steps (None: all of it)."""
    from stiffbench.api import BatchMember
    from stiffbench.registry import Registry

    system_cls, method_cls = Registry().load("systems", "hh"), _method()
    tasks = {}
    for _, _, system_params in PAPER_BATCH:
        system = system_cls(system_params)
        task = replace(system.training_task(cache_dir), physics=system.torch_vector_field())
        if steps is not None:
            obs = task.observations
            task = replace(task, observations=replace(obs, t=obs.t[: steps + 1], y=obs.y[: steps + 1]))
        tasks[tuple(system_params.items())] = task
    members = []
    for i in range(n_models):
        _, params, system_params = PAPER_BATCH[i % len(PAPER_BATCH)]
        method_params = method_cls.Params(**params, dtype=dtype, compile=compile)
        members.append(BatchMember(method_params, tasks[tuple(system_params.items())], i // len(PAPER_BATCH)))
    return members


@dataclass
class PlainModel:
    """Model b of a batched neural ODE as one would write it for torchdiffeq: `net` an
    nn.Sequential(Linear, Tanh, LayerNorm, ..., Linear) on [(z - mean) / std, (t - t_mean) / t_std],
    output times the derivative scales; `pairs` matches each of its parameters with the batched
    parameter it was copied from."""

    net: object
    consts: dict
    pairs: list

    @classmethod
    def of(cls, field, b: int) -> "PlainModel":
        import torch
        from torch import nn

        from stiffbench.nn import LAYER_NORM_EPS

        mlp, layers, pairs = field.mlp, [], []
        factory = dict(dtype=mlp.weights[0].dtype, device=mlp.weights[0].device)
        for i, (w, bias) in enumerate(zip(mlp.weights, mlp.biases)):
            layers.append(nn.Linear(w.shape[2], w.shape[1], **factory))
            pairs += [(layers[-1].weight, w), (layers[-1].bias, bias)]
            if i < len(mlp.weights) - 1:
                layers.append(nn.Tanh())
                if mlp.layer_norm:
                    layers.append(nn.LayerNorm(w.shape[1], eps=LAYER_NORM_EPS, **factory))
                    pairs += [(layers[-1].weight, mlp.norm_weights[i]), (layers[-1].bias, mlp.norm_biases[i])]
        with torch.no_grad():
            for plain, batched in pairs:
                plain.copy_(batched[b])
        names = ("z_mean", "z_std", "t_mean", "t_std", "out_scale")
        consts = {name: getattr(field, name)[b].reshape(-1) for name in names}
        return cls(nn.Sequential(*layers), consts, pairs)

    def __call__(self, t, z):
        import torch

        c = self.consts
        tn = ((t - c["t_mean"]) / c["t_std"]).expand(*z.shape[:-1], 1)
        return self.net(torch.cat([(z - c["z_mean"]) / c["z_std"], tn], -1)) * c["out_scale"]


def plain_loss(func: PlainModel, member, batch, b: int):
    """The PI-NODE-SR loss (eqs. 6-8) written directly: torchdiffeq heun2 rollout on the observation
    times, data loss, and lam x the scale-aware residual at the observations."""
    import torchdiffeq

    t, z = batch.t, batch.z[b]
    s = t.new_tensor(batch.stats[b].deriv_std)
    z_hat = torchdiffeq.odeint(func, batch.y0[b], t, method="heun2")
    residual = (func(t[:, None], z) - member.task.physics(t, z)) / s
    return (z_hat - z).square().sum(-1).mean() + member.params.lam * residual.square().sum(-1).mean()


def grad_difference(members: list, n_checked: int, device: str, compile: bool) -> float:
    """max over the first n_checked members and their parameter tensors of
    max|g_ours - g_plain| / max|g_plain|, from the same initial weights and data."""
    field, batch, losses = _method().objective(members, device, compile)
    losses().sum().backward()
    worst = 0.0
    for b, member in enumerate(members[:n_checked]):
        func = PlainModel.of(field, b)
        plain_loss(func, member, batch, b).backward()
        for plain, ours in func.pairs:
            worst = max(worst, float((ours.grad[b] - plain.grad).abs().max() / plain.grad.abs().max()))
    return worst


def _plain_epoch_ms(member, device: str, epochs: int) -> float:
    """ms per epoch (after one warm-up epoch) of the plain path: odeint heun2, backprop, Adam."""
    import torch

    field, batch, _ = _method().objective([member], device, False)
    func = PlainModel.of(field, 0)
    opt = torch.optim.Adam(func.net.parameters(), lr=member.params.lr)

    def epoch():
        opt.zero_grad(set_to_none=True)
        plain_loss(func, member, batch, 0).backward()
        opt.step()

    epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return 1000 * (time.perf_counter() - start) / epochs


def training_benchmark(
    models: int = 25,
    epochs: int = 3,
    device: str = "cpu",
    compile: bool = True,
    steps: int | None = None,
    baseline_epochs: int = 2,
    cache_dir=None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Time the plain baseline and stiffbench's batched fit in this process; see the module docstring.

    steps: truncate the training window to its first `steps` Heun steps (None: the paper's 1468).
    The batched time is a whole `fit_batch` of `epochs` epochs (set-up included) after a one-epoch
    warm-up fit that compiles; compile_s is that warm-up's excess over one epoch. log receives
    one line per stage.
    """
    import torch

    from stiffbench.api import FitConfig

    members = paper_members(models, "float32", compile, steps, cache_dir)
    log(f"plain torchdiffeq heun2: {baseline_epochs + 1} epochs of one model")
    baseline_ms = _plain_epoch_ms(members[0], device, baseline_epochs)
    fit_batch = _method().fit_batch
    log(f"stiffbench: warm-up epoch of {models} models" + (" (compiles, about 30-40 s)" if compile else ""))
    start = time.perf_counter()
    fit_batch(members, FitConfig(epochs=1, device=device))
    warm_s = time.perf_counter() - start
    log(f"stiffbench: {epochs} epochs timed")
    start = time.perf_counter()
    fit_batch(members, FitConfig(epochs=epochs, device=device))
    ms = 1000 * (time.perf_counter() - start) / (epochs * models)
    n_variants = min(models, len(PAPER_BATCH))
    log("gradients against the plain path (float64" + (", compiles again)" if compile else ")"))
    float64_members = paper_members(n_variants, "float64", compile, steps, cache_dir)
    return {
        "baseline_ms_per_model_epoch": baseline_ms,
        "ms_per_model_epoch": ms,
        "models_batched": models,
        "ratio": baseline_ms / ms,
        "max_rel_grad_diff": grad_difference(float64_members, n_variants, device, compile),
        "max_rel_grad_diff_float32": grad_difference(members, n_variants, device, compile),
        "compile": compile,
        "compile_s": max(0.0, warm_s - ms * models / 1000),
        "epochs_timed": epochs,
        "steps": steps if steps is not None else len(members[0].task.observations.t) - 1,
        "device": device,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


def format_table(result: dict) -> str:
    """The benchmark result as a small plain-text table."""
    rows = [
        ("plain torchdiffeq heun2, 1 model", f"{result['baseline_ms_per_model_epoch']:.1f}"),
        (f"stiffbench fit_batch, {result['models_batched']} models", f"{result['ms_per_model_epoch']:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'path':<{width}}  ms per model-epoch", *(f"{name:<{width}}  {value:>18}" for name, value in rows)]
    lines += [
        f"ratio {result['ratio']:.1f}; max relative gradient difference {result['max_rel_grad_diff']:.1e} (float64), "
        f"{result['max_rel_grad_diff_float32']:.1e} (float32)",
        f"{result['steps']} Heun steps, {result['epochs_timed']} epochs timed, compile={result['compile']} "
        f"(compile {result['compile_s']:.0f} s), device {result['device']}, {result['torch_threads']} torch thread(s)",
    ]
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `stiffbench bench training`."""
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    parser.add_argument("--models", type=_positive_int, default=25,
                        help="models in the batch (default 25: 5 variants x 5 seeds)")
    parser.add_argument("--epochs", type=_positive_int, default=3, help="epochs timed for the batched path (default 3)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="default: cpu")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="time the eager path")
    parser.add_argument("--threads", type=_positive_int, default=1, help="torch threads (default 1: the per-core cost)")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark (progress on stderr), print the table, write the JSON if asked.
    A bad --device raises `stiffbench.suite.SuiteError`, as for `stiffbench run`."""
    import torch

    from stiffbench.runner import resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    result = training_benchmark(
        models=args.models, epochs=args.epochs, device=device, compile=args.compile,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0
