"""The primary metric of a leaderboard table, the order of its rows, and a row's median seed.

A table's primary metric is the key its rows are ranked by. The suite may name it (`[leaderboard]
rank_by`); otherwise it is `spike_f1` where the system's keys include it (keeping the spike train
is what a model of a spiking system is for), else `valid_time` (how long the forecast stays near
the truth, the verdict's measure), else the first key of the metric order.

A key's direction: `spike_f1` and `valid_time` are better higher; any other key is better higher
when the metric producing it lists it in an optional class attribute `higher_is_better:
tuple[str, ...]` (a third-party metric may declare it), else better lower (errors, drifts,
deviations, fractions outside bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .api import AbstractMetric, AbstractSystem, missing_capabilities
from .store import CellRecord
from .verdict import KEY as VALID_TIME

SPIKE_F1 = "spike_f1"
HIGHER_IS_BETTER = frozenset({SPIKE_F1, VALID_TIME})


@dataclass(frozen=True)
class PrimaryMetric:
    """The key a table is ranked by, and whether a higher value is better."""

    key: str
    higher_is_better: bool

    @property
    def better(self) -> str:
        """"higher" or "lower": which values of the key are better (for legends)."""
        return "higher" if self.higher_is_better else "lower"


def prefers_higher(key: str, system: AbstractSystem, metrics: Sequence[AbstractMetric] = ()) -> bool:
    """Whether a higher value of `key` is better: the built-in table, else the `higher_is_better`
    attribute of the class of the metric in `metrics` that produces `key` on `system`, else False."""
    if key in HIGHER_IS_BETTER:
        return True
    for metric in metrics:
        if not missing_capabilities(metric, system) and key in metric.result_keys(system):
            return key in getattr(type(metric), "higher_is_better", ())
    return False


def primary_metric(system: AbstractSystem, key_order: Sequence[str], rank_by: str | None = None,
                   metrics: Sequence[AbstractMetric] = ()) -> PrimaryMetric:
    """The key that ranks a table of `system` whose metric keys are `key_order` (non-empty).

    `rank_by` is used when it is one of `key_order`; any other value is ignored in favour of the
    default (the caller says so where it matters: the leaderboard prints a line). `metrics`, the
    loaded metric instances, let third-party metrics declare their direction; without them only
    the built-in table of higher-is-better keys applies.
    """
    if not key_order:
        raise ValueError("no metric keys to rank by")
    if rank_by in key_order:
        key = rank_by
    else:
        key = next((k for k in (SPIKE_F1, VALID_TIME) if k in key_order), key_order[0])
    return PrimaryMetric(key, prefers_higher(key, system, metrics))


def tie_break_metric(system: AbstractSystem, key_order: Sequence[str], primary: PrimaryMetric,
                     metrics: Sequence[AbstractMetric] = ()) -> PrimaryMetric | None:
    """The key that orders rows with equal primary means: the first of `key_order` other than the
    primary key (the first metric column, e.g. an RMSE, which separates rows that all miss every
    spike or all have a valid time of 0); None when there is no other key."""
    key = next((k for k in key_order if k != primary.key), None)
    return None if key is None else PrimaryMetric(key, prefers_higher(key, system, metrics))


def seed_values(records: Sequence[CellRecord], window: str, key: str) -> list[tuple[int, float]]:
    """(seed, value) of `key` on `window` for each `ok` cell among `records` that defines it."""
    values = []
    for record in records:
        value = record.metrics.get(window, {}).get(key) if record.status == "ok" else None
        if value is not None and math.isfinite(value):
            values.append((record.seed, float(value)))
    return values


def _order_on(records: Sequence[CellRecord], window: str, metric: PrimaryMetric) -> tuple[int, float]:
    """Sort key of one row on one metric: rows with a defined mean first, best mean first."""
    values = [v for _, v in seed_values(records, window, metric.key)]
    if not values:
        return (1, 0.0)
    mean = sum(values) / len(values)
    return (0, -mean if metric.higher_is_better else mean)


def rank_labels(labels: Sequence[str], records: Sequence[CellRecord], window: str, primary: PrimaryMetric,
                tie_break: PrimaryMetric | None = None) -> list[str]:
    """`labels` (rows, in suite order) ranked best first by the mean of the primary key over each
    row's ok seeds on `window`. Rows with equal means are ordered by the mean of `tie_break`
    (rows where it is undefined after those where it is defined), then by suite order; rows where
    the primary key is undefined for every ok seed come last, in suite order."""

    def order(position: int, label: str) -> tuple:
        mine = [r for r in records if r.label == label]
        first = _order_on(mine, window, primary)
        second = _order_on(mine, window, tie_break) if tie_break is not None and first[0] == 0 else (1, 0.0)
        return (*first, *second, position)

    return [label for _, label in sorted(enumerate(labels), key=lambda item: order(*item))]


def median_seed(records: Sequence[CellRecord], window: str, primary: PrimaryMetric) -> int | None:
    """The ok seed of one row whose primary value on `window` is the median: the seeds sorted best
    first (equal values by seed), the one at position n // 2, so for an even count the worse of the
    two middle seeds (a figure of it shows a typical outcome, and of two seeds never the best one).
    None when no ok seed defines it."""
    values = seed_values(records, window, primary.key)
    if not values:
        return None
    ranked = sorted(values, key=lambda sv: (-sv[1] if primary.higher_is_better else sv[1], sv[0]))
    return ranked[len(ranked) // 2][0]
