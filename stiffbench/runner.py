"""The runner: expand a suite into cells, run the cells the store lacks, record every cell.

A cell is (system, method variant, seed). Its key hashes everything that determines its result:
system name, validated system parameters and plugin version, method name, validated method
parameters and plugin version, seed, epochs and budget. The label is not part of the key (it
only names the row), so renaming a variant does not retrain it.

Cells are trained in batches (`plan_batches`): a method with `batches_seeds` receives all seeds
of a variant in one `fit` call, and variants of one method whose `batch_key()` agree are trained
together through `fit_batch`. Training time is recorded per cell as the batch's time divided by
its number of models (the amortised cost; the batch size is in provenance). The wall-clock
budget of a batch is `budget_s` times its number of models.
"""

from __future__ import annotations

import datetime as _dt
import platform
import resource
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from pydantic import ValidationError

from . import __version__
from .api import (
    AbstractMethod,
    AbstractMetric,
    AbstractSystem,
    BatchMember,
    BudgetExceeded,
    FitConfig,
    KnownPhysics,
    Trajectory,
    missing_capabilities,
)
from .hashing import config_hash
from .registry import PluginLoadError, PluginSpec, Registry, UnknownPluginError
from .scoring import score
from .store import CellRecord, Store
from .suite import MethodEntry, Suite, SuiteError, SystemEntry, validation_message


@dataclass
class ResolvedPlugin:
    """A suite entry bound to its plugin: the class and validated params, or the load error."""

    entry: SystemEntry | MethodEntry
    spec: PluginSpec
    cls: type | None
    params: Any
    load_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def params_json(self) -> dict:
        return self.params.model_dump(mode="json") if self.cls is not None else dict(self.entry.params)

    def provenance(self) -> dict:
        return {"name": self.spec.name, "distribution": self.spec.distribution, "version": self.spec.version}


@dataclass
class Cell:
    system: ResolvedPlugin
    method: ResolvedPlugin
    seed: int
    key: str

    @property
    def label(self) -> str:
        return self.method.entry.label


@dataclass
class RunReport:
    """What a run did: counts, records, wall time and peak memory of this process."""

    total: int
    cached: int
    to_run: int
    cells: list["Cell"] = field(default_factory=list)
    records: list[CellRecord] = field(default_factory=list)
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0


def resolve_plugin(registry: Registry, kind: str, entry: SystemEntry | MethodEntry, where: str) -> ResolvedPlugin:
    """Bind a suite entry to its plugin. Unknown names and bad params raise SuiteError; a plugin
    that fails to import is returned with `load_error` set (its cells record status load_error)."""
    name = entry.name if isinstance(entry, SystemEntry) else entry.method
    try:
        spec = registry.spec(kind, name)
    except UnknownPluginError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    try:
        cls = registry.load(kind, name)
    except PluginLoadError as exc:
        return ResolvedPlugin(entry, spec, None, None, load_error=str(exc))
    try:
        params = cls.Params(**entry.params)
    except ValidationError as exc:
        raise SuiteError(validation_message(exc, f"{where}.params")) from None
    return ResolvedPlugin(entry, spec, cls, params)


def expand_cells(suite: Suite, registry: Registry) -> list[Cell]:
    """All cells of the suite in order system x method x seed, with their keys.

    A method entry's `system_params` override the system's parameters for that variant's cells.
    """
    systems = [resolve_plugin(registry, "systems", s, f"systems[{i}] ({s.name})") for i, s in enumerate(suite.systems)]
    methods = [resolve_plugin(registry, "methods", m, f"methods[{i}] ({m.label})") for i, m in enumerate(suite.methods)]
    cells = []
    for system in systems:
        for i, method in enumerate(methods):
            override = method.entry.system_params.get(system.name)
            cell_system = system
            if override:
                entry = SystemEntry(name=system.name, params={**system.entry.params, **override})
                where = f"methods[{i}] ({method.entry.label}).system_params.{system.name}"
                cell_system = resolve_plugin(registry, "systems", entry, where)
            for seed in suite.seeds:
                key = config_hash(
                    {
                        "system": cell_system.name,
                        "system_params": cell_system.params_json(),
                        "system_plugin": [cell_system.spec.distribution, cell_system.spec.version],
                        "method": method.name,
                        "method_params": method.params_json(),
                        "method_plugin": [method.spec.distribution, method.spec.version],
                        "seed": seed,
                        "epochs": suite.epochs,
                        "budget_s": suite.budget_s,
                    }
                )
                cells.append(Cell(cell_system, method, seed, key))
    return cells


