"""Core features for "any stiff system": system labels in suites, cell keys of added parameters,
per-instance capabilities, metric parameters from the suite (and rescoring when they change), the
leaderboard's units, former key names and published values, and the built-in neural ODE on
non-uniform observation times.

HH is shortened (windows up to 40 ms) and methods train 1-2 epochs with tiny networks.
"""

import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest

from stiffbench import leaderboard
from stiffbench.api import (
    AbstractMethod,
    AbstractModel,
    FitConfig,
    FullyObserved,
    PluginParams,
    TrainingTask,
    Trajectory,
    key_params,
    param,
)
from stiffbench.registry import PluginSpec, Registry, specs_from_metadata
from stiffbench.runner import Runner, expand_cells, metric_instances
from stiffbench.store import FINAL_STATUSES, CellRecord, Store
from stiffbench.suite import Suite, SuiteError, load_suite
from stiffbench.testing.toy import DampedOscillator

SHORT_HH = {"extrapolation": [14.68, 30.0], "long": [30.0, 40.0]}
SHORT_HH_TOML = "{ extrapolation = [14.68, 30.0], long = [30.0, 40.0] }"
TINY = {"hidden": [8]}

FITS = []  # (method name, system label or task id, seeds) appended by the fakes below


@pytest.fixture(autouse=True)
def clear_fits():
    FITS.clear()


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def hh_twice(extra=""):
    """hh under two labels (I_ext 10 and 15) x one vanilla_node variant, plus `extra` TOML."""
    return f"""
seeds = [0]
epochs = 1
[[systems]]
name = "hh"
label = "hh-I10"
params = {{ I_ext = 10, extrapolation = [14.68, 30.0], long = [30.0, 40.0] }}
[[systems]]
name = "hh"
label = "hh-I15"
params = {{ I_ext = 15, extrapolation = [14.68, 30.0], long = [30.0, 40.0] }}
[[methods]]
label = "node"
method = "vanilla_node"
params = {{ hidden = [8] }}
{extra}"""


# ----------------------------------------------------------------------------------------------
# 1. Suites: [[systems]] label, system_params by label or name, strict integers
# ----------------------------------------------------------------------------------------------

def test_one_system_under_two_labels_loads_and_expands(tmp_path):
    suite = load_suite(write(tmp_path, hh_twice()))
    assert [(s.name, s.label, s.params["I_ext"]) for s in suite.systems] == [("hh", "hh-I10", 10), ("hh", "hh-I15", 15)]
    cells = expand_cells(suite, Registry())
    assert [(c.system_label, c.system.params.I_ext) for c in cells] == [("hh-I10", 10.0), ("hh-I15", 15.0)]
    assert cells[0].key != cells[1].key


def test_label_defaults_to_the_name(tmp_path):
    suite = load_suite(write(tmp_path, hh_twice().replace('label = "hh-I10"\n', "")))
    assert [s.label for s in suite.systems] == ["hh", "hh-I15"]


def test_duplicate_system_labels_are_a_one_line_error(tmp_path):
    text = hh_twice().replace('label = "hh-I15"', 'label = "hh-I10"')
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    assert "duplicate system labels: hh-I10" in str(info.value) and "\n" not in str(info.value)
    # two entries of one system, neither labelled: both are labelled "hh"
    unlabelled = hh_twice().replace('label = "hh-I10"\n', "").replace('label = "hh-I15"\n', "")
    with pytest.raises(SuiteError, match="duplicate system labels: hh"):
        load_suite(write(tmp_path, unlabelled))


@pytest.mark.parametrize("second", ["I_ext = 10", "I_ext = 10.0", ""])
def test_same_system_with_the_same_params_is_an_error_from_expand_cells(tmp_path, second):
    """The second entry states I_ext = 10 (int, float) or leaves it at its default 10: the same cells."""
    text = hh_twice().replace("I_ext = 15, ", f"{second}, " if second else "").replace("I_ext = 10, ", "", 1)
    suite = load_suite(write(tmp_path, text))  # loads: the labels differ
    with pytest.raises(SuiteError) as info:
        expand_cells(suite, Registry())
    message = str(info.value)
    assert "'hh-I10' and 'hh-I15' are the same system with the same parameters" in message and "\n" not in message


