"""Spike detection and one-to-one spike matching shared by the spike metrics (pure numpy).

Times are compared after rounding to `DECIMALS` places, so that grid round-off (t = k * dt is
rarely exact in binary) cannot decide a merge, a tolerance edge or a tie: two peaks 2 ms apart on
a 0.01 ms grid are 2 ms apart, not 1.9999999999999982 ms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DECIMALS = 9


class Spikes(NamedTuple):
    """Spike times and peak values, in time order."""

    times: np.ndarray
    peaks: np.ndarray


def _q(x):
    return np.round(x, DECIMALS)


def detect_spikes(t: np.ndarray, v: np.ndarray, threshold: float = 0.0, merge: float = 2.0) -> Spikes:
    """Peaks of the excursions of v strictly above `threshold`, with close peaks merged.

    Each maximal run of consecutive samples with v > threshold gives one spike at its largest
    sample (the first one if tied). Then, in time order, a spike less than `merge` after the last
    kept spike is merged with it: the taller of the two is kept (the earlier one if equally tall).
    """
    t, v = np.asarray(t, dtype=float), np.asarray(v, dtype=float)
    idx = np.flatnonzero(v > threshold)
    if idx.size == 0:
        return Spikes(np.empty(0), np.empty(0))
    new_run = np.r_[True, np.diff(idx) > 1]
    run = np.cumsum(new_run) - 1
    vr = v[idx]
    at_max = np.flatnonzero(vr == np.maximum.reduceat(vr, np.flatnonzero(new_run))[run])
    first_max = at_max[np.r_[True, np.diff(run[at_max]) > 0]]
    times, peaks = t[idx[first_max]], vr[first_max]
    if np.all(_q(np.diff(times)) >= merge):
        return Spikes(times, peaks)
    kept: list[int] = [0]
    for k in range(1, len(times)):
        if _q(times[k] - times[kept[-1]]) >= merge:
            kept.append(k)
        elif peaks[k] > peaks[kept[-1]]:
            kept[-1] = k
    return Spikes(times[kept], peaks[kept])


def match_spikes(t_pred: np.ndarray, t_true: np.ndarray, tolerance: float = 2.0) -> list[tuple[int, int]]:
    """One-to-one greedy nearest matching of sorted spike times within `tolerance`.

    All pairs with |t_pred - t_true| <= tolerance are taken in order of increasing |dt| (ties by
    true index, then pred index); a pair is accepted if neither spike is already matched.
    Returns the accepted (i_pred, i_true) pairs in increasing order.
    """
    t_pred, t_true = np.asarray(t_pred, dtype=float), np.asarray(t_true, dtype=float)
    slack = 10.0**-DECIMALS
    lo = np.searchsorted(t_pred, t_true - tolerance - slack, side="left")
    hi = np.searchsorted(t_pred, t_true + tolerance + slack, side="right")
    counts = hi - lo
    i_true = np.repeat(np.arange(len(t_true)), counts)
    i_pred = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - lo, counts)
    adt = _q(np.abs(t_pred[i_pred] - t_true[i_true]))
    within = adt <= tolerance
    i_pred, i_true, adt = i_pred[within], i_true[within], adt[within]
    used_pred = np.zeros(len(t_pred), dtype=bool)
    used_true = np.zeros(len(t_true), dtype=bool)
    pairs = []
    for k in np.lexsort((i_pred, i_true, adt)):
        p, r = i_pred[k], i_true[k]
        if not (used_pred[p] or used_true[r]):
            used_pred[p] = used_true[r] = True
            pairs.append((int(p), int(r)))
    return sorted(pairs)
