"""Leaderboard cell formatting, bootstrap intervals, table layout, row ranking and legend, with hand-computed values."""

import itertools

import numpy as np
import pytest

from stiffbench import leaderboard
from stiffbench.api import Window
from stiffbench.leaderboard import Section, bootstrap_interval, format_cell, render, window_table
from stiffbench.ranking import PrimaryMetric
from stiffbench.registry import Registry
from stiffbench.runner import expand_cells, metric_instances
from stiffbench.store import CellRecord, Store
from stiffbench.suite import Suite, SuiteError, load_suite


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


# Bootstrap interval: the resampled means of n values take finitely many values, each with a probability
# computed exactly by enumerating the n^n equally likely resamples.

def exact_percentile_interval(values, level=0.95):
    """The bootstrap distribution's quantiles by enumeration: the smallest mean m with P(mean <= m) >= q."""
    means = sorted(np.mean(pick) for pick in itertools.product(values, repeat=len(values)))
    lower, upper = ((1 - level) / 2, (1 + level) / 2)
    return tuple(means[int(np.ceil(q * len(means))) - 1] for q in (lower, upper))


def test_bootstrap_interval_of_three_values_is_their_range():
    # P(mean = 1) = P(all three draws are 1) = 1/27 = 3.7 % > 2.5 %, likewise P(mean = 3): the interval is [1, 3]
    assert exact_percentile_interval([1.0, 2.0, 3.0]) == (1.0, 3.0)
    assert bootstrap_interval(np.array([1.0, 2.0, 3.0])) == (1.0, 3.0)


def test_bootstrap_interval_upper_end_inside_the_range():
    # four 0s and one 1: the resampled mean is k/5 with k ~ Binomial(5, 0.2); P(k = 0) = 0.328, so lo = 0;
    # P(k <= 2) = 0.942 < 0.975 <= P(k <= 3) = 0.993, so hi = 3/5 = 0.6, not the maximum 1
    values = [0.0, 0.0, 0.0, 0.0, 1.0]
    assert exact_percentile_interval(values) == (0.0, 0.6)
    assert bootstrap_interval(np.array(values)) == (0.0, 0.6)


def test_bootstrap_interval_is_reproducible_and_within_the_range():
    values = np.array([1.0, 2.0, 4.0, 8.0])
    lo, hi = bootstrap_interval(values)
    assert (lo, hi) == bootstrap_interval(values.copy())
    assert 1.0 <= lo < values.mean() < hi <= 8.0


def test_format_cell_bootstrap():
    assert format_cell(np.array([1.0, 2.0, 3.0]), 3, "bootstrap95") == "2 [1, 3]"
    # two values 1 and 3: means 1, 2, 3 with probabilities 1/4, 1/2, 1/4, so [1, 3]
    assert format_cell(np.array([1.0, 3.0, np.nan]), 3, "bootstrap95") == "2 [1, 3] (2/3)"
    assert format_cell(np.array([5.0]), 1, "bootstrap95") == "5"  # a lone value has no interval
    assert format_cell(np.array([np.nan]), 1, "bootstrap95") == "–"


# The rendered document: rows ranked per window, the legend once at the top, a line under each table.

RMSE_TEXT = "Per-state root-mean-square error over the window."
F1_TEXT = "Spike F1 score."


def board(records, labels, rank_by=None, spread="std", windows=None):
    suite = Suite(name="t", seeds=[0, 1], epochs=1, systems=[{"name": "hh"}],
                  methods=[{"label": label, "method": "m"} for label in labels],
                  leaderboard={"rank_by": rank_by, "spread": spread})
    section = Section("hh", records, len(records), windows=windows or [Window("extrapolation", 14.68, 100.0)],
                      key_order=["rmse_V", "rmse_n", "spike_f1"], units={"rmse_V": "mV"}, time_unit="ms",
                      rows=list(labels), primary=PrimaryMetric("spike_f1", True),
                      tie_break=PrimaryMetric("rmse_V", False),
                      descriptions={"rmse_V": RMSE_TEXT, "rmse_n": RMSE_TEXT, "spike_f1": F1_TEXT})
    return render(suite, [section])


def cell(label, seed, **values):
    return CellRecord(key=f"{label}{seed}", system="hh", method=label, label=label, seed=seed, status="ok",
                      metrics={"extrapolation": values, "long": values}, train_s=1.0)


def first_column(text, heading):
    """The method names of the table after `heading`, top to bottom."""
    lines = text.splitlines()
    names = []
    for line in lines[lines.index(heading) + 4:]:
        if not line.startswith("|"):
            break
        names.append(line.split("|")[1].strip())
    return names


EXT_HEADING = "## hh — extrapolation window [14.68, 100] ms"


def test_rendered_rows_ranked_by_the_primary_metric_with_the_tie_break():
    records = [cell("a", 0, spike_f1=0.2, rmse_V=5.0), cell("b", 0, spike_f1=0.8, rmse_V=50.0),
               cell("c", 0, spike_f1=None, rmse_V=1.0), cell("d", 0, spike_f1=0.2, rmse_V=4.0)]
    text = board(records, ["a", "b", "c", "d"])
    # b has the best F1; a and d tie at 0.2 and d's rmse_V is lower; c has no F1 and comes last
    assert first_column(text, EXT_HEADING) == ["b", "d", "a", "c"]
    assert ("Window `extrapolation`: t from 14.68 to 100 ms (85.32 ms). Ranked by `spike_f1` (higher is better); "
            "ties by `rmse_V` (lower is better).") in text