def test_system_params_by_label_apply_to_that_entry_only(tmp_path):
    text = hh_twice().replace('params = { hidden = [8] }',
                              'params = { hidden = [8] }\nsystem_params = { hh-I15 = { noise_preset = "none" } }')
    cells = expand_cells(load_suite(write(tmp_path, text)), Registry())
    by_label = {c.system_label: c.system.params for c in cells}
    assert by_label["hh-I10"].noise_preset == "paper_literal"
    assert by_label["hh-I15"].noise_preset == "none" and by_label["hh-I15"].I_ext == 15.0  # merged, not replaced
    plain = expand_cells(load_suite(write(tmp_path, hh_twice(), "plain.toml")), Registry())
    assert cells[0].key == plain[0].key and cells[1].key != plain[1].key


def test_system_params_by_name_apply_to_every_entry_of_that_system(tmp_path):
    text = hh_twice().replace('params = { hidden = [8] }',
                              'params = { hidden = [8] }\nsystem_params = { hh = { noise_preset = "none" } }')
    cells = expand_cells(load_suite(write(tmp_path, text)), Registry())
    assert [(c.system_label, c.system.params.noise_preset, c.system.params.I_ext) for c in cells] == [
        ("hh-I10", "none", 10.0), ("hh-I15", "none", 15.0)]
    plain = expand_cells(load_suite(write(tmp_path, hh_twice(), "plain.toml")), Registry())
    assert {c.key for c in cells}.isdisjoint(c.key for c in plain)


@pytest.mark.parametrize(
    "old, new, fragment",
    [
        ('label = "hh-I15"', 'label = "hh-I15"\ncolour = "red"', "colour"),
        ('params = { hidden = [8] }', 'params = { hidden = [8] }\nsystem_params = { hh-I20 = { I_ext = 20 } }',
         "system_params names systems not in the suite: hh-I20"),
        ("seeds = [0]", 'seeds = ["0"]', "seeds.0"),
        ("epochs = 1", 'epochs = "5"', "epochs"),
        ("epochs = 1", "epochs = 5.0", "epochs"),
        ("epochs = 1", 'epochs = 1\nmax_solver_steps = "100"', "max_solver_steps"),
        ("epochs = 1", "epochs = 1\n[leaderboard]\nqualitative = true", "leaderboard.qualitative"),
    ],
)
def test_unknown_keys_and_non_integers_are_one_line_errors(tmp_path, old, new, fragment):
    text = hh_twice()
    assert old in text
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text.replace(old, new, 1)))
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# 3. Cell keys: `added` parameters stay out at their defaults; the paper suites keep their keys
# ----------------------------------------------------------------------------------------------

class AddedParams(PluginParams):
    old: float = 1.0
    new: float = param(0.5, added=True)
    newer: tuple[int, ...] = param((), added=True)


def test_added_parameter_is_in_the_key_only_away_from_its_default():
    assert key_params(AddedParams()) == {"old": 1.0}
    assert key_params(AddedParams(new=0.5)) == {"old": 1.0}  # stated, but at its default
    assert key_params(AddedParams(new=2.0)) == {"old": 1.0, "new": 2.0}
    assert key_params(AddedParams(newer=(3,), old=4.0)) == {"old": 4.0, "newer": [3]}
    # a field without the role is in the key even at its default
    assert AddedParams().model_dump(mode="json") == {"old": 1.0, "new": 0.5, "newer": []}


def test_hh_key_params_at_default_leave_out_only_added_parameters():
    """At their defaults HH's parameters added after the paper results (observe, ...) stay out of
    the key, which is then the first key rule's full dump of the original parameters."""
    from stiffbench.params import field_roles

    hh = Registry().load("systems", "hh")
    dump = hh().params.model_dump(mode="json")
    added = {name for name in dump if "added" in field_roles(hh.Params, name)}
    assert "observe" in added and "I_ext" not in added and "noise_preset" not in added
    assert key_params(hh().params) == {k: v for k, v in dump.items() if k not in added}
    assert key_params(hh({"observe": ["V"]}).params)["observe"] == ["V"]


@pytest.mark.parametrize("method", ["vanilla_node", "pinode_sr"])
def test_neural_ode_key_params_at_default_leave_out_the_added_three(method):
    """...and the performance setting `compile`, which is never part of a key (first rule: it was)."""
    cls = Registry().load("methods", method)
    dump = cls().params.model_dump(mode="json")
    added = {"step", "state_scale", "autonomous"}
    assert added <= set(dump)
    assert key_params(cls().params) == {k: v for k, v in dump.items() if k not in added | {"compile"}}
    assert key_params(cls().params, performance=True) == {k: v for k, v in dump.items() if k not in added}
    assert key_params(cls({"compile": True}).params) == key_params(cls().params)
    explicit = cls({"step": None, "state_scale": "none", "autonomous": False}).params
    assert key_params(explicit) == key_params(cls().params)
    assert key_params(cls({"step": 0.05}).params)["step"] == 0.05
    assert key_params(cls({"autonomous": True}).params)["autonomous"] is True


