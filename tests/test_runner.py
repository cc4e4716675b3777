"""Runner: statuses, resume, batching across seeds and variants, with injected plugins."""

import numpy as np
import pytest

import fake_plugins
from stiffbench.registry import PluginSpec, Registry
from stiffbench.runner import Runner, expand_cells
from stiffbench.store import Store
from stiffbench.suite import Suite, SuiteError



def registry(extra=()):
    specs = [
        PluginSpec("systems", "damped_oscillator", "stiffbench.testing.toy:DampedOscillator", "stiffbench", "0"),
        PluginSpec("systems", "plain_oscillator", "fake_plugins:NoPhysicsOscillator", "fakes", "1"),
        PluginSpec("metrics", "rmse", "stiffbench.metrics.rmse:RMSE", "stiffbench", "0"),
        PluginSpec("metrics", "amp_pres", "stiffbench.metrics.amp_pres:AmplitudePreservation", "stiffbench", "0"),
        PluginSpec("methods", "broken", "fake_plugins_missing_module:Nothing", "fakes", "1"),
    ]
    for cls_name in fake_plugins.ALL:
        cls = getattr(fake_plugins, cls_name)
        specs.append(PluginSpec("methods", cls.name, f"fake_plugins:{cls_name}", "fakes", "1"))
    return Registry([*specs, *extra])


def suite(methods, systems=("damped_oscillator",), seeds=(0, 1), epochs=2, budget_s=None):
    return Suite(
        name="t", seeds=list(seeds), epochs=epochs, budget_s=budget_s,
        systems=[{"name": s} for s in systems],
        methods=[{"label": label, "method": method, "params": params} for label, method, params in methods],
    )


def run(tmp_path, s, reg=None, log=None):
    with Store(tmp_path / "res") as store:
        report = Runner(reg or registry(), store, log=log).run(s)
        stored = store.get_many(c.key for c in report.cells)
        records = {(c.label, c.seed, c.system.name): stored[c.key] for c in report.cells if c.key in stored}
    return report, records


@pytest.fixture(autouse=True)
def clear_calls():
    fake_plugins.CALLS.clear()


def test_ok_cells_have_metrics_and_provenance(tmp_path):
    report, records = run(tmp_path, suite([("a", "exact", {"offset": 0.5})]))
    assert (report.total, report.cached, report.to_run) == (2, 0, 2)
    rec = records[("a", 0, "damped_oscillator")]
    assert rec.status == "ok" and rec.reason is None
    # forecast = exact + 0.5 in both states: RMSE 0.5 each
    assert rec.metrics["extrapolation"]["rmse_x"] == pytest.approx(0.5)
    assert rec.metrics["extrapolation"]["rmse_v"] == pytest.approx(0.5)
    assert rec.provenance["method_plugin"] == {"name": "exact", "distribution": "fakes", "version": "1"}
    assert rec.provenance["method_params"] == {"offset": 0.5} and rec.provenance["batch_size"] == 2
    assert fake_plugins.CALLS == [("exact", "fit", (0, 1))]  # both seeds in one fit call


def test_resume_runs_only_missing_cells(tmp_path):
    run(tmp_path, suite([("a", "exact", {})]))
    lines = []
    report, _ = run(tmp_path, suite([("a", "exact", {}), ("b", "exact", {"offset": 1.0})]), log=lines.append)
    assert (report.total, report.cached, report.to_run) == (4, 2, 2)
    assert lines[0] == "cells: 4 total, 2 cached, 2 to run"
    assert fake_plugins.CALLS == [("exact", "fit", (0, 1)), ("exact", "fit", (0, 1))]
    report, _ = run(tmp_path, suite([("a", "exact", {}), ("b", "exact", {"offset": 1.0})]))
    assert report.to_run == 0


def test_label_is_not_part_of_the_key(tmp_path):
    run(tmp_path, suite([("a", "exact", {})]))
    report, records = run(tmp_path, suite([("renamed", "exact", {})]))
    assert report.to_run == 0 and ("renamed", 0, "damped_oscillator") in records


def test_variants_with_equal_batch_key_train_together(tmp_path):
    s = suite([("a", "shared_exact", {"offset": 0.0}), ("b", "shared_exact", {"offset": 2.0})])
    _, records = run(tmp_path, s)
    assert fake_plugins.CALLS == [("shared_exact", "fit_batch", ((0.0, 0), (0.0, 1), (2.0, 0), (2.0, 1)))]
    assert records[("b", 1, "damped_oscillator")].metrics["extrapolation"]["rmse_x"] == pytest.approx(2.0)
    assert records[("b", 1, "damped_oscillator")].provenance["batch_size"] == 4


