"""Markdown leaderboard of a suite from the store: one table per system and evaluation window.

Rows are the suite's method labels in suite order; each metric column is "mean ± std" over the
seeds whose cell is `ok` and whose value is defined (sample std, ddof=1; a lone value has no
std). When a metric is defined for fewer ok seeds than the row has, the count is appended,
e.g. "0.31 ± 0.05 (3/5)". "–" marks a metric undefined for every ok seed. `ok/total` counts
ok cells over all cells of the row; `train s` is the mean training wall time per cell.
A footer gives the provenance (versions, devices, seeds, epochs, date) and the reason of every
cell that is not ok.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tabulate import tabulate

from .api import Window
from .store import CellRecord
from .suite import Suite

DASH = "–"


def records_frame(records: Sequence[CellRecord]) -> pd.DataFrame:
    """Long table: one row per (cell, window, metric key) with the value (NaN when undefined)."""
    rows = []
    for rec in records:
        base = {"system": rec.system, "label": rec.label, "seed": rec.seed, "status": rec.status}
        for window, values in rec.metrics.items():
            for key, value in values.items():
                rows.append({**base, "window": window, "key": key, "value": np.nan if value is None else value})
    return pd.DataFrame(rows, columns=["system", "label", "seed", "status", "window", "key", "value"])


def format_cell(values: np.ndarray, n_ok: int) -> str:
    """"mean ± std" of the defined values, with "(k/n)" when only k of n ok seeds define it."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return DASH
    text = f"{values.mean():.3g}"
    if len(values) > 1:
        text += f" ± {values.std(ddof=1):.3g}"
    if len(values) < n_ok:
        text += f" ({len(values)}/{n_ok})"
    return text


def window_table(
    labels: Sequence[str],
    records: Sequence[CellRecord],
    window: str,
    key_order: Sequence[str],
    paper: dict[str, dict[str, float]] | None = None,
    paper_keys: Sequence[str] = (),
) -> str:
    """One markdown table for one system's window.

    paper maps label -> {key: published value}; for each key in `paper_keys` a column
    "<key> (paper)" follows ours, with "–" where the publication has no value for that row.
    """
    frame = records_frame(records)
    frame = frame[(frame["window"] == window) & (frame["status"] == "ok")]
    present = set(frame["key"]) | set(paper_keys)
    keys = [k for k in key_order if k in present] + sorted(present - set(key_order))
    headers = ["method"]
    for key in keys:
        headers += [key, f"{key} (paper)"] if key in paper_keys else [key]
    rows = []
    for label in labels:
        mine = [r for r in records if r.label == label]
        ok = [r for r in mine if r.status == "ok"]
        row = [label]
        for key in keys:
            sel = frame[(frame["label"] == label) & (frame["key"] == key)]["value"].to_numpy(dtype=float)
            row.append(format_cell(sel, len(ok)))
            if key in paper_keys:
                value = (paper or {}).get(label, {}).get(key)
                row.append(DASH if value is None else f"{value:g}")
        row.append(f"{len(ok)}/{len(mine)}")
        times = [r.train_s for r in mine if r.train_s is not None]
        row.append(f"{np.mean(times):.3g}" if times else DASH)
        rows.append(row)
    return tabulate(rows, headers=[*headers, "ok/total", "train s"], tablefmt="github", disable_numparse=True)


# Thresholds of the qualitative summary (documented in QUALITATIVE_NOTE).
LIMIT_CYCLE_ISI_MS = 1.0
LIMIT_CYCLE_AMP_PCT = 10.0
BOUND_TOLERANCE = 0.01

QUALITATIVE_NOTE = (
    f"Counts are seeds out of all cells of the row. *limit cycle kept*: on the last window the forecast "
    f"still spikes with |mean ISI error| <= {LIMIT_CYCLE_ISI_MS:g} ms and amplitude preservation error "
    f"<= {LIMIT_CYCLE_AMP_PCT:g} %; *gating in bounds*: no bounded state leaves its range by more than "
    f"{BOUND_TOLERANCE:g} on any window; *stable*: the forecast stays finite (status ok). Spike F1 is the "
    "mean over ok seeds on the first window."
)