def test_cell_keys_ignore_added_params_at_their_defaults(tmp_path):
    def key(params):
        suite = Suite(name="k", seeds=[0], epochs=1, systems=[{"name": "hh"}],
                      methods=[{"label": "n", "method": "vanilla_node", "params": params}])
        return expand_cells(suite, Registry())[0].key

    base = key({})
    assert key({"step": None, "state_scale": "none", "autonomous": False}) == base
    assert len({base, key({"step": 0.05}), key({"state_scale": "observed_max"}), key({"autonomous": True})}) == 4


@pytest.mark.parametrize("name, folder, n_cells", [("paper", "paper-results", 115),
                                                   ("paper-ablations", "paper-ablations-results", 45)])
def test_paper_suites_keep_their_keys(tmp_path, name, folder, n_cells):
    """Every cell of the committed paper suites is found, final, in its committed store (a copy)."""
    from pathlib import Path

    committed = Path(__file__).resolve().parent.parent / "leaderboard" / folder / "store.sqlite"
    copy = tmp_path / "store.sqlite"
    shutil.copyfile(committed, copy)
    cells = expand_cells(load_suite(name), Registry())
    assert len(cells) == n_cells
    with Store(copy) as store:
        records = store.get_many(c.key for c in cells)
        missing = [(c.system_label, c.label, c.seed) for c in cells if c.key not in records]
        assert not missing
        assert all(r.status in FINAL_STATUSES for r in records.values())
        assert store.final_keys(c.key for c in cells) == {c.key for c in cells}


# ----------------------------------------------------------------------------------------------
# 4. Per-instance capabilities: hh observed through V only
# ----------------------------------------------------------------------------------------------

def test_hh_observing_v_only_is_not_fully_observed():
    hh = Registry().load("systems", "hh")
    partial = hh({**SHORT_HH, "observe": ["V"]})
    assert not partial.has_capability(FullyObserved) and hh(SHORT_HH).has_capability(FullyObserved)
    assert partial.observed_states() == ("V",)
    task = partial.training_task()
    assert task.observations.state_names == ("V",) and task.observations.y.shape == (1469, 1)
    assert task.y0.shape == (4,) and task.state_names == ("V", "n", "m", "h") and not task.fully_observed
    full = hh(SHORT_HH).training_task()
    np.testing.assert_array_equal(task.observations.t, full.observations.t)
    np.testing.assert_array_equal(task.y0, full.y0)
    # without noise the observed column is the full task's V column (the same reference)
    clean_v = hh({**SHORT_HH, "observe": ["V"], "noise_preset": "none"}).training_task().observations.y
    clean = hh({**SHORT_HH, "noise_preset": "none"}).training_task().observations.y
    np.testing.assert_array_equal(clean_v[:, 0], clean[:, 0])


@pytest.mark.slow
def test_builtin_methods_are_na_on_partially_observed_hh(tmp_path):
    suite = Suite(
        name="obs", seeds=[0], epochs=1,
        systems=[{"name": "hh", "label": "hh-full", "params": SHORT_HH},
                 {"name": "hh", "label": "hh-V", "params": {**SHORT_HH, "observe": ["V"]}}],
        methods=[{"label": m, "method": m, "params": TINY} for m in ("vanilla_node", "pinode_sr", "vanilla_pinn")],
    )
    with Store(tmp_path / "res") as store:
        report = Runner(Registry(), store).run(suite)
        records = store.get_many(c.key for c in report.cells)
    status = {(c.system_label, c.label): records[c.key] for c in report.cells}
    assert len(status) == 6
    for method in ("vanilla_node", "pinode_sr", "vanilla_pinn"):
        na = status[("hh-V", method)]
        assert na.status == "n/a" and "FullyObserved" in na.reason and "V" in na.reason and "hh-V" in na.reason
        assert na.reason.startswith(f"method {method} requires")
        ran = status[("hh-full", method)]
        # trained and scored (1 epoch: the untrained gates may leave their bounds, a warning only)
        assert ran.status == "ok" and ran.train_s is not None and "extrapolation" in ran.metrics, ran.reason
        assert "FullyObserved" not in (ran.reason or "")


