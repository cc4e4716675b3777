"""Primary metric, row ranking and median seed of a leaderboard table, with hand-computed orders."""

import pytest
from stiffbench_systems.hh import HodgkinHuxley
from stiffbench_systems.vdp import VanDerPol

from stiffbench.api import AbstractMetric, Spiking
from stiffbench.metrics.rmse import RMSE
from stiffbench.ranking import PrimaryMetric, median_seed, primary_metric, rank_labels, tie_break_metric
from stiffbench.store import CellRecord

W = "extrapolation"
F1 = PrimaryMetric("spike_f1", True)
RMSE_V = PrimaryMetric("rmse_V", False)


def rec(label, seed, status="ok", **values):
    return CellRecord(f"{label}{seed}", "hh", "m", label, seed, status, metrics={W: values} if status == "ok" else {})


class Coverage(AbstractMetric):
    """A third-party metric declaring its direction."""

    name = "coverage"
    description = "share of the window covered"
    keys = ("coverage", "misses")
    higher_is_better = ("coverage",)

    def compute(self, pred, true, system):
        return {}


class SpikeCoverage(Coverage):
    """Declares coverage higher-is-better, but applies only to spiking systems."""

    name = "spike_coverage"
    requires = (Spiking,)


class UndeclaredCoverage(Coverage):
    """Produces coverage without declaring a direction."""

    name = "undeclared_coverage"
    higher_is_better = ()


def test_default_primary_spike_f1_then_valid_time_then_the_first_key():
    hh, vdp = HodgkinHuxley(), VanDerPol()
    assert primary_metric(hh, ["rmse_V", "spike_f1", "valid_time"]) == PrimaryMetric("spike_f1", True)
    assert primary_metric(vdp, ["rmse_x", "rmse_y", "valid_time"]) == PrimaryMetric("valid_time", True)
    assert primary_metric(vdp, ["rmse_x", "rmse_y"]) == PrimaryMetric("rmse_x", False)
    with pytest.raises(ValueError, match="no metric keys"):
        primary_metric(vdp, [])


def test_rank_by_names_the_primary_and_an_unknown_key_falls_back_to_the_default():
    hh = HodgkinHuxley()
    keys = ["rmse_V", "rmse_n", "spike_f1"]
    assert primary_metric(hh, keys, "rmse_n") == PrimaryMetric("rmse_n", False)
    assert primary_metric(hh, keys, "rmse_x") == PrimaryMetric("spike_f1", True)


def test_direction_from_the_producing_metric_class_else_lower():
    vdp = VanDerPol()
    metrics = [RMSE(), Coverage()]
    assert primary_metric(vdp, ["coverage", "misses"], "coverage", metrics) == PrimaryMetric("coverage", True)
    assert primary_metric(vdp, ["coverage", "misses"], "misses", metrics) == PrimaryMetric("misses", False)
    # without the loaded metrics the declaration is unknown: lower is better
    assert primary_metric(vdp, ["coverage"], "coverage") == PrimaryMetric("coverage", False)
    # the metric producing the key on this system is consulted; one that does not apply to it is not
    undeclared = [SpikeCoverage(), UndeclaredCoverage()]
    assert primary_metric(HodgkinHuxley(), ["coverage"], "coverage", undeclared) == PrimaryMetric("coverage", True)
    assert primary_metric(vdp, ["coverage"], "coverage", undeclared) == PrimaryMetric("coverage", False)


def test_tie_break_is_the_first_other_key():
    hh = HodgkinHuxley()
    assert tie_break_metric(hh, ["rmse_V", "spike_f1"], F1) == RMSE_V
    assert tie_break_metric(hh, ["rmse_V", "valid_time"], RMSE_V) == PrimaryMetric("valid_time", True)
    assert tie_break_metric(hh, ["spike_f1"], F1) is None


def test_rank_labels_by_mean_over_ok_seeds_higher_first():
    records = [
        rec("a", 0, spike_f1=0.2), rec("a", 1, spike_f1=0.4),    # mean 0.3
        rec("b", 0, spike_f1=0.9), rec("b", 1, "diverged"),       # mean over ok seeds: 0.9
        rec("c", 0, spike_f1=None), rec("c", 1, spike_f1=0.5),    # undefined seed skipped: 0.5
        rec("d", 0, spike_f1=None),                               # undefined for every ok seed: last
        rec("e", 0, "diverged"),                                  # no ok seed: last, after d (suite order)
    ]
    assert rank_labels(["e", "d", "a", "b", "c"], records, W, F1) == ["b", "c", "a", "e", "d"]


def test_rank_labels_lower_first_and_ties_keep_suite_order():
    records = [rec("a", 0, rmse_V=2.0), rec("b", 0, rmse_V=1.0), rec("c", 0, rmse_V=2.0)]
    assert rank_labels(["a", "b", "c"], records, W, RMSE_V) == ["b", "a", "c"]
    assert rank_labels(["c", "b", "a"], records, W, RMSE_V) == ["b", "c", "a"]


def test_ties_broken_by_the_tie_break_key_then_suite_order():
    records = [rec("a", 0, spike_f1=0.0, rmse_V=30.0), rec("b", 0, spike_f1=0.0, rmse_V=10.0),
               rec("c", 0, spike_f1=0.0, rmse_V=None), rec("d", 0, spike_f1=0.5, rmse_V=99.0),
               rec("e", 0, spike_f1=0.0, rmse_V=10.0), rec("f", 0, spike_f1=None, rmse_V=1.0)]
    # d has the best F1; a, b, c, e tie at 0: by rmse_V (b and e equal: suite order), c undefined after them;
    # f has no F1 and stays last whatever its rmse_V
    assert rank_labels(list("abcdef"), records, W, F1, RMSE_V) == ["d", "b", "e", "a", "c", "f"]
    assert rank_labels(list("abcdef"), records, W, F1) == ["d", "a", "b", "c", "e", "f"]


def test_median_seed_odd_count_ignores_cells_that_are_not_ok():
    records = [rec("a", 0, rmse_V=5.0), rec("a", 1, rmse_V=1.0), rec("a", 2, rmse_V=3.0), rec("a", 3, "diverged"),
               rec("a", 4, rmse_V=None)]
    assert median_seed(records, W, RMSE_V) == 2  # values 1, 3, 5: seed 2 holds 3


def test_median_seed_even_count_is_the_worse_middle_in_ranking_order():
    records = [rec("a", 0, spike_f1=0.1), rec("a", 1, spike_f1=0.9), rec("a", 2, spike_f1=0.5), rec("a", 3, spike_f1=0.7)]
    # best first: 0.9 (1), 0.7 (3), 0.5 (2), 0.1 (0); position 4 // 2 = 2
    assert median_seed(records, W, F1) == 2
    # lower is better on the same numbers: 0.1 (0), 0.5 (2), 0.7 (3), 0.9 (1)
    assert median_seed(records, W, PrimaryMetric("spike_f1", False)) == 3
    assert median_seed(records[:2], W, F1) == 0  # of two seeds, the worse: never the best one


def test_median_seed_equal_values_by_seed_and_none_without_values():
    records = [rec("a", 7, rmse_V=2.0), rec("a", 3, rmse_V=2.0), rec("a", 5, rmse_V=2.0)]
    assert median_seed(records, W, RMSE_V) == 5  # seeds 3, 5, 7 in that order
    assert median_seed([rec("a", 0, rmse_V=None), rec("a", 1, "timeout")], W, RMSE_V) is None
    assert median_seed([], W, RMSE_V) is None
