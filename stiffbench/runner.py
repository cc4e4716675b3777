"""The runner: expand a suite into cells, run the cells the store lacks, record every cell.

A cell is (system, method variant, seed). Its key hashes its identity, everything that changes
its numbers (`stiffbench.keys` states the rule): labels, performance settings and the wall-clock
budget are not part of it, so renaming a variant, toggling compilation or raising a budget
retrains nothing that finished.

Cells are trained in batches (`plan_batches`): a method with `batches_seeds` receives all seeds
of a variant in one `fit` call, and variants of one method whose `batch_key()` agree are trained
together through `fit_batch`. Training time is recorded per cell as the batch's time divided by
its number of models (the amortised cost; the batch size is in provenance). The wall-clock
budget of a batch is `budget_s` times its number of models.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time
import uuid
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import ValidationError

from .api import AbstractMetric
from .checkpoint import DEFAULT_EVERY_S
from .execute import BatchJob
from .executors import SerialExecutor
from .hashing import config_hash
from .keys import adopt_legacy_cells, cell_key, legacy_key, rerun_for_budget
from .params import key_params
from .revision import code_revision
from .registry import PluginLoadError, PluginSpec, Registry, UnknownPluginError
from .store import CellRecord, Store
from .structure import KnownTerms, declaration_revision
from .suite import MethodEntry, Suite, SuiteError, SystemEntry, validation_message


@dataclass
class ResolvedPlugin:
    """A suite entry bound to its plugin: the class and validated params, or the load error."""

    entry: SystemEntry | MethodEntry
    spec: PluginSpec
    cls: type | None
    params: Any
    load_error: str | None = None
    revision: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    def params_json(self) -> dict:
        return self.params.model_dump(mode="json") if self.cls is not None else dict(self.entry.params)


    def provenance(self) -> dict:
        return {"name": self.spec.name, "distribution": self.spec.distribution, "version": self.spec.version}


@dataclass
class Cell:
    """One (system entry, method variant, seed); `key` by the current rule (stiffbench.keys),
    `legacy_key` the key the first rule gave it (to adopt cells stored under it); `epochs` and
    `budget_s` are its system entry's (else the suite's)."""

    system: ResolvedPlugin
    method: ResolvedPlugin
    seed: int
    key: str
    legacy_key: str = ""
    epochs: int = 0
    budget_s: float | None = None

    @property
    def label(self) -> str:
        return self.method.entry.label

    @property
    def system_label(self) -> str:
        return self.system.entry.label

    @property
    def revision(self) -> dict[str, str]:
        """The code revisions of its system and method (stiffbench.revision), as provenance records them,
        and of the declaration of the system's known terms for a method that requires them
        (`stiffbench.structure.declaration_revision`)."""
        revision = {"system": self.system.revision, "method": self.method.revision}
        if self.method.cls is not None and KnownTerms in self.method.cls.requires and self.system.cls is not None:
            revision["known_terms"] = declaration_revision(self.system.cls)
        return revision

    def is_stale(self, record: CellRecord) -> bool:
        """Whether the stored `record` of this cell was computed by code that has changed since (a
        record without a revision, stored before revisions were recorded, is not)."""
        recorded = record.provenance.get("code_revision")
        return recorded is not None and recorded != self.revision


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
    return ResolvedPlugin(entry, spec, cls, params, revision=code_revision(cls))


def expand_cells(suite: Suite, registry: Registry, device: str = "cpu") -> list[Cell]:
    """All cells of the suite in order system x method x seed, with their keys on `device`.

    A method entry's `system_params` override the system's parameters for that variant's cells;
    its `systems`, when given, limit the entries it runs on.
    Raises SuiteError for unknown names, bad parameters, and metric settings or published values
    that do not fit the registered metrics and the systems' windows.
    """
    systems = [resolve_plugin(registry, "systems", s, f"systems[{i}] ({s.label})") for i, s in enumerate(suite.systems)]
    methods = [resolve_plugin(registry, "methods", m, f"methods[{i}] ({m.label})") for i, m in enumerate(suite.methods)]
    _check_system_entries(suite, systems)
    metric_instances(registry, suite)  # validates the suite's metric parameters
    cells = []
    for system in systems:
        for i, method in enumerate(methods):
            if not suite.runs_on(method.entry, system.entry):
                continue
            override = suite.system_params_for(method.entry, system.entry)
            cell_system = system
            if override:
                entry = system.entry.model_copy(update={"params": {**system.entry.params, **override}})
                where = f"methods[{i}] ({method.entry.label}).system_params.{system.entry.label}"
                cell_system = resolve_plugin(registry, "systems", entry, where)
            epochs, budget_s = suite.epochs_for(system.entry, method.entry), suite.budget_for(system.entry, method.entry)
            for seed in suite.seeds:
                key = cell_key(cell_system, method, seed, epochs, device, suite.max_solver_steps)
                old = legacy_key(cell_system, method, seed, epochs, budget_s, suite.max_solver_steps)
                cells.append(Cell(cell_system, method, seed, key, old, epochs, budget_s))
    return cells


def _check_system_entries(suite: Suite, systems: list[ResolvedPlugin]) -> None:
    """Two entries of one system with equal parameters would be the same cells; published values
    must name windows the system has."""
    seen: dict[str, str] = {}
    for system in systems:
        same = config_hash([system.name, key_params(system.params) if system.cls else system.entry.params])
        if same in seen:
            raise SuiteError(f"systems {seen[same]!r} and {system.entry.label!r} are the same system with the same "
                             "parameters")
        seen[same] = system.entry.label
        if suite.paper is None or system.cls is None:
            continue
        windows = {w.name for w in system.cls(system.params).evaluation_windows()}
        unknown = sorted(set(suite.paper.values.get(system.entry.label, {})) - windows)
        if unknown:
            raise SuiteError(f"paper.values.{system.entry.label}: no window {', '.join(unknown)} "
                             f"(the system's windows: {', '.join(sorted(windows))})")


def metric_instances(registry: Registry, suite: Suite | None = None) -> list[AbstractMetric]:
    """Every loadable metric, with the suite's parameters where it sets them (SuiteError for a
    metric the registry does not know or parameters that do not validate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a metric that fails to load is reported by the run
        classes, _ = registry.load_all("metrics")
    settings = suite.metrics if suite is not None else {}
    unknown = sorted(set(settings) - set(classes))
    if unknown:
        raise SuiteError(f"metrics: unknown metric {', '.join(unknown)}; available: {', '.join(classes)}")
    metrics = []
    for name, cls in classes.items():
        try:
            metrics.append(cls(settings[name].params) if name in settings else cls())
        except ValidationError as exc:
            raise SuiteError(validation_message(exc, f"metrics.{name}.params")) from None
    return metrics