@pytest.mark.parametrize(
    "method, status, reason",
    [
        ("raising", "error", "RuntimeError: kaboom"),
        ("nans", "diverged", "forecast is NaN/Inf from t=0"),
        ("wrong_shape", "error", "forecast has shape (2, 80, 2), expected (2, 81, 2)"),
        ("broken", "load_error", "failed to import: ModuleNotFoundError"),
    ],
)
def test_faulty_plugins_become_statuses(tmp_path, method, status, reason):
    _, records = run(tmp_path, suite([("bad", method, {}), ("good", "exact", {})]))
    assert {r.status for (label, _, _), r in records.items() if label == "good"} == {"ok"}
    bad = [r for (label, _, _), r in records.items() if label == "bad"]
    assert len(bad) == 2 and all(r.status == status and reason in r.reason for r in bad), bad[0].reason
    assert all("\n" not in r.reason for r in bad)


def test_errors_are_retried_but_diverged_is_final(tmp_path):
    run(tmp_path, suite([("bad", "raising", {}), ("nan", "nans", {})]))
    report, _ = run(tmp_path, suite([("bad", "raising", {}), ("nan", "nans", {})]))
    assert (report.cached, report.to_run) == (2, 2)


def test_budget_gives_timeout(tmp_path):
    _, records = run(tmp_path, suite([("s", "slow", {})], seeds=[0], epochs=1000, budget_s=0.2))
    rec = records[("s", 0, "damped_oscillator")]
    assert rec.status == "timeout" and "wall-clock budget spent" in rec.reason


def test_missing_capability_is_na(tmp_path):
    _, records = run(tmp_path, suite([("p", "needs_physics", {})], systems=["damped_oscillator", "plain_oscillator"]))
    assert records[("p", 0, "damped_oscillator")].status == "ok"
    na = records[("p", 0, "plain_oscillator")]
    assert na.status == "n/a" and "requires KnownPhysics" in na.reason


def test_system_params_override_per_variant(tmp_path):
    s = Suite(
        name="t", seeds=[0], epochs=1, systems=[{"name": "damped_oscillator"}],
        methods=[{"label": "a", "method": "exact"},
                 {"label": "b", "method": "exact", "system_params": {"damped_oscillator": {"omega": 3.0}}}],
    )
    cells = expand_cells(s, registry())
    assert cells[0].system.params.omega == 2.0 and cells[1].system.params.omega == 3.0
    assert cells[0].key != cells[1].key


def test_bad_method_params_are_suite_errors():
    with pytest.raises(SuiteError, match=r"methods\[0\] \(a\)\.params: offset"):
        expand_cells(suite([("a", "exact", {"offset": "far"})]), registry())
    with pytest.raises(SuiteError, match="unknown method 'nope'"):
        expand_cells(suite([("a", "nope", {})]), registry())


def test_forecasts_are_stored_for_rescoring(tmp_path):
    report, records = run(tmp_path, suite([("a", "exact", {"offset": 0.25})], seeds=[0]))
    with Store(tmp_path / "res") as store:
        t, y = store.load_forecast(records[("a", 0, "damped_oscillator")])
    assert y.shape == (81, 2) and np.allclose(t, np.arange(81) * 0.05)


def test_solver_step_limit_is_timeout(tmp_path, monkeypatch):
    from stiffbench.solvers import StepLimitExceeded

    def fit(self, task, seeds, config):
        assert config.max_steps == 7
        raise StepLimitExceeded("more than 7 steps at t=1.5")

    monkeypatch.setattr(fake_plugins.Exact, "fit", fit)
    s = suite([("a", "exact", {})], seeds=[0]).model_copy(update={"max_solver_steps": 7})
    _, records = run(tmp_path, s)
    rec = records[("a", 0, "damped_oscillator")]
    assert rec.status == "timeout" and "more than 7 steps" in rec.reason


def test_raising_metric_loses_only_its_keys(tmp_path):
    reg = registry([PluginSpec("metrics", "raising_metric", "fake_plugins:RaisingMetric", "fakes", "1")])
    _, records = run(tmp_path, suite([("a", "exact", {"offset": 0.5})], seeds=[0]), reg=reg)
    rec = records[("a", 0, "damped_oscillator")]
    assert rec.status == "ok" and rec.metrics["extrapolation"]["never"] is None
    assert rec.metrics["extrapolation"]["rmse_x"] == pytest.approx(0.5)
    assert "metric raising_metric failed on extrapolation: ZeroDivisionError: metric bug" in rec.reason