def qualitative_table(labels: Sequence[str], records: Sequence[CellRecord], windows: Sequence[str]) -> str | None:
    """The paper's Table 1 columns derived from measurements; None unless the records carry spike
    and bound measurements."""
    if not windows or not any("spike_f1" in r.metrics.get(windows[0], {}) for r in records):
        return None
    first, last = windows[0], windows[-1]

    def value(r: CellRecord, window: str, key: str) -> float | None:
        return r.metrics.get(window, {}).get(key)

    def kept(r: CellRecord) -> bool:
        isi, amp = value(r, last, "isi_error_ms"), value(r, last, "amp_pres_pct")
        return r.status == "ok" and isi is not None and amp is not None and isi <= LIMIT_CYCLE_ISI_MS \
            and amp <= LIMIT_CYCLE_AMP_PCT

    def in_bounds(r: CellRecord) -> bool:
        violations = [value(r, w, "bound_violation") for w in windows]
        return r.status == "ok" and all(v is not None and v <= BOUND_TOLERANCE for v in violations)

    rows = []
    for label in labels:
        mine = [r for r in records if r.label == label]
        f1 = np.array([value(r, first, "spike_f1") for r in mine if r.status == "ok"], dtype=float)
        count = lambda test: f"{sum(map(test, mine))}/{len(mine)}"  # noqa: E731
        rows.append([label, format_cell(f1, len(f1)), count(kept), count(in_bounds), count(lambda r: r.status == "ok")])
    headers = ["method", "spike F1", "limit cycle kept", "gating in bounds", "stable"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render(
    suite: Suite,
    records_by_system: dict[str, list[CellRecord]],
    windows_by_system: dict[str, list[Window]],
    key_order: dict[str, list[str]],
    expected_cells: dict[str, int],
) -> str:
    """The whole leaderboard document for a suite."""
    labels = [m.label for m in suite.methods]
    lines = [f"# stiffbench leaderboard: `{suite.name}`", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += [
        "Metrics are mean ± std over the seeds whose cell finished `ok`; \"–\" marks a metric that is "
        "undefined (no matched spikes, too few spikes, or no ok seed). `train s` is the mean training "
        "wall time per cell.",
        "",
    ]
    all_records: list[CellRecord] = []
    for system, records in records_by_system.items():
        all_records += records
        missing = expected_cells[system] - len(records)
        for window in windows_by_system[system]:
            lines += [f"## {system} — {window.name} window [{window.t0:g}, {window.t1:g}]", ""]
            paper_keys = [k for k, wins in (suite.paper.keys.items() if suite.paper else []) if window.name in wins]
            paper = {m.label: m.paper for m in suite.methods}
            lines += [window_table(labels, records, window.name, key_order.get(system, []), paper, paper_keys), ""]
        qualitative = qualitative_table(labels, records, [w.name for w in windows_by_system[system]])
        if qualitative:
            lines += [f"## {system} — qualitative summary (the paper's Table 1, from measurements)", "",
                      qualitative, "", QUALITATIVE_NOTE, ""]
        if missing:
            lines += [f"{missing} cell(s) of {system} are not in the store yet.", ""]
    if suite.paper:
        lines += [f"Columns marked (paper): {suite.paper.source}; \"–\" there is the paper's dash "
                  "(failure, no meaningful value)." + (f" {suite.paper.note}" if suite.paper.note else ""), ""]
    lines += _footer(suite, all_records)
    return "\n".join(lines).rstrip() + "\n"


def _footer(suite: Suite, records: Sequence[CellRecord]) -> list[str]:
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
    lines = [
        "## Provenance",
        "",
        f"- suite: `{suite.name}`; seeds: {', '.join(map(str, suite.seeds))}; epochs: {suite.epochs}; "
        f"budget per cell: {f'{suite.budget_s:g} s' if suite.budget_s else 'none'}",
        f"- stiffbench: {distinct('stiffbench')}; plugins: {', '.join(plugins) or DASH}",
        f"- torch: {distinct('torch')}; numpy: {distinct('numpy')}; python: {distinct('python')}",
        f"- device: {distinct('device')}; torch threads: {distinct('torch_threads')}; machine: {distinct('machine')}",
        f"- cells computed: {created[0] if created else DASH} to {created[-1] if created else DASH}; "
        f"rendered: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
    ]
    problems = [r for r in records if r.status != "ok" or r.reason]
    if problems:
        lines += ["", "### Cells not ok, and warnings", ""]
        for r in sorted(problems, key=lambda r: (r.system, r.label, r.seed)):
            lines.append(f"- {r.system} x {r.label} seed {r.seed}: **{r.status}**" + (f": {r.reason}" if r.reason else ""))
    return lines


def write(path: Path, text: str) -> None:
    """Write the document atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build(suite: Suite, cells, store, metrics) -> str:
    """Render `suite` from the store: `cells` from runner.expand_cells, `metrics` the loaded metric
    instances (they fix the column order)."""
    from .scoring import metric_keys

    records = store.get_many(c.key for c in cells)
    records_by_system: dict[str, list[CellRecord]] = {}
    windows: dict[str, list[Window]] = {}
    key_order: dict[str, list[str]] = {}
    expected: dict[str, int] = {}
    for cell in cells:
        name = cell.system.name
        expected[name] = expected.get(name, 0) + 1
        if name not in windows:
            system = cell.system.cls(cell.system.params) if cell.system.cls is not None else None
            windows[name] = system.evaluation_windows() if system is not None else []
            key_order[name] = metric_keys(metrics, system) if system is not None else []
        record = records.get(cell.key)
        if record is not None:
            record.label = cell.label  # rows are named by this suite's labels
            records_by_system.setdefault(name, []).append(record)
        else:
            records_by_system.setdefault(name, [])
    return render(suite, records_by_system, windows, key_order, expected)