def plan_batches(cells: list[Cell]) -> list[list[Cell]]:
    """Split the cells to run into training batches, in first-appearance order.

    Seeds of one variant share a batch when the method `batches_seeds`; variants of one method on
    one system entry share a batch when their `batch_key()` values are equal and not None and
    their epochs and budgets agree. Entries of one system under different labels never do: their
    protocols (observation times, epochs, budgets) may differ. Everything
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
                key = ("shared", cell.system_label, cell.method.name, variant_key, cell.epochs, cell.budget_s)
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
    """Runs a suite's missing cells into a store through an executor (default: serial).

    log      : receives one-line progress messages (cells finished, warnings)
    announce : receives the plan line "cells: N total, C cached, R to run" (default: log)
    verbose  : whether batches print their training progress to stderr (without `progress`)
    progress : a stiffbench.progress.LiveDisplay that shows the run while its cells run (a bar over
               the cells, one per running batch, see the executors); batches then print no lines
               of their own. None: plain lines, as `verbose` says
    grace_s  : minimum extra time an isolated batch gets beyond its training budget before it is
               killed (see BatchJob.hard_limit_s)
    checkpoint_every_s : how often a training batch saves a checkpoint under <store>/checkpoints
               (see stiffbench.checkpoint), from which an interrupted batch resumes; None: never
    rerun_stale : also recompute the finished cells whose code revision differs from the current
               code's (`Cell.is_stale`)
    """

    def __init__(
        self,
        registry: Registry,
        store: Store,
        device: str = "cpu",
        cache_dir: str | None = None,
        log: Callable[[str], None] | None = None,
        announce: Callable[[str], None] | None = None,
        executor=None,
        verbose: bool = False,
        grace_s: float = 60.0,
        checkpoint_every_s: float | None = DEFAULT_EVERY_S,
        take_over_claims: bool = False,
        rerun_stale: bool = False,
        progress=None,
    ):
        self.registry = registry
        self.store = store
        self.device = device
        self.cache_dir = cache_dir
        self.log = log or (lambda msg: None)
        self.announce = announce or self.log
        self.executor = executor or SerialExecutor()
        self.verbose = verbose
        self.grace_s = grace_s
        self.checkpoint_every_s = checkpoint_every_s
        self.take_over_claims = take_over_claims
        classes, self.metric_load_errors = registry.load_all("metrics")
        self.metric_classes = list(classes.values())
        self.metric_revisions = {cls.name: code_revision(cls) for cls in self.metric_classes}
        self.rerun_stale = rerun_stale
        self.progress = progress
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run(self, suite: Suite, cells: list[Cell] | None = None) -> RunReport:
        """Run the cells of `suite` (expanded here unless given) that the store does not hold.

        Cells are claimed in the store first, so a concurrent run on the same store skips them.
        Each finished cell is committed at once: an interrupted run loses no finished cell.
        """
        start = time.perf_counter()
        cells = expand_cells(suite, self.registry, self.device) if cells is None else cells
        adopted = adopt_legacy_cells(cells, self.store, self.device)
        if adopted:
            self.log(f"{adopted} cell(s) stored under the previous key rule moved to their current keys (not retrained)")
        final = self.store.final_keys(c.key for c in cells)
        again = self._rerun(suite, [c for c in cells if c.key in final])
        final -= again
        todo = [c for c in cells if c.key not in final]
        claimed = self.store.claim((c.key for c in todo), self.owner, self.take_over_claims, rerun=again)
        busy = [c.key for c in todo if c.key not in claimed]
        todo = [c for c in todo if c.key in claimed]
        report = RunReport(total=len(cells), cached=len(final), to_run=len(todo), cells=cells)
        note = ""
        if busy:
            holders = ", ".join(f"{host} pid {pid} since {since}" for host, pid, since in self.store.claimants(busy))
            note = (f" ({len(busy)} claimed by another run, skipped: {holders}; if that run is gone, "
                    "rerun with --take-over-claims)")
        self.announce(f"cells: {report.total} total, {report.cached} cached, {report.to_run} to run{note}")
        for error in self.metric_load_errors:
            self.log(f"warning: metric {error.name} not loaded: {error.reason}")
        threads = 1 if self.device == "cpu" else None
        checkpoints = {} if self.checkpoint_every_s is None else {
            "checkpoint_dir": str(self.store.folder / "checkpoints"), "checkpoint_every_s": self.checkpoint_every_s}
        jobs = [
            BatchJob(batch[0].epochs, batch[0].budget_s, batch, self.device, self.cache_dir, self.metric_classes,
                     metric_params={name: entry.params for name, entry in suite.metrics.items()},
                     metric_revisions=self.metric_revisions,
                     verbose=self.verbose and self.progress is None, torch_threads=threads, grace_s=self.grace_s,
                     max_solver_steps=suite.max_solver_steps, **checkpoints)
            for batch in plan_batches(todo)
        ]
        live = self.progress is not None and len(jobs) > 0
        try:
            with self.progress.running(report.to_run) if live else nullcontext():
                batches = self.executor.run(jobs, progress=self.progress) if live else self.executor.run(jobs)
                for _, results in batches:
                    for record, forecast in results:
                        self.store.put(record, forecast)
                        self.store.release([record.key], self.owner)
                        report.records.append(record)
                        self.log(_record_line(record, len(report.records), report.to_run))
                        if live:
                            self.progress.cell_done()
        finally:
            self.store.release(claimed, self.owner)
        self._rescore_changed_metric_params(suite, cells)
        report.wall_s = time.perf_counter() - start
        report.peak_rss_mb = peak_rss_mb()
        return report


    def _rerun(self, suite: Suite, finished: list[Cell]) -> set[str]:
        """Keys of finished cells to compute again: `timeout` cells that ran under a smaller budget
        than the suite's, and with `rerun_stale` cells computed by code that has changed since."""
        records = self.store.get_many(c.key for c in finished)
        again = {c.key for c in finished if rerun_for_budget(records[c.key], c.budget_s)}
        if self.rerun_stale:
            again |= {c.key for c in finished if c.is_stale(records[c.key])}
        return again

    def _rescore_changed_metric_params(self, suite: Suite, cells: list[Cell]) -> None:
        """Rescore, from their stored forecasts, the ok cells scored with other metric parameters
        than the suite's (metric parameters change scores, not trained models, so they are not
        part of cell keys)."""
        from .rescore import rescore, scored_with_other_params

        wanted = {name: entry.params for name, entry in suite.metrics.items()}
        stale = scored_with_other_params(cells, self.store, wanted, self.metric_revisions)
        if stale:
            counts = rescore(stale, self.store, metric_instances(self.registry, suite), wanted, self.metric_revisions)
            self.log(f"rescored {counts['rescored']} cell(s) for the suite's metric parameters or changed metric code"
                     + (f"; {counts['missing']} without a usable forecast keep their scores" if counts["missing"] else ""))


def _record_line(record: CellRecord, done: int, total: int) -> str:
    extra = f" ({record.reason})" if record.reason else ""
    timing = f", train {record.train_s:.1f}s" if record.train_s is not None else ""
    return f"[{done}/{total}] {record.system} x {record.label} seed {record.seed}: {record.status}{timing}{extra}"