def test_system_entries_set_their_own_epochs_and_budget(tmp_path):
    s = Suite(
        name="t", seeds=[0], epochs=2,
        systems=[{"name": "damped_oscillator", "label": "short"},
                 {"name": "damped_oscillator", "label": "long", "params": {"omega": 3.0}, "epochs": 7},
                 {"name": "damped_oscillator", "label": "tight", "params": {"omega": 4.0}, "epochs": 1000,
                  "budget_s": 0.2}],
        methods=[{"label": "s", "method": "slow"}, {"label": "a", "method": "shared_exact"}],
    )
    cells = expand_cells(s, registry())
    assert [(c.system_label, c.epochs, c.budget_s) for c in cells if c.label == "a"] == [
        ("short", 2, None), ("long", 7, None), ("tight", 1000, 0.2)]
    with Store(tmp_path / "res") as store:
        Runner(registry(), store).run(s, cells)
        records = store.get_many(c.key for c in cells)
    by_entry = {(c.system_label, c.label): records[c.key] for c in cells}
    assert by_entry[("long", "a")].provenance["epochs"] == 7 and by_entry[("short", "a")].provenance["epochs"] == 2
    assert by_entry[("tight", "s")].status == "timeout" and by_entry[("long", "s")].status == "ok"
    # entries under different labels never share a training batch: three single fits
    assert [call[:2] for call in fake_plugins.CALLS if call[0] == "exact"] == [("exact", "fit")] * 3
    # the epochs are part of the cell's identity: the same entry under the suite's epochs is another cell
    same = Suite(**{**s.model_dump(), "systems": [{"name": "damped_oscillator", "label": "long", "params": {"omega": 3.0}}]})
    assert expand_cells(same, registry())[0].key != next(c.key for c in cells if c.system_label == "long")


def test_a_variant_sets_its_own_epochs_and_budget_over_its_system_entry(tmp_path):
    """Precedence: the method entry's epochs and budget, else the system entry's, else the suite's;
    variants of one shared batch key with other epochs train apart."""
    from stiffbench.runner import plan_batches

    s = Suite(
        name="t", seeds=[0], epochs=2, budget_s=50,
        systems=[{"name": "damped_oscillator", "label": "short"},
                 {"name": "damped_oscillator", "label": "long", "params": {"omega": 3.0}, "epochs": 7}],
        methods=[{"label": "a", "method": "shared_exact"},
                 {"label": "b", "method": "shared_exact", "epochs": 4, "budget_s": 9.5}],
    )
    cells = expand_cells(s, registry())
    assert [(c.system_label, c.label, c.epochs, c.budget_s) for c in cells] == [
        ("short", "a", 2, 50), ("short", "b", 4, 9.5), ("long", "a", 7, 50), ("long", "b", 4, 9.5)]
    assert [[c.label for c in batch] for batch in plan_batches(cells)] == [["a"], ["b"], ["a"], ["b"]]
    with Store(tmp_path / "res") as store:
        Runner(registry(), store).run(s, cells)
        records = store.get_many(c.key for c in cells)
    assert [records[c.key].provenance["epochs"] for c in cells] == [2, 4, 7, 4]


def test_entries_of_one_system_with_other_protocols_train_apart():
    """fhn under two training windows: the neural ODE's batch needs shared observation times, so
    the two entries' cells must not share a batch."""
    from stiffbench.runner import plan_batches

    s = Suite(name="t", seeds=[0, 1], epochs=1,
              systems=[{"name": "fhn", "label": "fhn-3T", "params": {"t_train": 120.0, "extrapolation": (120.0, 360.0)}},
                       {"name": "fhn"}],
              methods=[{"label": "a", "method": "vanilla_node"}, {"label": "b", "method": "vanilla_node",
                                                                  "params": {"normalise": False}}])
    batches = plan_batches(expand_cells(s, Registry()))
    assert [sorted({c.system_label for c in b}) for b in batches] == [["fhn-3T"], ["fhn"]]
    assert [len(b) for b in batches] == [4, 4]  # both variants' seeds of each entry together


def test_a_variant_runs_only_on_the_systems_it_names(tmp_path):
    from stiffbench import leaderboard
    from stiffbench.runner import metric_instances

    s = Suite(name="t", seeds=[0], epochs=1,
              systems=[{"name": "damped_oscillator", "label": "one"},
                       {"name": "damped_oscillator", "label": "two", "params": {"omega": 3.0}}],
              methods=[{"label": "everywhere", "method": "exact"},
                       {"label": "only-two", "method": "exact", "params": {"offset": 1.0}, "systems": ["two"]}])
    cells = expand_cells(s, registry())
    assert [(c.system_label, c.label) for c in cells] == [("one", "everywhere"), ("two", "everywhere"), ("two", "only-two")]
    with Store(tmp_path / "res") as store:
        Runner(registry(), store).run(s, cells)
        board = leaderboard.build(s, cells, store, metric_instances(registry(), s))
    one, two = board.split("## two")[0], board.split("## two")[1]
    assert "| only-two" not in one and "| only-two" in two and "not in the store" not in board
    with pytest.raises(ValueError, match="method only-two: systems names systems not in the suite: three"):
        Suite(**{**s.model_dump(), "methods": [{"label": "only-two", "method": "exact", "systems": ["three"]}]})