def test_rows_in_suite_order_when_the_primary_metric_is_undefined_everywhere():
    records = [cell("a", 0, spike_f1=None, rmse_V=5.0), cell("b", 0, spike_f1=None, rmse_V=1.0)]
    text = board(records, ["a", "b"])
    assert first_column(text, EXT_HEADING) == ["a", "b"]
    assert "Ranked by `spike_f1` (higher is better); undefined on every row here, so the rows are in suite order." in text


def test_legend_once_at_the_top_and_a_line_under_each_table():
    records = [cell("a", 0, rmse_V=1.0, rmse_n=0.1, spike_f1=1.0, bound_violation=0.0, mystery=3.0)]
    windows = [Window("extrapolation", 14.68, 100.0), Window("long", 100.0, 1000.0)]
    text = board(records, ["a"], windows=windows)
    assert text.count('Metric cells are "mean ± std"') == 1 and text.count("ddof = 1") == 1
    for phrase in ('"–" marks a metric undefined for every ok seed', "`ok/total`: the row's cells that finished `ok`",
                   "`train s`: the mean training wall time per cell, in seconds"):
        assert text.count(phrase) == 1
    assert f"- `rmse_*`: {RMSE_TEXT}" in text and f"- `spike_f1`: {F1_TEXT}" in text
    assert "- `bound_violation`: Largest distance of a bounded state outside its range" in text
    assert "- `mystery`: not described (its metric is not loaded)." in text
    assert text.index("Metric columns") < text.index(EXT_HEADING)
    assert "Window `long`: t from 100 to 1000 ms (900 ms). Ranked by `spike_f1`" in text


def test_bootstrap_spread_in_cells_and_legend():
    records = [cell("a", 0, rmse_V=1.0), cell("a", 1, rmse_V=3.0)]
    text = board(records, ["a"], spread="bootstrap95")
    assert '"mean [lo, hi]"' in text and "95 % percentile bootstrap interval of the mean (10 000 resamples" in text
    assert "ddof" not in text
    row = [c.strip() for c in text.splitlines()[text.splitlines().index(EXT_HEADING) + 4].split("|")[1:-1]]
    assert row[1] == "2 [1, 3]"


def test_rank_by_naming_a_missing_key_falls_back_with_a_note():
    records = [cell("a", 0, spike_f1=0.1), cell("b", 0, spike_f1=0.9)]
    text = board(records, ["a", "b"], rank_by="rmse_x")
    assert '`rank_by = "rmse_x"` is not a metric key of hh: those tables are ranked by the default key' in text
    assert first_column(text, EXT_HEADING) == ["b", "a"]
    assert "is not a metric key" not in board(records, ["a", "b"], rank_by="spike_f1")


def test_built_board_ranks_by_the_suites_key_and_describes_columns_from_the_metrics(tmp_path):
    suite = Suite(name="t", seeds=[0], epochs=1, systems=[{"name": "hh"}],
                  methods=[{"label": label, "method": "vanilla_node"} for label in ("a", "b")],
                  leaderboard={"rank_by": "rmse_V"})
    registry = Registry()
    cells = expand_cells(suite, registry)
    rmse = {"a": 9.0, "b": 2.0}
    with Store(tmp_path / "res") as store:
        for c in cells:
            store.put(CellRecord(key=c.key, system="hh", method="vanilla_node", label=c.label, seed=c.seed, status="ok",
                                 metrics={"extrapolation": {"rmse_V": rmse[c.label], "spike_f1": 1.0}}))
        text = leaderboard.build(suite, cells, store, metric_instances(registry, suite))
    assert first_column(text, EXT_HEADING) == ["b", "a"]
    assert "Ranked by `rmse_V` (lower is better); ties by `rmse_n` (lower is better)." in text
    assert "- `spike_f1`: Spike F1 score 2TP/(N_pred+N_true)" in text  # SpikeF1.description


def test_leaderboard_options_are_validated_with_one_line_errors(tmp_path):
    base = 'seeds = [0]\nepochs = 1\n[[systems]]\nname = "hh"\n[[methods]]\nlabel = "a"\nmethod = "m"\n[leaderboard]\n'
    path = tmp_path / "s.toml"
    for option, message in (("rank_by = 5", "leaderboard.rank_by: Input should be a valid string"),
                            ('spread = "iqr"', "leaderboard.spread: Input should be 'std' or 'bootstrap95'")):
        path.write_text(base + option + "\n")
        with pytest.raises(SuiteError, match=message) as caught:
            load_suite(str(path))
        assert "\n" not in str(caught.value)
    path.write_text(base)
    assert (load_suite(str(path)).leaderboard.spread, load_suite(str(path)).leaderboard.rank_by) == ("std", None)


def test_equal_values_show_no_spread():
    # the mean of five copies of 0.405 is not exactly 0.405 in floating point: np.std gives 6.2e-17
    assert format_cell(np.full(5, 0.405), 5) == "0.405 ± 0"