def plan_batches(cells: list[Cell]) -> list[list[Cell]]:
    """Split the cells to run into training batches, in first-appearance order.

    Seeds of one variant share a batch when the method `batches_seeds`; variants of one method on
    one system share a batch when their `batch_key()` values are equal and not None. Everything
    else (including cells whose plugins failed to load) runs alone or per variant.
    """
    batches: dict[tuple, list[Cell]] = {}
    for cell in cells:
        cls = cell.method.cls
        if cls is None or cell.system.cls is None:
            key = ("load_error", id(cell.system), id(cell.method))
        elif not cls.batches_seeds:
            key = ("alone", cell.key)
        else:
            variant_key = cls(cell.method.params).batch_key()
            if variant_key is None:
                key = ("variant", id(cell.system), id(cell.method))
            else:
                key = ("shared", cell.system.name, cell.method.name, variant_key)
        batches.setdefault(key, []).append(cell)
    return list(batches.values())


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a CUDA device is visible, else "cpu"; validates explicit choices."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SuiteError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise SuiteError(f"--device {device}: choose auto, cpu or cuda")
    return device


def peak_rss_mb() -> float:
    """Peak resident set size of this process and its finished children, in MiB (Linux: KiB units)."""
    scale = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / (1024 * 1024)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * scale