# ----------------------------------------------------------------------------------------------
# Batches across system entries: each cell trains on its own system's task
# ----------------------------------------------------------------------------------------------

class _Constant(AbstractModel):
    def __init__(self, values):
        self.values = [np.asarray(v, dtype=float) for v in values]

    def forecast(self, t):
        return np.stack([np.broadcast_to(v, (len(t), len(v))) for v in self.values]).copy()


class LastObservation(AbstractMethod):
    """Forecasts its task's last observation forever; variants share batches (like the neural ODEs)."""

    name = "last_observation"
    description = "Constant forecast: the last training observation."
    batches_seeds = True

    def batch_key(self):
        return "all"

    def fit(self, task, seeds, config):
        FITS.append(("fit", float(task.observations.y[-1, 0]), tuple(seeds)))
        return _Constant([task.observations.y[-1]] * len(seeds))

    @classmethod
    def fit_batch(cls, members, config):
        FITS.append(("fit_batch", tuple(float(m.task.observations.y[-1, 0]) for m in members)))
        return _Constant([m.task.observations.y[-1] for m in members])


def toy_registry(*methods):
    return Registry([
        PluginSpec("systems", "damped_oscillator", "stiffbench.testing.toy:DampedOscillator", "stiffbench", "0"),
        PluginSpec("metrics", "rmse", "stiffbench.metrics.rmse:RMSE", "stiffbench", "0"),
        *[PluginSpec("methods", m.name, f"{__name__}:{m.__name__}", "tests", "1") for m in methods],
    ])


def test_each_system_entry_trains_on_its_own_task(tmp_path):
    suite = Suite(name="two", seeds=[0], epochs=1,
                  systems=[{"name": "damped_oscillator", "label": "slow", "params": {"omega": 2.0}},
                           {"name": "damped_oscillator", "label": "fast", "params": {"omega": 3.0}}],
                  methods=[{"label": "last", "method": "last_observation"}])
    with Store(tmp_path / "res") as store:
        report = Runner(toy_registry(LastObservation), store).run(suite)
        records = store.get_many(c.key for c in report.cells)
        for cell in report.cells:
            own = cell.system.cls(cell.system.params).training_task().observations.y[-1]
            _, forecast = store.load_forecast(records[cell.key])
            assert records[cell.key].status == "ok"
            np.testing.assert_array_equal(forecast[-1], own, err_msg=cell.system_label)


# ----------------------------------------------------------------------------------------------
# 5. Metric parameters from the suite
# ----------------------------------------------------------------------------------------------

SHIFT = 1.0  # ms


class ShiftedReference(AbstractMethod):
    """Forecasts the short HH reference delayed by SHIFT ms: pred(t) = ref(t - SHIFT) (y0 before)."""

    name = "shifted_reference"
    description = "The HH reference delayed in time."

    def fit(self, task, seeds, config):
        FITS.append(("shifted_reference", tuple(seeds)))
        hh = Registry().load("systems", "hh")(SHORT_HH)
        ref = hh.reference(float(task.forecast_t[-1]))
        np.testing.assert_array_equal(ref.t, task.forecast_t)
        lag = int(round(SHIFT / hh.params.dt))
        shifted = np.concatenate([np.repeat(ref.y[:1], lag, axis=0), ref.y[:-lag]])
        return _Shifted(shifted, len(seeds))


class _Shifted(AbstractModel):
    def __init__(self, y, n):
        self.y, self.n = y, n

    def forecast(self, t):
        assert len(t) == len(self.y)
        return np.stack([self.y] * self.n)


def hh_registry():
    return Registry([*specs_from_metadata(),
                     PluginSpec("methods", "shifted_reference", f"{__name__}:ShiftedReference", "tests", "1")])


def shifted_suite(metrics=None):
    return Suite(name="shift", seeds=[0], epochs=1, systems=[{"name": "hh", "params": SHORT_HH}],
                 methods=[{"label": "late", "method": "shifted_reference"}], metrics=metrics or {})


def run_shifted(store, metrics=None, log=None):
    report = Runner(hh_registry(), store, log=log).run(shifted_suite(metrics))
    (cell,) = report.cells
    return report, store.get(cell.key)


