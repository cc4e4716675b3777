"""Markdown leaderboard of a suite from the store: one table per system entry and evaluation window.

Sections follow the suite's system labels (one system may appear under several labels with
different parameters); rows are the suite's method labels that run on the entry, ranked by the
table's primary metric (`stiffbench.ranking`: its mean over the row's ok seeds, best first; rows
where it is undefined for every ok seed last, in suite order). Each metric column is "mean ± std"
over the seeds whose cell is `ok` and whose value is defined (sample std, ddof=1), or with
`[leaderboard] spread = "bootstrap95"` "mean [lo, hi]", the 95 % percentile bootstrap interval of
the mean over those seeds; a lone value has neither. When a metric is defined for fewer ok seeds
than the row has, the count is appended, e.g. "0.31 ± 0.05 (3/5)". "–" marks a metric undefined
for every ok seed. Column headers carry the unit the system gives the key (e.g. "phase_drift
(ms)"); a metric that does not apply to a system has no column there. `ok/total` counts ok cells
over all cells of the row; `train s` is the mean training wall time per cell. The document opens
with a legend (cell format, ranking, and what each metric column measures, from the metric's
`description`); a line under each table names its window, span and ranking keys. A footer gives
the provenance (versions, devices, seeds, epochs, date), the runs recorded in the store that
computed the suite's cells (command, wall time, peak RSS) and the reason of every cell that is not
ok. Stores written with a metric's former key names render under the current names
(`AbstractMetric.former_keys`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tabulate import tabulate

from .api import AbstractSystem, Spiking, Window, missing_capabilities
from .ode_system import ODESystem
from .ranking import PrimaryMetric, primary_metric, rank_labels, seed_values, tie_break_metric
from .scoring import has_bounds, spike_settings_for
from .store import CellRecord, RunRecord
from .suite import Suite
from .plots.layout import figure_links
from .verdict import KEY as VALID_TIME, Rung, render_verdict

DASH = "–"
STALE_MARK = "†"
RUNS_SHOWN = 5  # the footer lists a suite's last runs that computed cells
STD, BOOTSTRAP = "std", "bootstrap95"  # the spreads a suite may ask for ([leaderboard] spread)
BOOTSTRAP_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_RNG_SEED = 0  # fixed: re-rendering a document gives the same intervals
# Keys the scorer itself records (stiffbench.scoring.Score.diagnostics), described for the legend.
DIAGNOSTIC_DESCRIPTIONS = {
    "bound_violation": "Largest distance of a bounded state outside its range over the window (the state's unit; "
                       "the scorer's own check).",
}
STALE_NOTE = (f"{STALE_MARK} Some cells of this row were computed by code that has changed since, or by different "
              "code revisions: `stiffbench run --rerun-stale` recomputes the stale ones.")


def records_frame(records: Sequence[CellRecord]) -> pd.DataFrame:
    """Long table: one row per (cell, window, metric key) with the value (NaN when undefined)."""
    rows = []
    for rec in records:
        base = {"system": rec.system, "label": rec.label, "seed": rec.seed, "status": rec.status}
        for window, values in rec.metrics.items():
            for key, value in values.items():
                rows.append({**base, "window": window, "key": key, "value": np.nan if value is None else value})
    return pd.DataFrame(rows, columns=["system", "label", "seed", "status", "window", "key", "value"])


def bootstrap_interval(values: np.ndarray, level: float = BOOTSTRAP_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_RNG_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (Efron & Tibshirani 1993, ch. 13):
    the (1 - level) / 2 and (1 + level) / 2 quantiles of the means of `resamples` resamples of the
    values with replacement, drawn from an RNG seeded with `seed` (so the interval is
    reproducible). With n values the resampled means take few distinct values, so for a handful of
    seeds the interval is coarse; it never extends beyond the smallest and largest value."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def format_cell(values: np.ndarray, n_ok: int, spread: str = STD) -> str:
    """"mean ± std" (spread "std", ddof=1) or "mean [lo, hi]" (spread "bootstrap95") of the defined
    values, with "(k/n)" when only k of n ok seeds define it; a lone value has no spread."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return DASH
    text = f"{values.mean():.3g}"
    if len(values) > 1 and spread == BOOTSTRAP:
        lo, hi = bootstrap_interval(values)
        text += f" [{lo:.3g}, {hi:.3g}]"
    elif len(values) > 1:  # equal values have no spread (not the mean's rounding, ~1e-17)
        text += f" ± {0.0 if np.ptp(values) == 0 else values.std(ddof=1):.3g}"
    if len(values) < n_ok:
        text += f" ({len(values)}/{n_ok})"
    return text


