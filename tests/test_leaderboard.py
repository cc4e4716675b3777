"""Leaderboard cell formatting and table layout, with hand-computed values."""

import numpy as np

from stiffbench.leaderboard import format_cell, window_table
from stiffbench.store import CellRecord


def test_format_cell_mean_and_sample_std():
    # mean(1, 2, 3) = 2; sample std = sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1
    assert format_cell(np.array([1.0, 2.0, 3.0]), 3) == "2 ± 1"


def test_format_cell_partial_and_undefined():
    assert format_cell(np.array([0.5, np.nan]), 2) == "0.5 (1/2)"
    assert format_cell(np.array([np.nan, np.nan]), 2) == "–"
    assert format_cell(np.array([]), 0) == "–"


def rec(label, seed, status, value, train):
    return CellRecord(key=f"{label}{seed}", system="hh", method=label, label=label, seed=seed, status=status,
                      metrics={"extrapolation": {"rmse_V": value}} if status == "ok" else {}, train_s=train)


def test_window_table_rows_and_counts():
    records = [rec("a", 0, "ok", 2.0, 10.0), rec("a", 1, "ok", 4.0, 20.0), rec("b", 0, "diverged", None, 5.0)]
    table = window_table(["a", "b"], records, "extrapolation", ["rmse_V"])
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["method", "rmse_V", "ok/total", "train s"]
    # a: mean(2, 4) = 3, std = sqrt(2) = 1.41; train mean 15
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["a", "3 ± 1.41", "2/2", "15"]
    assert [c.strip() for c in lines[3].split("|")[1:-1]] == ["b", "–", "0/1", "5"]


def test_paper_columns_follow_ours_with_dash_for_missing():
    records = [rec("a", 0, "ok", 2.0, 1.0), rec("b", 0, "ok", 5.0, 1.0)]
    table = window_table(["a", "b"], records, "extrapolation", ["rmse_V"], {"a": {"rmse_V": 3.12}, "b": {}}, ["rmse_V"])
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["method", "rmse_V", "rmse_V (paper)", "ok/total", "train s"]
    assert [c.strip() for c in lines[2].split("|")[1:-1]][:3] == ["a", "2", "3.12"]
    assert [c.strip() for c in lines[3].split("|")[1:-1]][:3] == ["b", "5", "–"]


def test_qualitative_summary_counts_seeds():
    from stiffbench.leaderboard import SummaryCriteria, qualitative_table

    def full(label, seed, status, f1, isi, amp, bound):
        values = {"spike_f1": f1, "isi_error": isi, "amp_pres_pct": amp, "bound_violation": bound}
        return CellRecord(key=f"{label}{seed}", system="hh", method=label, label=label, seed=seed, status=status,
                          metrics={"extrapolation": values, "long": values} if status == "ok" else {})

    records = [full("a", 0, "ok", 1.0, 0.1, 2.0, 0.0), full("a", 1, "ok", 0.5, 3.0, 2.0, 0.5),
               full("a", 2, "diverged", None, None, None, None)]
    criteria = SummaryCriteria(isi_limit=1.0, time_unit="ms", bound_limit=0.01)
    table = qualitative_table(["a"], records, ["extrapolation", "long"], criteria)
    row = [c.strip() for c in table.splitlines()[2].split("|")[1:-1]]
    # F1 over ok seeds: mean(1.0, 0.5) = 0.75, sample std 0.354; seed 1 fails ISI and bounds
    assert row == ["a", "0.75 ± 0.354", "1/3", "1/3", "2/3"]
    assert qualitative_table(["a"], [rec("a", 0, "ok", 1.0, 1.0)], ["extrapolation"], criteria) is None
    # a system without bounds has no bounds column; a looser ISI limit keeps seed 1's cycle
    unbounded = SummaryCriteria(isi_limit=5.0, time_unit="", bound_limit=None)
    lines = qualitative_table(["a"], records, ["extrapolation", "long"], unbounded).splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["method", "spike F1", "limit cycle kept", "stable"]
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["a", "0.75 ± 0.354", "2/3", "2/3"]