class Runner:
    """Runs a suite's missing cells into a store. `log` receives one-line progress messages."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        device: str = "cpu",
        cache_dir: str | None = None,
        log: Callable[[str], None] | None = None,
        announce: Callable[[str], None] | None = None,
        progress_every_s: float = 5.0,
    ):
        self.registry = registry
        self.store = store
        self.device = device
        self.cache_dir = cache_dir
        self.log = log or (lambda msg: None)
        self.announce = announce or self.log
        self.progress_every_s = progress_every_s
        classes, self.metric_load_errors = registry.load_all("metrics")
        self.metrics: list[AbstractMetric] = [cls() for cls in classes.values()]

    def run(self, suite: Suite, cells: list[Cell] | None = None) -> RunReport:
        """Run the cells of `suite` (expanded here unless given) that the store does not hold."""
        start = time.perf_counter()
        cells = expand_cells(suite, self.registry) if cells is None else cells
        final = self.store.final_keys(c.key for c in cells)
        todo = [c for c in cells if c.key not in final]
        report = RunReport(total=len(cells), cached=len(cells) - len(todo), to_run=len(todo), cells=cells)
        self.announce(f"cells: {report.total} total, {report.cached} cached, {report.to_run} to run")
        for error in self.metric_load_errors:
            self.log(f"warning: metric {error.name} not loaded: {error.reason}")
        done = 0
        for batch in plan_batches(todo):
            for record, forecast in self._run_batch(suite, batch, done, report.to_run):
                self.store.put(record, forecast)
                report.records.append(record)
                done += 1
                self.log(_record_line(record, done, report.to_run))
        report.wall_s = time.perf_counter() - start
        report.peak_rss_mb = peak_rss_mb()
        return report

    # ------------------------------------------------------------------------------------------
    def _run_batch(self, suite: Suite, batch: list[Cell], done: int, total: int):
        """Train one batch, forecast, score; returns (record, forecast or None) per cell."""
        first = batch[0]
        if first.system.load_error or first.method.load_error:
            reason = first.system.load_error or first.method.load_error
            return [(self._record(suite, c, "load_error", reason), None) for c in batch]
        systems = {id(c.system): c.system.cls(c.system.params) for c in batch}
        system: AbstractSystem = systems[id(first.system)]
        method: AbstractMethod = first.method.cls(first.method.params)
        missing = missing_capabilities(method, system)
        if missing:
            reason = f"method {method.name} requires {', '.join(missing)}, which system {system.name} lacks"
            return [(self._record(suite, c, "n/a", reason), None) for c in batch]
        labels = list(dict.fromkeys(c.label for c in batch))
        what = f"{system.name} x {', '.join(labels)} seeds {','.join(map(str, sorted({c.seed for c in batch})))}"
        self.log(f"[{done + 1}-{done + len(batch)}/{total}] training {what} ({len(batch)} models, {suite.epochs} epochs)")
        try:
            tasks = {key: self._task(sys_obj, method) for key, sys_obj in systems.items()}
            references = {key: sys_obj.reference(sys_obj.horizon, self.cache_dir) for key, sys_obj in systems.items()}
        except Exception as exc:
            return [(self._record(suite, c, "error", f"system failed: {_one_line(exc)}"), None) for c in batch]
        grid = tasks[id(first.system)].forecast_t
        if any(len(t.forecast_t) != len(grid) or not np.array_equal(t.forecast_t, grid) for t in tasks.values()):
            return [r for c in batch for r in self._run_batch(suite, [c], done, total)]
        config = FitConfig(
            epochs=suite.epochs,
            device=self.device,
            deadline=None if suite.budget_s is None else time.monotonic() + suite.budget_s * len(batch),
            progress=self._progress_printer(what, suite.epochs),
        )
        t0 = time.perf_counter()
        try:
            if len(labels) == 1:
                model = method.fit(tasks[id(first.system)], [c.seed for c in batch], config)
            else:
                members = [BatchMember(c.method.params, tasks[id(c.system)], c.seed) for c in batch]
                model = type(method).fit_batch(members, config)
            train_s = (time.perf_counter() - t0) / len(batch)
            t1 = time.perf_counter()
            forecast = np.asarray(model.forecast(grid), dtype=np.float64)
            forecast_s = (time.perf_counter() - t1) / len(batch)
        except BudgetExceeded as exc:
            return [(self._record(suite, c, "timeout", str(exc)), None) for c in batch]
        except Exception as exc:  # a plugin's failure is a result, not a crash
            return [(self._record(suite, c, "error", _one_line(exc)), None) for c in batch]
        expected = (len(batch), len(grid), len(system.state_names))
        if forecast.shape != expected:
            reason = f"forecast has shape {forecast.shape}, expected {expected}"
            return [(self._record(suite, c, "error", reason), None) for c in batch]
        results = []
        for i, cell in enumerate(batch):
            cell_system = systems[id(cell.system)]
            pred = Trajectory(grid, forecast[i], cell_system.state_names)
            scored = score(cell_system, self.metrics, pred, references[id(cell.system)], cell_system.evaluation_windows())
            reason = "; ".join(filter(None, [scored.reason, *scored.metric_errors])) or None
            record = self._record(suite, cell, scored.status, reason, scored.metrics, train_s, forecast_s, len(batch))
            results.append((record, (grid, forecast[i])))
        return results

    def _task(self, system: AbstractSystem, method: AbstractMethod):
        """The system's training task, with its vector field when the method requires physics."""
        task = system.training_task(self.cache_dir)
        if isinstance(system, KnownPhysics) and KnownPhysics in method.requires:
            task = replace(task, physics=system.torch_vector_field())
        return task

    def _record(self, suite, cell: Cell, status, reason=None, metrics=None, train_s=None, forecast_s=None, batch=1):
        import torch

        provenance = {
            "stiffbench": __version__,
            "system_plugin": cell.system.provenance(),
            "method_plugin": cell.method.provenance(),
            "system_params": cell.system.params_json(),
            "method_params": cell.method.params_json(),
            "label": cell.label,
            "seed": cell.seed,
            "epochs": suite.epochs,
            "budget_s": suite.budget_s,
            "batch_size": batch,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "device": self.device,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        }
        return CellRecord(
            key=cell.key, system=cell.system.name, method=cell.method.name, label=cell.label, seed=cell.seed,
            status=status, reason=reason, metrics=metrics or {}, train_s=train_s, forecast_s=forecast_s,
            provenance=provenance, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )

    def _progress_printer(self, what: str, epochs: int) -> Callable[[int, float], None]:
        last = [time.monotonic()]

        def progress(epoch: int, loss: float) -> None:
            now = time.monotonic()
            if now - last[0] >= self.progress_every_s or epoch == epochs:
                last[0] = now
                self.log(f"    {what}: epoch {epoch}/{epochs}, loss {loss:.4g}")

        return progress


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _record_line(record: CellRecord, done: int, total: int) -> str:
    extra = f" ({record.reason})" if record.reason else ""
    timing = f", train {record.train_s:.1f}s" if record.train_s is not None else ""
    return f"[{done}/{total}] {record.system} x {record.label} seed {record.seed}: {record.status}{timing}{extra}"