def test_suite_metric_params_reach_the_metric_and_rescore_cached_cells(tmp_path):
    with Store(tmp_path / "res") as store:
        _, default = run_shifted(store)
        assert default.status == "ok" and FITS == [("shifted_reference", (0,))]
        ext = default.metrics["extrapolation"]
        # every forecast spike is the true one 1 ms later: matched within the default 2 ms tolerance
        assert ext["spike_f1"] == pytest.approx(1.0) and ext["phase_drift"] == pytest.approx(SHIFT, abs=1e-6)
        assert default.provenance["metric_params"] == {}

        lines = []
        tight = {"spike_f1": {"params": {"tolerance": 0.5}}}
        report, rescored = run_shifted(store, tight, log=lines.append)
        assert report.to_run == 0 and FITS == [("shifted_reference", (0,))]  # no retraining
        assert any("rescored 1 cell(s) for the suite's metric parameters" in line for line in lines)
        # within 0.5 ms no spike matches: F1 = 2 * 0 / (N_pred + N_true) = 0; other metrics keep their defaults
        assert rescored.metrics["extrapolation"]["spike_f1"] == 0.0
        assert rescored.metrics["extrapolation"]["phase_drift"] == pytest.approx(SHIFT, abs=1e-6)
        assert rescored.provenance["metric_params"] == {"spike_f1": {"tolerance": 0.5}}

        lines.clear()
        run_shifted(store, tight, log=lines.append)  # scored with these parameters already
        assert not any("rescored" in line for line in lines) and len(FITS) == 1

    with Store(tmp_path / "fresh") as fresh:  # the same parameters in a first run give the same scores
        _, direct = run_shifted(fresh, tight)
    assert direct.metrics == rescored.metrics and len(FITS) == 2
    assert direct.provenance["metric_params"] == {"spike_f1": {"tolerance": 0.5}}


@pytest.mark.parametrize(
    "metrics, fragment",
    [
        ({"nope": {"params": {}}}, "metrics: unknown metric nope"),
        ({"spike_f1": {"params": {"tolerance": -1.0}}}, "metrics.spike_f1.params: tolerance"),
        ({"spike_f1": {"params": {"tol": 0.5}}}, "metrics.spike_f1.params: tol"),
        ({"rmse": {"params": {"tolerance": 0.5}}}, "metrics.rmse.params: tolerance"),
    ],
)
def test_bad_metric_settings_are_one_line_suite_errors(metrics, fragment):
    with pytest.raises(SuiteError) as info:
        expand_cells(shifted_suite(metrics), hh_registry())
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_metric_settings_from_toml(tmp_path):
    suite = load_suite(write(tmp_path, hh_twice("[metrics.spike_f1]\nparams = { tolerance = 0.5 }\n")))
    assert suite.metrics["spike_f1"].params == {"tolerance": 0.5}
    f1 = next(m for m in metric_instances(Registry(), suite) if m.name == "spike_f1")
    hh = Registry().load("systems", "hh")()
    assert f1.settings(hh).tolerance == 0.5 and f1.settings(hh).merge == hh.spike_merge
    with pytest.raises(SuiteError, match="metrics.spike_f1: Extra inputs|metrics.spike_f1.prams"):
        load_suite(write(tmp_path, hh_twice("[metrics.spike_f1]\nprams = { tolerance = 0.5 }\n"), "bad.toml"))


def test_deprecated_spike_parameter_names_still_work():
    from stiffbench.metrics.phase_drift import PhaseDrift
    from stiffbench.metrics.spike_f1 import SpikeF1

    with pytest.warns(DeprecationWarning, match="tolerance_ms"):
        f1 = SpikeF1({"tolerance_ms": 0.5})
    assert f1.params.tolerance == 0.5
    with pytest.warns(DeprecationWarning, match="merge_ms, threshold_mV"):
        drift = PhaseDrift({"threshold_mV": -10.0, "merge_ms": 1.0})
    hh = Registry().load("systems", "hh")()
    settings = drift.settings(hh)
    assert (settings.state, settings.threshold, settings.merge, settings.tolerance) == ("V", -10.0, 1.0, 2.0)
    suite = shifted_suite({"spike_f1": {"params": {"tolerance_ms": 0.5}}})
    with pytest.warns(DeprecationWarning, match="tolerance_ms"):
        metrics = metric_instances(Registry(), suite)
    assert next(m for m in metrics if m.name == "spike_f1").settings(hh).tolerance == 0.5


