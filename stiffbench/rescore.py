"""Recompute the metrics of stored cells from their saved forecasts, without retraining."""

from __future__ import annotations

from .api import Trajectory
from .scoring import score


def rescore(cells, store, metrics, metric_params: dict | None = None, metric_revisions: dict | None = None) -> dict[str, int]:
    """Rescore every cell of `cells` that has a stored, intact forecast; returns counts.

    Cells whose forecast file is missing or fails its checksum keep their stored metrics and are
    counted as `missing`. References come from each system's (cached) reference solution.
    metric_params: the suite's metric parameters `metrics` were made with, and metric_revisions the
    metrics' code revisions, both recorded in each rescored cell's provenance.
    """
    records = store.get_many(c.key for c in cells)
    counts = {"rescored": 0, "missing": 0}
    systems: dict[int, object] = {}
    for cell in cells:
        record = records.get(cell.key)
        if record is None or record.forecast_sha256 is None or cell.system.cls is None:
            continue
        forecast = store.load_forecast(record)
        if forecast is None:
            counts["missing"] += 1
            continue
        system = systems.setdefault(id(cell.system), cell.system.cls(cell.system.params))
        windows = system.evaluation_windows()
        reference = system.reference(system.horizon)
        t, y = forecast
        result = score(system, metrics, Trajectory(t, y, system.state_names), reference, windows)
        reason = "; ".join(filter(None, [result.reason, *result.metric_errors])) or None
        provenance = {**record.provenance, "metric_params": metric_params or {}}
        if metric_revisions is not None:
            provenance["metric_revisions"] = metric_revisions
        store.update_metrics(cell.key, result.all_values(), reason, result.status, provenance)
        counts["rescored"] += 1
    return counts


def scored_with_other_params(cells, store, metric_params: dict, metric_revisions: dict | None = None) -> list:
    """The ok cells whose stored metrics were computed with other metric parameters than
    `metric_params` (cells stored without a record of them count as scored with none), or by a
    metric whose code revision differs from `metric_revisions` (cells stored without revisions
    count as current)."""
    def other(record) -> bool:
        recorded = record.provenance.get("metric_revisions")
        changed = metric_revisions is not None and recorded is not None and any(
            recorded.get(name) not in (None, rev) for name, rev in metric_revisions.items())
        return record.provenance.get("metric_params", {}) != metric_params or changed

    records = store.get_many(c.key for c in cells)
    return [c for c in cells if c.key in records and records[c.key].status == "ok" and other(records[c.key])]
