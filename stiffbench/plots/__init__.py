"""Figures of a suite from its store, never by retraining (`stiffbench plot`, `stiffbench run --plots`).

Per system entry: one forecast figure per variant (`forecast.py`) for the seed chosen by
`select_seeds`, a cost–accuracy chart and the training curves (`summary.py`), written as PNG
files (Agg canvas, no display needed) where `layout.py` says; a row's forecast figures from an
earlier choice of seeds are removed first, so the folder holds exactly what was last drawn. A cell's forecast figure needs its
stored forecast (`<store>/forecasts`); cells without one are reported, not retrained. matplotlib
is the optional extra `stiffbench[plots]` and is imported only here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..api import Trajectory
from ..ranking import PrimaryMetric, median_seed, primary_metric, seed_values
from ..scoring import metric_keys, spike_settings_for
from ..store import CellRecord
from .forecast import CellView, forecast_figure, is_spiking, panel_count
from .layout import COST, CURVES, forecast_file, forecast_files, summary_file
from .summary import cost_accuracy_figure, curves_figure

DPI = 110


class PlotError(Exception):
    """Plotting cannot start (matplotlib missing); the message is one line."""


@dataclass
class PlotReport:
    """What `plot_suite` wrote (path -> number of panels) and what it could not draw, and why."""

    written: dict[Path, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("figures need matplotlib: pip install 'stiffbench[plots]'") from None


def select_seeds(records: Sequence[CellRecord], window: str, primary: PrimaryMetric,
                 seed: int | None = None, all_seeds: bool = False) -> list[CellRecord]:
    """The cells of one row to draw: `seed` if given, every seed with `all_seeds`, else the median
    seed by the primary metric (`ranking.median_seed`: the typical seed, not the best); when no ok
    seed defines the primary metric (every seed diverged, say), the lowest seed."""
    mine = sorted(records, key=lambda r: r.seed)
    if all_seeds:
        return mine
    if seed is not None:
        return [r for r in mine if r.seed == seed]
    chosen = median_seed(mine, window, primary)
    return [r for r in mine if r.seed == chosen] if chosen is not None else mine[:1]


def plot_suite(suite, cells, store, metrics, out_dir: Path, seed: int | None = None, all_seeds: bool = False,
               cache_dir=None, log: Callable[[str], None] = lambda msg: None) -> PlotReport:
    """Write the figures of `suite`'s cells (runner.expand_cells) found in `store` under out_dir."""
    require_matplotlib()
    report = PlotReport()
    records = store.get_many(c.key for c in cells)
    sections: dict[str, list] = {}
    for cell in cells:
        sections.setdefault(cell.system_label, []).append(cell)
    for section_label, section_cells in sections.items():
        first = section_cells[0]
        if first.system.cls is None:
            report.skipped.append(f"{section_label}: system {first.system.entry.name} did not load")
            continue
        system = first.system.cls(first.system.params)
        found = []
        for cell in section_cells:
            record = records.get(cell.key)
            if record is not None:
                record.label, record.system = cell.label, section_label  # named by this suite
                found.append(record)
        rows = list(dict.fromkeys(c.label for c in section_cells))
        keys = metric_keys(list(metrics), system)
        if not found or not keys:
            report.skipped.append(f"{section_label}: no stored cells" if not found else f"{section_label}: no metric")
            continue
        window = _window(suite, system)
        primary = primary_metric(system, keys, suite.leaderboard.rank_by, metrics)
        context = _SectionContext(suite.name, section_label, system, metrics, window, primary, cache_dir)
        for label in rows:
            for _, stale in forecast_files(out_dir, section_label, label):  # from an earlier choice of seeds
                stale.unlink()
            for record in select_seeds([r for r in found if r.label == label], window, primary, seed, all_seeds):
                _plot_cell(context, record, store, out_dir, report)
        title = f"{suite.name} · {section_label}"
        _save(cost_accuracy_figure(f"{title}: cost vs accuracy", rows, found, window, primary, context.unit),
              summary_file(out_dir, section_label, COST), 1, report)
        _save(curves_figure(f"{title}: training curves", rows, found),
              summary_file(out_dir, section_label, CURVES), 1, report)
        log(f"{section_label}: figures under {out_dir / section_label}")
    return report


@dataclass
class _SectionContext:
    """What every forecast figure of one system entry shares; the reference and the training task
    are read once per section, when its first stored forecast is drawn."""

    suite: str
    label: str
    system: object
    metrics: Sequence
    window: str
    primary: PrimaryMetric
    cache_dir: object

    @functools.cached_property
    def reference(self) -> Trajectory:
        return self.system.reference(self.system.horizon, self.cache_dir)

    @functools.cached_property
    def task(self):
        return self.system.training_task(self.cache_dir)

    @functools.cached_property
    def unit(self) -> str:
        return _unit(self.metrics, self.system, self.primary.key)


def _plot_cell(ctx: _SectionContext, record: CellRecord, store, out_dir: Path, report: PlotReport) -> None:
    what = f"{ctx.label} x {record.label} seed {record.seed}"
    forecast = store.load_forecast(record)
    if forecast is None:
        report.skipped.append(f"{what}: no stored forecast ({record.status})")
        return
    t, y = forecast
    system, reference, task = ctx.system, ctx.reference, ctx.task
    truth = np.column_stack([np.interp(t, reference.t, reference.y[:, j]) for j in range(reference.y.shape[1])])
    observations = task.observations
    names = tuple(reference.state_names)
    value = dict(seed_values([record], ctx.window, ctx.primary.key)).get(record.seed)
    score = "undefined" if value is None else f"{value:.3g}" + (f" {ctx.unit}" if ctx.unit else "")
    view = CellView(
        title=f"{ctx.suite} · {ctx.label} · {record.label} · seed {record.seed} ({record.status}); "
              f"{ctx.primary.key} on {ctx.window}: {score}",
        forecast=Trajectory(t, y, names),
        truth=Trajectory(t, truth, names),
        observations=observations,
        train_window=(min(task.initial_time, float(observations.t[0])), float(observations.t[-1])),
        time_span=(float(t[0]), system.evaluation_windows()[0].t1),
        time_unit=system.time_unit,
        state_units=system.state_units() if hasattr(system, "state_units") else {},
        bounds=dict(getattr(system, "state_bounds", {}) or {}),
        spikes=spike_settings_for(system, list(ctx.metrics)) if is_spiking(system) else None,
    )
    _save(forecast_figure(view), forecast_file(out_dir, ctx.label, record.label, record.seed), panel_count(view), report)


def _save(fig, path: Path, panels: int, report: PlotReport) -> None:
    if fig is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    report.written[path] = panels


def _window(suite, system) -> str:
    """The window the primary metric is read on: the verdict's, else the system's first."""
    names = [w.name for w in system.evaluation_windows()]
    verdict = suite.leaderboard.verdict
    return verdict.window if verdict is not None and verdict.window in names else names[0]


def _unit(metrics, system, key: str) -> str:
    for metric in metrics:
        units = metric.key_units(system) if key in metric.result_keys(system) else {}
        if key in units:
            return units[key]
    return ""