# ----------------------------------------------------------------------------------------------
# 6. Leaderboard: former key names, units, qualitative summary, published values
# ----------------------------------------------------------------------------------------------

def lb_suite(a_paper=""):
    """hh (short) x two vanilla_node variants a and b; `a_paper` is extra TOML for method a."""
    return f"""
seeds = [0]
epochs = 1
[[systems]]
name = "hh"
params = {SHORT_HH_TOML}
[[methods]]
label = "a"
method = "vanilla_node"
{a_paper}
[[methods]]
label = "b"
method = "vanilla_node"
params = {{ lr = 0.01 }}
"""


OLD_METRICS = {"rmse_V": 2.0, "rmse_n": 0.1, "rmse_m": 0.2, "rmse_h": 0.3, "phase_drift_ms": 0.5,
               "isi_error_ms": 0.25, "amp_dev_mV": 1.5, "amp_pres_pct": 4.0, "spike_f1": 0.75, "bound_violation": 0.0}


def render_board(tmp_path, text, values=OLD_METRICS):
    """Load the suite, store one ok record per cell with `values` on both windows, build the board."""
    suite = load_suite(write(tmp_path, text))
    registry = Registry()
    cells = expand_cells(suite, registry)
    with Store(tmp_path / f"res-{len(list(tmp_path.iterdir()))}") as store:
        for cell in cells:
            store.put(CellRecord(key=cell.key, system="hh", method="vanilla_node", label=cell.label, seed=cell.seed,
                                 status="ok", metrics={"extrapolation": dict(values), "long": dict(values)},
                                 train_s=2.0, provenance={"stiffbench": "0.0"}))
        return leaderboard.build(suite, cells, store, metric_instances(registry, suite))


def table_after(board, heading):
    """The rows of the markdown table after `heading`, each as a list of stripped cells."""
    lines = board.splitlines()
    start = lines.index(heading) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.split("|")[1:-1]])
    return rows


EXT = "## hh — extrapolation window [14.68, 30] ms"


def test_former_key_names_render_under_the_current_names_with_units(tmp_path):
    board = render_board(tmp_path, lb_suite())
    header, _, row_a, row_b = table_after(board, EXT)
    assert header == ["method", "rmse_V (mV)", "rmse_n", "rmse_m", "rmse_h", "phase_drift (ms)", "isi_error (ms)",
                      "amp_dev (mV)", "amp_pres_pct", "spike_f1", "bound_violation", "ok/total", "train s"]
    assert row_a == ["a", "2", "0.1", "0.2", "0.3", "0.5", "0.25", "1.5", "4", "0.75", "0", "1/1", "2"]
    assert row_b[0] == "b" and row_b[5:7] == ["0.5", "0.25"]
    assert "_ms" not in board and "amp_dev_mV" not in board
    assert "qualitative summary" not in board  # off unless the suite asks for it


def test_qualitative_summary_only_when_the_suite_asks(tmp_path):
    text = lb_suite() + "[leaderboard]\nqualitative_summary = true\n"
    board = render_board(tmp_path, text)
    heading = "## hh — qualitative summary (the paper's Table 1, from measurements)"
    header, _, row_a, row_b = table_after(board, heading)
    assert header == ["method", "spike F1", "limit cycle kept", "states in bounds", "stable"]
    # isi_error 0.25 <= 0.5 x 2 ms and amp_pres 4 % <= 10 %: the cycle is kept; bound_violation 0 <= 0.01
    assert row_a == ["a", "0.75", "1/1", "1/1", "1/1"] and row_b == ["b", "0.75", "1/1", "1/1", "1/1"]
    assert "|mean ISI error| <= 1 ms" in board


PAPER_VALUES = """
[paper]
source = "Table 2"
[paper.values.hh.extrapolation]
a = { rmse_V = 3.12, spike_f1 = 0.98 }
"""

PAPER_LEGACY = """
[paper]
source = "Table 2"
keys = { rmse_V = ["extrapolation"], spike_f1 = ["extrapolation"] }
"""


