"""Spike detection and matching on hand-built traces with hand-computed answers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stiffbench.spikes import detect_spikes, match_spikes

DT = 0.01


def bumps(n, spec, base=-65.0):
    """A 0.01 ms grid t[k] = k*DT and a trace with a triangular bump per (time, height):
    v[k] = height - |k - kc| (1 mV per sample), so a bump of height h > 0 stays above 0 mV for
    2h - 1 samples around kc = round(time / DT) and peaks exactly at h."""
    k = np.arange(n)
    v = np.full(n, base)
    for tc, h in spec:
        v = np.maximum(v, h - np.abs(k - round(tc / DT)))
    return k * DT, v


def test_detects_each_excursion_at_its_peak():
    t, v = bumps(5000, [(10.0, 30.0), (25.0, 40.0), (40.0, 20.0)])
    times, peaks = detect_spikes(t, v)
    np.testing.assert_allclose(times, [10.0, 25.0, 40.0])
    np.testing.assert_array_equal(peaks, [30.0, 40.0, 20.0])


def test_no_excursion_gives_empty_arrays():
    times, peaks = detect_spikes(np.arange(5) * DT, np.full(5, -65.0))
    assert times.shape == peaks.shape == (0,)


def test_threshold_parameter():
    t, v = bumps(3000, [(10.0, -5.0), (20.0, 30.0)])
    # the -5 mV bump is below 0 mV but above -10 mV
    assert len(detect_spikes(t, v, threshold=0.0).times) == 1
    np.testing.assert_allclose(detect_spikes(t, v, threshold=-10.0).times, [10.0, 20.0])


@pytest.mark.parametrize(
    "spec, expected_time, expected_peak",
    [
        ([(10.0, 30.0), (11.5, 40.0)], 11.5, 40.0),  # 1.5 ms < 2 ms: merged, taller (later) kept
        ([(10.0, 40.0), (11.5, 30.0)], 10.0, 40.0),  # merged, taller (earlier) kept
        ([(10.0, 30.0), (11.0, 30.0)], 10.0, 30.0),  # equally tall: the earlier is kept
    ],
)
def test_close_peaks_merge_keeping_the_taller(spec, expected_time, expected_peak):
    # half-widths above 0 mV are 0.3-0.4 ms, so the bumps are separate excursions
    times, peaks = detect_spikes(*bumps(3000, spec))
    np.testing.assert_allclose(times, [expected_time])
    np.testing.assert_array_equal(peaks, [expected_peak])


def test_peaks_at_least_merge_apart_stay_separate():
    times, _ = detect_spikes(*bumps(3000, [(10.0, 30.0), (12.5, 40.0)]))  # 2.5 ms apart
    np.testing.assert_allclose(times, [10.0, 12.5])
    times, _ = detect_spikes(*bumps(3000, [(10.0, 30.0), (12.0, 40.0)]))  # exactly 2 ms: not < 2
    np.testing.assert_allclose(times, [10.0, 12.0])


def test_merge_is_immune_to_grid_round_off():
    # t[205] - t[5] == 1.9999999999999998 in binary; the peaks are still 2 ms apart
    t, v = bumps(400, [(5 * DT, 30.0), (205 * DT, 40.0)])
    assert t[205] - t[5] < 2.0
    assert len(detect_spikes(t, v).times) == 2


def test_merge_compares_with_the_last_kept_spike():
    # 10 (40 mV), 11.5 (30 mV), 13 (35 mV): 11.5 merges into 10 (taller kept); 13 is then
    # 13 - 10 = 3 ms after the last kept spike, so it stays, although it is 1.5 ms after 11.5.
    times, peaks = detect_spikes(*bumps(3000, [(10.0, 40.0), (11.5, 30.0), (13.0, 35.0)]))
    np.testing.assert_allclose(times, [10.0, 13.0])
    np.testing.assert_array_equal(peaks, [40.0, 35.0])
    # 10 (30), 11.5 (40), 13 (35): 11.5 replaces 10, then 13 is 1.5 ms after 11.5 and shorter
    times, peaks = detect_spikes(*bumps(3000, [(10.0, 30.0), (11.5, 40.0), (13.0, 35.0)]))
    np.testing.assert_allclose(times, [11.5])
    np.testing.assert_array_equal(peaks, [40.0])


def test_runs_touching_the_window_edges():
    k = np.arange(1000)
    v = np.maximum(20.0 - k, 30.0 - (999 - k))  # falls from 20 mV at k=0, rises to 30 mV at k=999
    times, peaks = detect_spikes(k * DT, v)
    np.testing.assert_allclose(times, [0.0, 9.99])
    np.testing.assert_array_equal(peaks, [20.0, 30.0])


def test_samples_exactly_at_threshold_are_not_above():
    t = np.arange(7) * DT
    assert len(detect_spikes(t, np.array([-1.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0])).times) == 0
    # a sample at exactly 0 mV splits 3 | 0 | 3 into two excursions (indices 2 and 4)
    v = np.array([-5.0, 0.0, 3.0, 0.0, 3.0, 0.0, -5.0])
    np.testing.assert_allclose(detect_spikes(t, v, merge=0.0).times, [0.02, 0.04])
    # 0.02 ms apart < 2 ms: merged, equally tall so the earlier (0.02) is kept
    np.testing.assert_allclose(detect_spikes(t, v).times, [0.02])


def test_first_maximum_of_a_flat_top():
    v = np.array([-1.0, 5.0, 7.0, 7.0, 2.0, -1.0])
    times, peaks = detect_spikes(np.arange(6) * DT, v)
    np.testing.assert_allclose(times, [0.02])
    np.testing.assert_array_equal(peaks, [7.0])


def test_nearest_first_matching_differs_from_left_to_right():
    # left-to-right would match 10<->11.5 (1.5 ms) then 12<->13.9 (1.9 ms): two pairs.
    # Nearest first: |11.5-12| = 0.5 is smallest, so pred 0 takes true 1; pred 1 (13.9) is then
    # 3.9 ms from true 0, beyond 2 ms: one pair.
    assert match_spikes([11.5, 13.9], [10.0, 12.0], 2.0) == [(0, 1)]


def test_ties_break_by_true_then_pred_index():
    assert match_spikes([11.0], [10.0, 12.0], 2.0) == [(0, 0)]  # |dt| = 1 to both trues
    assert match_spikes([10.0, 12.0], [11.0], 2.0) == [(0, 0)]  # |dt| = 1 to both preds


def test_tolerance_edge():
    assert match_spikes([12.0], [10.0], 2.0) == [(0, 0)]  # exactly 2 ms
    assert match_spikes([12.01], [10.0], 2.0) == []  # 2.01 ms
    assert match_spikes([7.99], [10.0], 2.0) == []  # 2.01 ms before
    t = np.arange(300) * DT
    assert t[201] - t[1] > 2.0  # 2.0000000000000004 in binary, still 2 ms on the grid
    assert match_spikes([t[201]], [t[1]], 2.0) == [(0, 0)]


def test_matching_is_one_to_one():
    # both preds are 0.05 ms from the one true spike; the lower pred index wins
    assert match_spikes([10.0, 10.1], [10.05], 2.0) == [(0, 0)]
    assert match_spikes([], [1.0, 2.0], 2.0) == []
    assert match_spikes([1.0], [], 2.0) == []


def test_detects_a_long_window_quickly():
    # 90,000 samples with 70 spikes, the size of the longest evaluation windows
    t, v = bumps(90_000, [(5.0 + 12.5 * i, 40.0) for i in range(70)])
    times, _ = detect_spikes(t, v)
    assert len(times) == 70
    assert match_spikes(times + 0.3, times, 2.0) == [(i, i) for i in range(70)]


sorted_times = st.lists(st.floats(0.0, 100.0, allow_nan=False), max_size=30).map(sorted)


@given(sorted_times, sorted_times, st.floats(0.1, 5.0))
def test_matching_property(t_pred, t_true, tol):
    pairs = match_spikes(t_pred, t_true, tol)
    assert len({p for p, _ in pairs}) == len({r for _, r in pairs}) == len(pairs)
    assert all(abs(t_pred[p] - t_true[r]) <= tol + 1e-9 for p, r in pairs)
    assert 0.0 <= 2 * len(pairs) / max(1, len(t_pred) + len(t_true)) <= 1.0


@given(st.lists(st.floats(0.0, 100.0, allow_nan=False), max_size=30, unique=True).map(sorted))
def test_identical_trains_match_themselves(times):
    assert match_spikes(times, times, 2.0) == [(i, i) for i in range(len(times))]


def naive_detect(t, v, threshold, merge):
    """The definition, written as plainly as possible: runs, first argmax, merge with last kept."""
    spikes, k = [], 0
    while k < len(v):
        if v[k] > threshold:
            start = k
            while k < len(v) and v[k] > threshold:
                k += 1
            peak = start + int(np.argmax(v[start:k]))
            spikes.append((t[peak], v[peak]))
        k += 1
    kept = []
    for s in spikes:
        if kept and round(s[0] - kept[-1][0], 9) < merge:
            if s[1] > kept[-1][1]:
                kept[-1] = s
        else:
            kept.append(s)
    return kept


def naive_match(t_pred, t_true, tol):
    cands = sorted(
        (round(abs(tp - tt), 9), r, p)
        for p, tp in enumerate(t_pred)
        for r, tt in enumerate(t_true)
        if round(abs(tp - tt), 9) <= tol
    )
    pairs, used_p, used_r = [], set(), set()
    for _, r, p in cands:
        if p not in used_p and r not in used_r:
            used_p.add(p)
            used_r.add(r)
            pairs.append((p, r))
    return sorted(pairs)


@given(st.lists(st.integers(-3, 3), max_size=60), st.integers(0, 40))
def test_detection_agrees_with_the_definition(levels, merge_samples):
    # small integer levels make ties and exactly-at-threshold samples frequent
    t, v = np.arange(len(levels)) * 0.1, np.array(levels, dtype=float)
    times, peaks = detect_spikes(t, v, 0.0, merge_samples * 0.1)
    assert list(zip(times, peaks)) == naive_detect(t, v, 0.0, merge_samples * 0.1)


# times on a 0.1 ms grid (k * 0.1, with its round-off) make ties and tolerance edges frequent
grid_times = st.lists(st.integers(0, 300), max_size=30).map(lambda ks: sorted(k * 0.1 for k in ks))


@given(st.one_of(sorted_times, grid_times), st.one_of(sorted_times, grid_times),
       st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.1, 5.0)))
def test_matching_agrees_with_the_definition(t_pred, t_true, tol):
    assert match_spikes(t_pred, t_true, tol) == naive_match(t_pred, t_true, tol)
