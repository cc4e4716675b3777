"""The ladder's verdict: valid fractions by hand, the holds/partial/fails rule, the rendered text."""

import numpy as np
import pytest

from stiffbench.store import CellRecord
from stiffbench.suite import Suite, SuiteError, load_suite
from stiffbench.verdict import FAILS, HOLDS, MISSING, NA, PARTIAL, Rung, judge, judgements, render_verdict, valid_fraction


def rec(label, seed, valid, status="ok", window="extrapolation"):
    metrics = {} if valid is None and status != "ok" else {window: {"valid_time": valid}}
    return CellRecord(f"{label}{seed}", "s", "m", label, seed, status, metrics=metrics)


def uniform_rung(records=()):
    # samples 10, 11, ..., 20: ten intervals after the first sample
    return Rung("sys", "extrapolation", 10.0, 20.0, np.arange(10.0, 21.0), sorted({r.label for r in records}),
                list(records))


def test_valid_fraction_on_a_uniform_grid():
    rung = uniform_rung()
    assert valid_fraction(rec("a", 0, 4.5), rung) == pytest.approx(0.4)  # samples 11..14 of 11..20
    assert valid_fraction(rec("a", 0, 10.0), rung) == 1.0
    assert valid_fraction(rec("a", 0, 0.0), rung) == 0.0
    assert valid_fraction(rec("a", 0, None, status="diverged"), rung) == 0.0
    assert valid_fraction(rec("a", 0, None, status="n/a"), rung) is None


def test_valid_fraction_on_a_log_grid_counts_decades_not_time():
    samples = np.logspace(-2, 4, 7)  # 0.01, 0.1, ..., 1e4: six decades after the first sample
    rung = Rung("chem", "extrapolation", 0.01, 1e4, samples)
    # valid until t = 10.01: the samples 0.1, 1 and 10 of six -> 0.5, though only 0.1 % of the time
    assert valid_fraction(rec("a", 0, 10.0), rung) == pytest.approx(0.5)


def test_valid_fraction_without_samples_is_taken_on_time():
    rung = Rung("old", "extrapolation", 10.0, 20.0, None)
    assert valid_fraction(rec("a", 0, 2.5), rung) == pytest.approx(0.25)


def test_judge_by_the_median():
    assert judge([1.0, 0.95, 0.1], 0.9, 0.1) == HOLDS  # median 0.95
    assert judge([1.0, 0.5, 0.0], 0.9, 0.1) == PARTIAL
    assert judge([0.05, 0.0, 1.0], 0.9, 0.1) == FAILS


def test_judgements_name_na_and_missing_rows():
    rung = uniform_rung([rec("good", 0, 10.0), rec("good", 1, 9.5), rec("bad", 0, 0.3),
                         rec("none", 0, None, status="n/a")])
    rung.methods = ["good", "bad", "none", "absent"]
    out = judgements(rung, 0.9, 0.1)
    assert out["good"].verdict == HOLDS and out["good"].median == pytest.approx(0.95)
    assert out["bad"].verdict == FAILS and out["bad"].median == 0.0
    assert out["none"].verdict == NA and out["absent"].verdict == MISSING


def test_rendered_verdict_names_where_each_method_breaks():
    easy = uniform_rung([rec("a", 0, 10.0), rec("b", 0, 10.0)])
    hard = Rung("hard", "extrapolation", 10.0, 20.0, np.arange(10.0, 21.0), ["a", "b"],
                [rec("a", 0, 10.0), rec("b", 0, 5.0)])
    only_c = Rung("other", "extrapolation", 0.0, 1.0, None, ["c"], [rec("c", 0, 0.0)])
    text = "\n".join(render_verdict([easy, hard, only_c], ["a", "b", "c"], 0.9, 0.1, "valid_time"))
    assert "- **sys** (extrapolation window [10, 20]): holds: a (1.00), b (1.00)." in text
    assert "- **hard** (extrapolation window [10, 20]): holds: a (1.00); partial: b (0.50)." in text
    assert "- **a**: holds on sys, hard; falls short on no system it ran on." in text
    assert "- **b**: holds on sys; first falls short on hard." in text
    assert "- **other** (extrapolation window [0, 1]): fails: c (0.00)." in text  # a and b do not run there
    assert "- **c**: holds on no system; first falls short on other." in text


def test_suite_verdict_options_validate(tmp_path):
    base = dict(name="t", seeds=[0], epochs=1, systems=[{"name": "s"}], methods=[{"label": "a", "method": "m"}])
    suite = Suite(**base, leaderboard={"verdict": {}})
    assert (suite.leaderboard.verdict.window, suite.leaderboard.verdict.holds) == ("extrapolation", 0.9)
    path = tmp_path / "bad.toml"
    path.write_text('seeds = [0]\nepochs = 1\n[[systems]]\nname = "s"\n[[methods]]\nlabel = "a"\nmethod = "m"\n'
                    '[leaderboard]\nverdict = { holds = 0.2, fails = 0.5 }\n')
    with pytest.raises(SuiteError, match="fails .0.5. must not exceed holds .0.2."):
        load_suite(str(path))


def test_leaderboard_renders_the_verdict_from_the_store(tmp_path):
    from stiffbench import leaderboard
    from stiffbench.registry import Registry
    from stiffbench.runner import expand_cells, metric_instances
    from stiffbench.store import Store

    path = tmp_path / "ladder.toml"
    path.write_text('seeds = [0, 1]\nepochs = 1\n'
                    '[[systems]]\nname = "fhn"\n'
                    '[[systems]]\nname = "fhn"\nlabel = "fhn-stiff"\nparams = { eps = 0.02 }\n'
                    '[[methods]]\nlabel = "a"\nmethod = "vanilla_node"\n'
                    '[[methods]]\nlabel = "b"\nmethod = "vanilla_pinn"\n'
                    '[metrics.valid_time]\nparams = { tolerance = 0.3 }\n'
                    '[leaderboard]\nverdict = { window = "extrapolation" }\n')
    suite, registry = load_suite(str(path)), Registry()
    cells = expand_cells(suite, registry)
    # fhn's extrapolation window [40, 280] on its 0.1 grid: 2400 intervals after the first sample
    valid = {("fhn", "a"): 240.0, ("fhn", "b"): 120.0, ("fhn-stiff", "a"): 240.0, ("fhn-stiff", "b"): 0.0}
    with Store(tmp_path / "res") as store:
        for cell in cells:
            store.put(CellRecord(key=cell.key, system="fhn", method=cell.method.name, label=cell.label, seed=cell.seed,
                                 status="ok", metrics={"extrapolation": {"valid_time": valid[cell.system_label, cell.label]}}))
        board = leaderboard.build(suite, cells, store, metric_instances(registry, suite))
    assert "## Verdict: where each method holds" in board and "`valid_time` with tolerance 0.3" in board
    assert "- **fhn** (extrapolation window [40, 280]): holds: a (1.00); partial: b (0.50)." in board
    assert "- **fhn-stiff** (extrapolation window [40, 280]): holds: a (1.00); fails: b (0.00)." in board
    assert "- **b**: holds on no system; first falls short on fhn." in board