def test_published_values_show_in_paper_columns(tmp_path):
    board = render_board(tmp_path, lb_suite() + PAPER_VALUES)
    header, _, row_a, row_b = table_after(board, EXT)
    assert header[:3] == ["method", "rmse_V (mV)", "rmse_V (paper)"]
    assert header[9:12] == ["amp_pres_pct", "spike_f1", "spike_f1 (paper)"]
    assert row_a[:3] == ["a", "2", "3.12"] and row_a[10:12] == ["0.75", "0.98"]
    assert row_b[:3] == ["b", "2", "–"] and row_b[10:12] == ["0.75", "–"]  # no published value: the dash
    long_header = table_after(board, "## hh — long window [30, 40] ms")[0]
    assert not any("(paper)" in h for h in long_header)
    assert "Columns marked (paper): Table 2" in board


def test_deprecated_paper_keys_form_renders_the_same_columns_with_a_warning(tmp_path):
    new = render_board(tmp_path, lb_suite() + PAPER_VALUES)
    legacy_text = lb_suite("paper = { rmse_V = 3.12, spike_f1 = 0.98 }") + PAPER_LEGACY
    with pytest.warns(DeprecationWarning, match="deprecated"):
        load_suite(write(tmp_path, legacy_text, "legacy.toml"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = render_board(tmp_path, legacy_text)
    for heading in (EXT, "## hh — long window [30, 40] ms"):
        assert table_after(legacy, heading) == table_after(new, heading)


class RequiredParams(DampedOscillator.Params):
    gain: float = 1.0
    tag: str  # required: a system plugin's parameters need not all have defaults


class RequiredParamOscillator(DampedOscillator):
    name = "required_param_oscillator"
    Params = RequiredParams


def test_leaderboard_of_a_system_with_a_required_parameter(tmp_path):
    registry = Registry([
        PluginSpec("systems", "required_param_oscillator", f"{__name__}:RequiredParamOscillator", "tests", "1"),
        PluginSpec("metrics", "rmse", "stiffbench.metrics.rmse:RMSE", "stiffbench", "0"),
        PluginSpec("methods", "last_observation", f"{__name__}:LastObservation", "tests", "1"),
    ])
    suite = Suite(name="req", seeds=[0], epochs=1,
                  systems=[{"name": "required_param_oscillator", "label": "osc", "params": {"tag": "x", "gain": 2.0}}],
                  methods=[{"label": "last", "method": "last_observation"}])
    cells = expand_cells(suite, registry)  # the parameters validate: the suite is fine
    with Store(tmp_path / "res") as store:
        board = leaderboard.build(suite, cells, store, metric_instances(registry, suite))
    assert "## osc — extrapolation window [2, 4]" in board
    assert "`osc`: system `required_param_oscillator` with " in board and "gain = 2.0" in board


def test_paper_values_must_name_suite_labels_and_system_windows(tmp_path):
    with pytest.raises(SuiteError, match="not a system label"):
        load_suite(write(tmp_path, lb_suite() + PAPER_VALUES.replace("values.hh.", "values.vdp.")))
    with pytest.raises(SuiteError, match="c not method labels"):
        load_suite(write(tmp_path, lb_suite() + PAPER_VALUES.replace("a = {", "c = {"), "c.toml"))
    suite = load_suite(write(tmp_path, lb_suite() + PAPER_VALUES.replace("extrapolation]", "far]"),
                             "w.toml"))
    with pytest.raises(SuiteError, match="paper.values.hh: no window far"):
        expand_cells(suite, Registry())


# ----------------------------------------------------------------------------------------------
# 7. The built-in neural ODE on non-uniform observation times
# ----------------------------------------------------------------------------------------------

NODE64 = {"hidden": (8,), "dtype": "float64"}
T_OBS = np.geomspace(0.01, 2.0, 15)
FORECAST_T = np.concatenate([[0.0], np.geomspace(0.01, 4.0, 40)])


@pytest.fixture(scope="module")
def log_task():
    """The toy oscillator's exact solution at 15 log-spaced times from 0.01 to 2; y0 at t0 = 0."""
    osc = DampedOscillator()
    obs = Trajectory(T_OBS, osc.exact(T_OBS), ("x", "v"))
    return TrainingTask("damped_oscillator", obs, osc.exact(np.zeros(1))[0], FORECAST_T, dt=None, t0=0.0)


def node(params, task, seeds=(0,), epochs=2):
    from stiffbench_methods.vanilla_node import VanillaNODE

    return VanillaNODE(params).fit(task, list(seeds), FitConfig(epochs=epochs))


@pytest.mark.parametrize("params, rtol", [(NODE64, 1e-12), ({"hidden": (8,)}, 1e-5)], ids=["float64", "float32"])
def test_first_loss_is_the_untrained_forecast_at_the_log_spaced_observations(log_task, params, rtol):
    first = node(params, log_task, seeds=(0, 1), epochs=1).loss_history[0]
    untrained = node(params, log_task, seeds=(0, 1), epochs=0)
    assert untrained.loss_history.shape == (0, 2)
    fc = untrained.forecast(np.concatenate([[0.0], T_OBS]))[:, 1:]  # the forecast starts at t0 = 0
    expected = ((fc - log_task.observations.y) ** 2).sum(-1).mean(-1)  # data_loss "sum_states"
    assert np.all(np.isfinite(first)) and first[0] != first[1]
    np.testing.assert_allclose(expected, first, rtol=rtol)


def test_forecast_must_start_at_t0(log_task):
    model = node(NODE64, log_task, epochs=0)
    with pytest.raises(ValueError, match="initial time 0"):
        model.forecast(T_OBS)


@pytest.mark.slow
def test_heun_substeps(log_task):
    plain = node(NODE64, log_task).forecast(FORECAST_T)
    substeps = node({**NODE64, "step": 0.05}, log_task).forecast(FORECAST_T)
    assert plain.shape == substeps.shape == (1, len(FORECAST_T), 2)
    assert np.isfinite(substeps).all() and np.isfinite(plain).all()
    np.testing.assert_array_equal(substeps[:, 0], plain[:, 0])  # both start from y0
    assert np.abs(substeps - plain).max() > 1e-6
    # a step wider than every interval is one step per interval: the plain rollout
    wide = node({**NODE64, "step": 10.0}, log_task).forecast(FORECAST_T)
    np.testing.assert_allclose(wide, plain, rtol=0, atol=1e-12)


def test_observed_max_state_scale_with_tsit5(log_task):
    model = node({**NODE64, "solver": "tsit5", "state_scale": "observed_max"}, log_task)
    assert model.loss_history.shape == (2, 1) and np.isfinite(model.loss_history).all()
    fc = model.forecast(FORECAST_T)
    assert fc.shape == (1, len(FORECAST_T), 2) and np.isfinite(fc).all()
    np.testing.assert_allclose(fc[0, 0], log_task.y0, rtol=1e-12)
    # the scaling changes the coordinates the solver integrates in, not the model: untrained, it
    # forecasts what the unscaled model does (up to the adaptive solver's tolerance)
    scaled = node({**NODE64, "solver": "tsit5", "state_scale": "observed_max"}, log_task, epochs=0)
    unscaled = node({**NODE64, "solver": "tsit5"}, log_task, epochs=0)
    np.testing.assert_allclose(scaled.forecast(FORECAST_T), unscaled.forecast(FORECAST_T), atol=1e-3)


def shifted(task, by):
    obs = replace(task.observations, t=task.observations.t + by)
    return replace(task, observations=obs, forecast_t=task.forecast_t + by, t0=task.t0 + by)


@pytest.mark.parametrize("normalise", [True, False])
def test_autonomous_model_does_not_depend_on_the_time_origin(log_task, normalise):
    params = {**NODE64, "autonomous": True, "normalise": normalise}
    here = node(params, log_task).forecast(FORECAST_T)
    later = node(params, shifted(log_task, 5.0)).forecast(FORECAST_T + 5.0)
    assert np.isfinite(here).all()
    np.testing.assert_allclose(later, here, rtol=0, atol=1e-6)


def test_non_autonomous_model_sees_the_time_origin(log_task):
    """With raw inputs the time enters f_theta(z, t) as it is: shifting it by 5 changes the model.
    (With normalise=True the time input is z-scored by the training times, which a shift leaves alone.)"""
    params = {**NODE64, "autonomous": False, "normalise": False}
    here = node(params, log_task).forecast(FORECAST_T)
    later = node(params, shifted(log_task, 5.0)).forecast(FORECAST_T + 5.0)
    assert np.abs(later - here).max() > 1e-3


def test_autonomous_network_has_no_time_input(log_task):
    from stiffbench.api import BatchMember
    from stiffbench_methods.vanilla_node import VanillaNODE

    def n_inputs(autonomous):
        p = VanillaNODE.Params(**NODE64, autonomous=autonomous)
        field, _, _ = VanillaNODE.objective([BatchMember(p, log_task, 0)], "cpu", False)
        return sum(x.numel() for x in field.parameters())

    # first layer (n_in x 8 weights): one input fewer without t
    assert n_inputs(False) - n_inputs(True) == 8
