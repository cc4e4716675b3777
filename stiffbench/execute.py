"""Execute one training batch: train, forecast, score. Runs in whichever process an executor picks.

A `BatchJob` carries everything needed (suite settings, the cells with their resolved plugin
classes and validated parameters, device, cache folder, metric classes) and is picklable, so the
same `execute_batch` runs in the driver (serial executor), in an isolated child process, or on a
Dask worker. It returns one `(CellRecord, forecast or None)` per cell and never raises for a
plugin's fault: failures become statuses.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from . import __version__
from .api import (
    AbstractMethod,
    AbstractSystem,
    BatchMember,
    BudgetExceeded,
    FitConfig,
    KnownPhysics,
    ParametrisedPhysics,
    Trajectory,
    missing_capabilities,
)
from .checkpoint import DEFAULT_EVERY_S, Checkpointer, checkpoint_path
from .curves import training_curves
from .keys import KEY_RULE
from .progress import line_reporter
from .scoring import score
from .store import CellRecord
from .structure import KnownTerms, StructuredTask, known_terms_of

Result = tuple[CellRecord, "tuple[np.ndarray, np.ndarray] | None"]


@dataclass
class BatchJob:
    """One batch of cells (see runner.plan_batches) and how to run it.

    budget_s : the suite's wall-clock budget per cell (None: unlimited); the batch may train for
               budget_s x len(cells) seconds, checked cooperatively at every epoch; executors
               that isolate the batch in a process also stop it hard (`hard_limit_s`).
    checkpoint_dir : where the batch's training checkpoint lives (None: no checkpoints; see
               stiffbench.checkpoint); it is removed once the batch has its results.
    """

    epochs: int
    budget_s: float | None
    cells: list
    device: str
    cache_dir: str | None
    metric_classes: list
    metric_params: dict = field(default_factory=dict)
    metric_revisions: dict = field(default_factory=dict)
    verbose: bool = True
    progress_every_s: float = 5.0
    torch_threads: int | None = None
    grace_s: float = 60.0
    max_solver_steps: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every_s: float = DEFAULT_EVERY_S

    @property
    def training_budget_s(self) -> float | None:
        return None if self.budget_s is None else self.budget_s * len(self.cells)

    @property
    def hard_limit_s(self) -> float | None:
        """Wall-clock limit after which an isolated batch is killed: the training budget plus a
        grace period (10 % of it, at least `grace_s`) for start-up, forecasting and scoring."""
        budget = self.training_budget_s
        return None if budget is None else budget + max(self.grace_s, 0.1 * budget)

    def describe(self) -> str:
        first = self.cells[0]
        labels = ", ".join(dict.fromkeys(c.label for c in self.cells))
        seeds = ",".join(map(str, sorted({c.seed for c in self.cells})))
        return f"{first.system_label} x {labels} seeds {seeds}"


def execute_batch(job: BatchJob, reporter=None) -> list[Result]:
    """Train the batch's models, forecast, score each cell; plugin faults become statuses.

    `reporter` receives the batch's progress (see stiffbench.progress); None: plain lines on
    stderr when `job.verbose`, an epoch line at most every `job.progress_every_s` seconds.

    It leaves the calling process as it found it: torch's thread count is set to
    `job.torch_threads` for the batch (so a batch in the driver computes what an isolated one
    does) and restored afterwards. Process-wide tuning that cannot be undone (glibc's mmap
    threshold, `heap.keep_large_blocks_mapped`) belongs to the worker processes (`worker.main`)."""
    if reporter is None:
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if job.verbose else (lambda msg: None)
        reporter = line_reporter(log, job.progress_every_s)
    with _torch_threads(job.torch_threads):
        return _execute(job, job.cells, reporter)


@contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op thread count set to n (None: unchanged) inside the block."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def failed_records(job: BatchJob, status: str, reason: str) -> list[Result]:
    """The same status and reason for every cell of the batch (no forecasts)."""
    return [(make_record(job, c, status, reason), None) for c in job.cells]


def _execute(job: BatchJob, cells: list, reporter) -> list[Result]:
    first = cells[0]
    if first.system.load_error or first.method.load_error:
        return [(make_record(job, c, "load_error", first.system.load_error or first.method.load_error), None) for c in cells]
    systems = {id(c.system): c.system.cls(c.system.params) for c in cells}
    method: AbstractMethod = first.method.cls(first.method.params)
    missing = {key: missing_capabilities(method, sys_obj) for key, sys_obj in systems.items()}
    if any(missing.values()):  # the pairings that do not apply are n/a; the others run on
        na = [c for c in cells if missing[id(c.system)]]
        rest = [c for c in cells if not missing[id(c.system)]]
        records = [(make_record(job, c, "n/a", f"method {method.name} requires {', '.join(missing[id(c.system)])}, "
                                f"which system {c.system_label} lacks"), None) for c in na]
        return records + (_execute(job, rest, reporter) if rest else [])
    try:
        tasks = {key: task_for(sys_obj, method, job.cache_dir) for key, sys_obj in systems.items()}
        references = {key: sys_obj.reference(sys_obj.horizon, job.cache_dir) for key, sys_obj in systems.items()}
    except Exception as exc:
        return [(make_record(job, c, "error", f"system failed: {one_line(exc)}"), None) for c in cells]
    grid = tasks[id(first.system)].forecast_t
    if any(not np.array_equal(t.forecast_t, grid) for t in tasks.values()):
        return [r for c in cells for r in _execute(job, [c], reporter)]  # differing grids cannot share a batch
    reporter.started(replace(job, cells=cells).describe(), len(cells), job.epochs)
    checkpoint = None
    if job.checkpoint_dir is not None:
        path = checkpoint_path(job.checkpoint_dir, [c.key for c in cells])
        checkpoint = Checkpointer(path, job.checkpoint_every_s, reporter.log)
    config = FitConfig(
        epochs=job.epochs,
        device=job.device,
        deadline=None if job.budget_s is None else time.monotonic() + job.budget_s * len(cells),
        progress=reporter.epoch,
        max_steps=job.max_solver_steps,
        checkpoint=checkpoint,
    )
    try:
        return _fit_and_score(job, cells, method, systems, tasks, references, grid, config)
    finally:
        if checkpoint is not None:  # the batch has its results: a rerun must not resume from it
            checkpoint.remove()


def _fit_and_score(job, cells, method, systems, tasks, references, grid, config) -> list[Result]:
    first = cells[0]
    system = systems[id(first.system)]
    labels = list(dict.fromkeys(c.label for c in cells))
    t0 = time.perf_counter()
    try:
        if len(labels) == 1 and len(systems) == 1:
            model = method.fit(tasks[id(first.system)], [c.seed for c in cells], config)
        else:
            members = [BatchMember(c.method.params, tasks[id(c.system)], c.seed) for c in cells]
            model = type(method).fit_batch(members, config)
        resumed_s = config.checkpoint.resumed_train_s if config.checkpoint is not None else 0.0
        train_s = (time.perf_counter() - t0 + resumed_s) / len(cells)  # including the time before a resume
        t1 = time.perf_counter()
        forecast = np.asarray(model.forecast(grid), dtype=np.float64)
        forecast_s = (time.perf_counter() - t1) / len(cells)
    except BudgetExceeded as exc:
        return [(make_record(job, c, "timeout", str(exc)), None) for c in cells]
    except Exception as exc:  # a plugin's failure is a result, not a crash
        return [(make_record(job, c, "error", one_line(exc)), None) for c in cells]
    expected = (len(cells), len(grid), len(system.state_names))
    if forecast.shape != expected:
        reason = f"forecast has shape {forecast.shape}, expected {expected}"
        return [(make_record(job, c, "error", reason), None) for c in cells]
    metrics = [cls(job.metric_params.get(cls.name, {})) for cls in job.metric_classes]
    curves = training_curves(model, len(cells))
    results = []
    for i, cell in enumerate(cells):
        cell_system = systems[id(cell.system)]
        pred = Trajectory(grid, forecast[i], cell_system.state_names)
        scored = score(cell_system, metrics, pred, references[id(cell.system)], cell_system.evaluation_windows())
        reason = "; ".join(filter(None, [scored.reason, *scored.metric_errors])) or None
        record = make_record(job, cell, scored.status, reason, scored.all_values(), train_s, forecast_s, len(cells))
        record.curve = curves[i]
        results.append((record, (grid, forecast[i])))
    return results


def task_for(system: AbstractSystem, method: AbstractMethod | type[AbstractMethod], cache_dir):
    """The system's training task, with its vector field (as such, or as a function of its physical
    parameters) or its known terms when the method requires them."""
    task = system.training_task(cache_dir)
    if isinstance(system, KnownPhysics) and KnownPhysics in method.requires:
        task = replace(task, physics=system.torch_vector_field())
    if system.has_capability(ParametrisedPhysics) and ParametrisedPhysics in method.requires:
        task = replace(task, physics_model=system.physics_model())
    if KnownTerms in method.requires and system.has_capability(KnownTerms):
        task = StructuredTask.of(task, known_terms_of(system))
    return task


def make_record(job: BatchJob, cell, status, reason=None, metrics=None, train_s=None, forecast_s=None, batch=None):
    """A CellRecord with full provenance (versions, device, threads, parameters)."""
    import torch

    provenance = {
        "stiffbench": __version__,
        "system_plugin": cell.system.provenance(),
        "method_plugin": cell.method.provenance(),
        "system_params": cell.system.params_json(),
        "method_params": cell.method.params_json(),
        "label": cell.label,
        "system_label": cell.system_label,
        "metric_params": job.metric_params,
        "code_revision": cell.revision,
        "metric_revisions": job.metric_revisions,
        "key_rule": KEY_RULE,
        "seed": cell.seed,
        "epochs": job.epochs,
        "budget_s": job.budget_s,
        "batch_size": batch or len(job.cells),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": job.device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    return CellRecord(
        key=cell.key, system=cell.system.name, method=cell.method.name, label=cell.label, seed=cell.seed,
        status=status, reason=reason, metrics=metrics or {}, train_s=train_s, forecast_s=forecast_s,
        provenance=provenance, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def one_line(exc: BaseException) -> str:
    """'Type: first line of the message' for a status reason."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