def table_keys(records: Sequence[CellRecord], window: str, key_order: Sequence[str],
               paper_keys: Sequence[str] = ()) -> list[str]:
    """The metric columns of a window's table: the keys some ok cell or the paper gives on it, in
    `key_order`, then any others (diagnostics, keys of metrics no longer loaded) by name."""
    present = {k for r in records if r.status == "ok" for k in r.metrics.get(window, {})} | set(paper_keys)
    return [k for k in key_order if k in present] + sorted(present - set(key_order))


def window_table(
    labels: Sequence[str],
    records: Sequence[CellRecord],
    window: str,
    key_order: Sequence[str],
    paper: dict[str, dict[str, float]] | None = None,
    paper_keys: Sequence[str] = (),
    units: dict[str, str] | None = None,
    flagged: Sequence[str] = (),
    spread: str = STD,
) -> str:
    """One markdown table for one system's window, rows in the order of `labels`.

    paper maps label -> {key: published value}; for each key in `paper_keys` a column
    "<key> (paper)" follows ours, with "–" where the publication has no value for that row.
    units maps key -> unit, shown in the header as "<key> (<unit>)". Rows in `flagged` get
    STALE_MARK after their label. `spread` is that of `format_cell`.
    """
    units = units or {}
    frame = records_frame(records)
    frame = frame[(frame["window"] == window) & (frame["status"] == "ok")]
    keys = table_keys(records, window, key_order, paper_keys)
    headers = ["method"]
    for key in keys:
        header = f"{key} ({units[key]})" if units.get(key) else key
        headers += [header, f"{key} (paper)"] if key in paper_keys else [header]
    rows = []
    for label in labels:
        mine = [r for r in records if r.label == label]
        ok = [r for r in mine if r.status == "ok"]
        row = [f"{label} {STALE_MARK}" if label in flagged else label]
        for key in keys:
            sel = frame[(frame["label"] == label) & (frame["key"] == key)]["value"].to_numpy(dtype=float)
            row.append(format_cell(sel, len(ok), spread))
            if key in paper_keys:
                value = (paper or {}).get(label, {}).get(key)
                row.append(DASH if value is None else f"{value:g}")
        row.append(f"{len(ok)}/{len(mine)}")
        times = [r.train_s for r in mine if r.train_s is not None]
        row.append(f"{np.mean(times):.3g}" if times else DASH)
        rows.append(row)
    return tabulate(rows, headers=[*headers, "ok/total", "train s"], tablefmt="github", disable_numparse=True)


# Thresholds of the qualitative summary, relative to the system's own scales (see qualitative_note).
LIMIT_CYCLE_ISI_TOLERANCES = 0.5  # mean ISI error at most this fraction of the spike match tolerance
LIMIT_CYCLE_AMP_PCT = 10.0
BOUND_TOLERANCE_WIDTHS = 0.01  # excess outside the bounds at most this fraction of the narrowest range


@dataclass(frozen=True)
class SummaryCriteria:
    """The qualitative summary's limits for one system, in its units (None: no bounds column)."""

    isi_limit: float
    time_unit: str
    bound_limit: float | None


def summary_criteria(system: AbstractSystem, tolerance: float) -> SummaryCriteria:
    """Limits from the system's spike match tolerance (in its time unit) and its bounds."""
    bound_limit = None
    if has_bounds(system):
        widths = [hi - lo for lo, hi in system.state_bounds.values() if np.isfinite(hi - lo)]
        bound_limit = BOUND_TOLERANCE_WIDTHS * min(widths) if widths else 0.0
    return SummaryCriteria(LIMIT_CYCLE_ISI_TOLERANCES * tolerance, system.time_unit, bound_limit)


def qualitative_note(criteria: SummaryCriteria) -> str:
    unit = f" {criteria.time_unit}" if criteria.time_unit else ""
    bounds = ("" if criteria.bound_limit is None else
              f" *states in bounds*: no bounded state leaves its range by more than {criteria.bound_limit:g} "
              f"({100 * BOUND_TOLERANCE_WIDTHS:g} % of the narrowest range) on any window;")
    return (
        f"Counts are seeds out of all cells of the row. *limit cycle kept*: on the last window the forecast "
        f"still spikes with |mean ISI error| <= {criteria.isi_limit:g}{unit} ({LIMIT_CYCLE_ISI_TOLERANCES:g} x the "
        f"spike match tolerance) and amplitude preservation error <= {LIMIT_CYCLE_AMP_PCT:g} %;{bounds} *stable*: "
        "the forecast stays finite (status ok). Spike F1 is the mean over ok seeds on the first window."
    )


def qualitative_table(
    labels: Sequence[str], records: Sequence[CellRecord], windows: Sequence[str], criteria: SummaryCriteria,
    spread: str = STD,
) -> str | None:
    """The paper's Table 1 columns derived from measurements; None unless the records carry spike
    measurements. The bounds column appears only when the system has bounded states; spike F1
    shows `spread` (that of `format_cell`)."""
    if not windows or not any("spike_f1" in r.metrics.get(windows[0], {}) for r in records):
        return None
    first, last = windows[0], windows[-1]

    def value(r: CellRecord, window: str, key: str) -> float | None:
        return r.metrics.get(window, {}).get(key)

    def kept(r: CellRecord) -> bool:
        isi, amp = value(r, last, "isi_error"), value(r, last, "amp_pres_pct")
        return r.status == "ok" and isi is not None and amp is not None and isi <= criteria.isi_limit \
            and amp <= LIMIT_CYCLE_AMP_PCT

    def in_bounds(r: CellRecord) -> bool:
        violations = [value(r, w, "bound_violation") for w in windows]
        return r.status == "ok" and all(v is not None and v <= criteria.bound_limit for v in violations)

    rows = []
    for label in labels:
        mine = [r for r in records if r.label == label]
        f1 = np.array([value(r, first, "spike_f1") for r in mine if r.status == "ok"], dtype=float)
        count = lambda test: f"{sum(map(test, mine))}/{len(mine)}"  # noqa: E731
        bounds = [] if criteria.bound_limit is None else [count(in_bounds)]
        rows.append([label, format_cell(f1, len(f1), spread), count(kept), *bounds, count(lambda r: r.status == "ok")])
    headers = ["method", "spike F1", "limit cycle kept", *([] if criteria.bound_limit is None else ["states in bounds"]),
               "stable"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


@dataclass
class Section:
    """One system entry of a suite, as the leaderboard shows it."""

    label: str
    records: list[CellRecord]
    expected: int
    windows: list[Window] = field(default_factory=list)
    key_order: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    time_unit: str = ""
    heading: str = ""
    criteria: SummaryCriteria | None = None
    flagged: set[str] = field(default_factory=set)
    rows: list[str] = field(default_factory=list)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    primary: PrimaryMetric | None = None  # ranks the rows of each window's table
    tie_break: PrimaryMetric | None = None  # orders rows with equal primary means
    descriptions: dict[str, str] = field(default_factory=dict)  # metric key -> one-line description
    figures: str | None = None  # the markdown line linking the section's figures (stiffbench.plots.layout)


def render(suite: Suite, sections: Sequence[Section], valid_tolerance: float | None = None,
           runs: Sequence[RunRecord] = ()) -> str:
    """The whole leaderboard document for a suite (`valid_tolerance`: the valid_time metric's
    tolerance, named in the verdict; `runs`: the recorded runs of the suite, listed in the footer)."""
    lines = [f"# stiffbench leaderboard: `{suite.name}`", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += [_legend(suite.leaderboard.spread), "", *_rank_by_note(suite, sections), *_glossary(suite, sections)]
    all_records: list[CellRecord] = []
    for section in sections:
        all_records += section.records
        unit = f" {section.time_unit}" if section.time_unit else ""
        if section.heading:
            lines += [section.heading, ""]
        for window in section.windows:
            lines += [f"## {section.label} — {window.name} window [{window.t0:g}, {window.t1:g}]{unit}", ""]
            paper_keys, paper = suite.paper_table(section.label, window.name)
            rows = section.rows
            if section.primary is not None:
                rows = rank_labels(rows, section.records, window.name, section.primary, section.tie_break)
            lines += [window_table(rows, section.records, window.name, section.key_order, paper, paper_keys,
                                   section.units, sorted(section.flagged), suite.leaderboard.spread), "",
                      _table_legend(section, window), ""]
        if section.figures:
            lines += [section.figures, ""]
        if section.flagged:
            lines += [STALE_NOTE, ""]
        if suite.leaderboard.qualitative_summary and section.criteria is not None:
            table = qualitative_table(section.rows, section.records, [w.name for w in section.windows], section.criteria,
                                      suite.leaderboard.spread)
            if table:
                lines += [f"## {section.label} — qualitative summary (the paper's Table 1, from measurements)", "",
                          table, "", qualitative_note(section.criteria), ""]
        missing = section.expected - len(section.records)
        if missing:
            lines += [f"{missing} cell(s) of {section.label} are not in the store yet.", ""]
    if suite.leaderboard.verdict is not None:
        lines += _verdict(suite, sections, valid_tolerance)
    if suite.paper:
        lines += [f"Columns marked (paper): {suite.paper.source}; \"–\" there is the paper's dash "
                  "(failure, no meaningful value)." + (f" {suite.paper.note}" if suite.paper.note else ""), ""]
    lines += _footer(suite, all_records, runs)
    return "\n".join(lines).rstrip() + "\n"


def _legend(spread: str) -> str:
    """The paragraph under the title: how to read every table of the document."""
    if spread == BOOTSTRAP:
        resamples = f"{BOOTSTRAP_RESAMPLES:_}".replace("_", " ")
        cells = (f'Metric cells are "mean [lo, hi]" over the seeds whose cell finished `ok` and define the metric: '
                 f"[lo, hi] is the {100 * BOOTSTRAP_LEVEL:g} % percentile bootstrap interval of the mean ({resamples} "
                 f"resamples of those seeds with replacement, RNG seed {BOOTSTRAP_RNG_SEED}, so re-rendering gives the "
                 "same intervals; with few seeds it is coarse, and never wider than their range)")
    else:
        cells = ('Metric cells are "mean ± std" over the seeds whose cell finished `ok` and define the metric '
                 "(sample standard deviation, ddof = 1)")
    return (cells + '; a lone value has no spread, and "(k/n)" follows when only k of the row\'s n ok seeds define '
            'the metric. "–" marks a metric undefined for every ok seed (no matched spikes, too few spikes, or no ok '
            "seed). `ok/total`: the row's cells that finished `ok`, out of its cells in the store (the others are "
            "listed at the end with their reason). `train s`: the mean training wall time per cell, in seconds. Rows "
            "are ranked by the primary metric named under each table: its mean over the row's ok seeds, best first; "
            "rows with equal means by a second metric, then in suite order; rows where it is undefined for every "
            "ok seed come last, in suite order.")


def _glossary(suite: Suite, sections: Sequence[Section]) -> list[str]:
    """A list item per metric description, naming the document's columns it describes."""
    described: dict[str, str] = {}
    for section in sections:
        for window in section.windows:
            paper_keys, _ = suite.paper_table(section.label, window.name)
            for key in table_keys(section.records, window.name, section.key_order, paper_keys):
                described.setdefault(key, section.descriptions.get(key) or DIAGNOSTIC_DESCRIPTIONS.get(
                    key, "not described (its metric is not loaded)."))
    groups: dict[str, list[str]] = {}
    for key, text in described.items():
        groups.setdefault(text, []).append(key)
    if not groups:
        return []
    return ["Metric columns (each header gives the key's unit on that system):", "",
            *(f"- {_key_family(keys)}: {text}" for text, keys in groups.items()), ""]


def _key_family(keys: Sequence[str]) -> str:
    """Keys sharing one description, named compactly: "`rmse_*`" for rmse_V, rmse_n, ... (a common
    prefix ending in "_"), else each key."""
    prefix = os.path.commonprefix(list(keys))
    if len(keys) > 1 and prefix.endswith("_"):
        return f"`{prefix}*`"
    return ", ".join(f"`{k}`" for k in keys)


def _rank_by_note(suite: Suite, sections: Sequence[Section]) -> list[str]:
    """A line naming the system entries ranked by their default key because they lack the suite's `rank_by`."""
    rank_by = suite.leaderboard.rank_by
    lacking = [s.label for s in sections if rank_by and s.primary is not None and s.primary.key != rank_by]
    if not lacking:
        return []
    return [f'`rank_by = "{rank_by}"` is not a metric key of {", ".join(lacking)}: those tables are ranked by the '
            "default key named under each.", ""]


def _table_legend(section: Section, window: Window) -> str:
    """The line under a window's table: its span, and the keys that rank its rows."""
    unit = f" {section.time_unit}" if section.time_unit else ""
    text = f"Window `{window.name}`: t from {window.t0:g} to {window.t1:g}{unit} ({window.t1 - window.t0:g}{unit})."
    primary, tie_break = section.primary, section.tie_break
    if primary is None:
        return text + " Rows in suite order (no metric to rank by)."
    text += f" Ranked by `{primary.key}` ({primary.better} is better)"
    if not seed_values(section.records, window.name, primary.key):
        text += "; undefined on every row here, so the rows are in suite order"
    elif tie_break is not None:
        text += f"; ties by `{tie_break.key}` ({tie_break.better} is better)"
    return text + "."


def _verdict(suite: Suite, sections: Sequence[Section], tolerance: float | None) -> list[str]:
    options = suite.leaderboard.verdict
    rungs = []
    for section in sections:
        window = next((w for w in section.windows if w.name == options.window), None)
        if window is not None:
            rungs.append(Rung(section.label, window.name, window.t0, window.t1, section.samples.get(window.name),
                              section.rows, section.records))
    if not rungs:
        return [f"No system of the suite has a `{options.window}` window to judge.", ""]
    if tolerance is None:
        return [f"No verdict: the `{VALID_TIME}` metric is not loaded.", ""]
    note = f"`{VALID_TIME}` with tolerance {tolerance:g} on the std-normalised RMS error"
    return render_verdict(rungs, [m.label for m in suite.methods], options.holds, options.fails, note)


def _footer(suite: Suite, records: Sequence[CellRecord], runs: Sequence[RunRecord] = ()) -> list[str]:
    def distinct(key: str) -> str:
        values = sorted({str(r.provenance.get(key)) for r in records if r.provenance.get(key) is not None})
        return ", ".join(values) or DASH

    plugins = sorted(
        {
            f"{p['distribution']} {p['version']}"
            for r in records
            for p in (r.provenance.get("system_plugin"), r.provenance.get("method_plugin"))
            if p
        }
    )
    created = sorted(r.created for r in records if r.created)
    own = [f"{s.label}: {s.epochs or suite.epochs} epochs, budget {_budget(suite.budget_for(s))}"
           for s in suite.systems if s.epochs or s.budget_s]
    own += [f"{m.label}: " + ", ".join(([f"{m.epochs} epochs"] if m.epochs else [])
                                       + ([f"budget {_budget(m.budget_s)}"] if m.budget_s else []))
            for m in suite.methods if m.epochs or m.budget_s]
    lines = [
        "## Provenance",
        "",
        f"- suite: `{suite.name}`; seeds: {', '.join(map(str, suite.seeds))}; epochs: {suite.epochs}; "
        f"budget per cell: {_budget(suite.budget_s)}" + (f" (own settings: {'; '.join(own)})" if own else ""),
        f"- stiffbench: {distinct('stiffbench')}; plugins: {', '.join(plugins) or DASH}",
        f"- torch: {distinct('torch')}; numpy: {distinct('numpy')}; python: {distinct('python')}",
        f"- device: {distinct('device')}; torch threads: {distinct('torch_threads')}; machine: {distinct('machine')}",
        f"- cells computed: {created[0] if created else DASH} to {created[-1] if created else DASH}; "
        f"rendered: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
    ]
    for run in runs[-RUNS_SHOWN:]:
        lines.append(f"- run {run.started}: `{run.command}`: {run.cells_run} of {run.cells_total} cells in "
                     f"{run.wall_s:.0f} s wall, peak RSS {run.peak_rss_mb:.0f} MiB ({run.executor} executor, "
                     f"{run.workers} worker(s); {run.machine})")
    if len(runs) > RUNS_SHOWN:
        lines.append(f"- ({len(runs) - RUNS_SHOWN} earlier run(s) recorded in the store)")
    problems = [r for r in records if r.status != "ok" or r.reason]
    if problems:
        lines += ["", "### Cells not ok, and warnings", ""]
        for r in sorted(problems, key=lambda r: (r.system, r.label, r.seed)):
            lines.append(f"- {r.system} x {r.label} seed {r.seed}: **{r.status}**" + (f": {r.reason}" if r.reason else ""))
    return lines


def _budget(budget_s: float | None) -> str:
    return f"{budget_s:g} s" if budget_s else "none"


def write(path: Path, text: str) -> None:
    """Write the document atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build(suite: Suite, cells, store, metrics, figures_dir: Path | None = None, document_dir: Path | None = None) -> str:
    """Render `suite` from the store: `cells` from runner.expand_cells, `metrics` the loaded metric
    instances with the suite's parameters (they fix the columns, their order and units). Each
    section links the figures found under `figures_dir` (`stiffbench plot`), by paths relative
    to `document_dir`, the folder the document is written to."""
    records = store.get_many(c.key for c in cells)
    renamed = {old: new for metric in metrics for old, new in metric.former_keys.items()}
    sections: dict[str, Section] = {}
    revisions: dict[tuple[str, str], set[str]] = {}
    for cell in cells:
        label = cell.system_label
        section = sections.get(label)
        if section is None:
            section = sections[label] = Section(label, [], 0)
            if cell.system.cls is not None:
                _describe_section(section, cell.system.cls(cell.system.params), cell, metrics, suite.leaderboard.rank_by)
        section.expected += 1
        if cell.label not in section.rows:
            section.rows.append(cell.label)
        record = records.get(cell.key)
        if record is not None:
            revisions.setdefault((label, cell.label), set()).add(json.dumps(record.provenance.get("code_revision")))
            if cell.is_stale(record):
                section.flagged.add(cell.label)
            record.label, record.system = cell.label, label  # rows and sections are named by this suite
            record.metrics = {w: {renamed.get(k, k): v for k, v in values.items()} for w, values in record.metrics.items()}
            section.records.append(record)
    for (label, row), recorded in revisions.items():
        if len(recorded - {"null"}) > 1:  # cells of one row from different revisions
            sections[label].flagged.add(row)
    if figures_dir is not None:
        for section in sections.values():
            section.figures = figure_links(figures_dir, section.label, section.rows, document_dir or Path.cwd())
    valid_time = next((m for m in metrics if m.name == VALID_TIME), None)
    return render(suite, list(sections.values()), valid_time.params.tolerance if valid_time else None, store.runs(suite.name))


def _describe_section(section: Section, system: AbstractSystem, cell, metrics, rank_by: str | None = None) -> None:
    """Windows, columns, units, descriptions, ranking keys, heading and summary criteria of a
    system entry's section (`rank_by`: the suite's ranking key, if any)."""
    from .scoring import metric_keys

    section.windows = system.evaluation_windows()
    if isinstance(system, ODESystem):
        grid = system.protocol().grid
        section.samples = {w.name: grid.times(w.t0, w.t1) for w in section.windows}
    section.key_order = metric_keys(metrics, system)
    applicable = [m for m in metrics if not missing_capabilities(m, system)]
    section.units = {k: u for m in applicable for k, u in m.key_units(system).items()}
    section.descriptions = {k: _metric_description(m) for m in applicable for k in m.result_keys(system)}
    if section.key_order:
        section.primary = primary_metric(system, section.key_order, rank_by, metrics)
        section.tie_break = tie_break_metric(system, section.key_order, section.primary, metrics)
    section.time_unit = system.time_unit
    changed = {k: v for k, v in cell.system.params_json().items() if _differs_from_default(system.params, k)}
    if section.label != system.name or changed:
        settings = ", ".join(f"{k} = {v}" for k, v in changed.items()) or "default parameters"
        section.heading = f"`{section.label}`: system `{system.name}` with {settings}."
    if isinstance(system, Spiking) and system.has_capability(Spiking):
        tolerance = spike_settings_for(system, metrics).tolerance
        section.criteria = summary_criteria(system, tolerance)


def _metric_description(metric) -> str:
    """A metric's one-line description: its `description`, else its docstring's first line."""
    doc = (type(metric).__doc__ or "").strip()
    return getattr(metric, "description", "") or (doc.splitlines()[0] if doc else "")


def _differs_from_default(params, name: str) -> bool:
    """Whether a parameter is required (no default) or set to other than its default."""
    info = type(params).model_fields[name]
    return info.is_required() or getattr(params, name) != info.get_default(call_default_factory=True)
