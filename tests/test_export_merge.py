"""`stiffbench export` (a store's cells as one CSV/Parquet table) and `stiffbench merge` (two
stores into a new one): hand-built stores and real runs with the injected fake plugins."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fake_plugins
from stiffbench import cli, export, leaderboard, merge
from stiffbench.registry import PluginSpec
from stiffbench.runner import Runner, expand_cells, metric_instances
from stiffbench.store import CellRecord, RunRecord, Store
from stiffbench.suite import load_suite

try:
    import pyarrow  # noqa: F401

    HAVE_PYARROW = True
except ImportError:
    HAVE_PYARROW = False

from test_runner import registry as runner_registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def registry(extra=()):
    """The fake plugins of test_runner, plus the phase_drift metric (it has former key names)."""
    phase_drift = PluginSpec("metrics", "phase_drift", "stiffbench.metrics.phase_drift:PhaseDrift", "stiffbench", "0")
    return runner_registry([phase_drift, *extra])


def write_suite(path: Path, methods, seeds=(0, 1), epochs=2) -> Path:
    """A suite TOML on the toy oscillator; methods: (label, method, offset)."""
    lines = [f"seeds = {list(seeds)}", f"epochs = {epochs}", "", "[[systems]]", 'name = "damped_oscillator"', ""]
    for label, method, offset in methods:
        lines += ["[[methods]]", f'label = "{label}"', f'method = "{method}"', f"params = {{ offset = {offset} }}", ""]
    path.write_text("\n".join(lines))
    return path


def run_suite(store_path: Path, suite_path: Path, device: str = "cpu") -> None:
    with Store(store_path) as store:
        Runner(registry(), store, device=device, checkpoint_every_s=None).run(load_suite(str(suite_path)))


def record(key, status="ok", seed=0, label="a", metrics=None, **provenance) -> CellRecord:
    prov = {
        "label": label, "system_label": "osc", "seed": seed, "epochs": 2, "budget_s": None, "device": "cpu",
        "torch": "2.13.0", "torch_threads": 1, "stiffbench": "0.1.0",
        "system_plugin": {"name": "damped_oscillator", "distribution": "stiffbench", "version": "0"},
        "method_plugin": {"name": "exact", "distribution": "fakes", "version": "1"},
        "system_params": {"omega": 2.0}, "method_params": {"offset": 0.5}, "metric_params": {},
        **provenance,
    }
    if metrics is None:
        metrics = {"fit": {"rmse_x": 0.25, "rmse_v": None}, "extrapolation": {"rmse_x": 0.5, "rmse_v": 0.75}} \
            if status == "ok" else {}
    return CellRecord(key=key, system="damped_oscillator", method="exact", label=label, seed=seed, status=status,
                      reason=None if status == "ok" else f"{status} reason", metrics=metrics,
                      train_s=1.5, forecast_s=0.01, provenance=prov, created="2026-11-27T10:00:00+00:00")


def forecast(offset=0.0):
    t = np.linspace(0.0, 1.0, 11)
    return t, np.stack([np.sin(t) + offset, np.cos(t)], axis=1)


def make_store(path: Path, records, with_forecasts=True) -> Path:
    with Store(path) as store:
        for i, rec in enumerate(records):
            store.put(rec, forecast(i) if with_forecasts and rec.status in ("ok", "diverged") else None)
    return path


def run_cli(module, argv, capsys, reg=None):
    """What `stiffbench <command>` does once the command is wired into cli.py (argparse errors
    are UserErrors, the module's own errors are converted to them): one line, exit code 2.
    Returns (exit code, stdout, stderr)."""
    parser = cli._Parser(prog=f"stiffbench {module.__name__.rsplit('.', 1)[-1]}")
    module.add_arguments(parser)
    try:
        code = module.main(parser.parse_args([str(a) for a in argv]), registry=reg or registry())
    except (cli.UserError, export.ExportError, merge.MergeError) as exc:
        print(f"stiffbench: error: {exc}", file=sys.stderr)
        code = cli.EXIT_USAGE
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stiffbench: error: "), err
    return lines[0]


def cells_of(path) -> dict[str, CellRecord]:
    with Store(path) as store:
        return {r.key: r for r in store.records()}


@pytest.fixture(autouse=True)
def clear_calls():
    fake_plugins.CALLS.clear()


# ---------------------------------------------------------------------------------------------- export
def check_table(df: pd.DataFrame, records: dict[str, CellRecord]) -> None:
    """One row per cell; status, every metric and timings equal to the store's."""
    assert sorted(df["key"]) == sorted(records) and len(df) == len(records)
    assert list(df.columns[:11]) == export.BASE_COLUMNS
    for row in df.to_dict("records"):
        rec = records[row["key"]]
        assert row["status"] == rec.status and row["seed"] == rec.seed and row["method"] == rec.method
        assert row["train_s"] == pytest.approx(rec.train_s)
        for window, values in rec.metrics.items():
            for key, value in values.items():
                got = row[f"{window}/{key}"]
                assert (np.isnan(got) if value is None else got == pytest.approx(value, rel=1e-15)), (window, key)


@pytest.mark.parametrize("fmt", ["csv", pytest.param("parquet", marks=pytest.mark.skipif(
    not HAVE_PYARROW, reason="pyarrow not installed"))])
def test_export_all_round_trips(tmp_path, capsys, fmt):
    recs = [record("k1"), record("k2", seed=1, label="b"), record("k3", status="diverged"),
            record("k4", status="error", seed=2)]
    store = make_store(tmp_path / "s", recs)
    out = tmp_path / f"cells.{fmt}"
    code, stdout, _ = run_cli(export, ["--all", "--store", store, "--format", fmt, "--out", out], capsys)
    assert code == 0 and f"exported 4 cell(s)" in stdout
    df = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    check_table(df, {r.key: r for r in recs})
    row = df.set_index("key").loc["k1"]
    assert row["system_label"] == "osc" and row["label"] == "a" and row["created"] == "2026-11-27T10:00:00+00:00"
    assert row["prov/device"] == "cpu" and str(row["prov/torch"]) == "2.13.0" and row["prov/epochs"] == 2
    assert str(row["prov/method_plugin/version"]) == "1" and row["prov/system_plugin/name"] == "damped_oscillator"
    assert json.loads(row["prov/system_params"]) == {"omega": 2.0}
    assert json.loads(row["prov/method_params"]) == {"offset": 0.5}
    assert json.loads(row["prov/metric_params"]) == {}
    error = df.set_index("key").loc["k4"]
    assert error["reason"] == "error reason" and np.isnan(error["extrapolation/rmse_x"])
    # rows sorted by system label, label, seed
    assert list(df["label"]) == ["a", "a", "a", "b"]


def test_export_documented_snippet(tmp_path, capsys):
    recs = [record(f"k{s}", seed=s, metrics={"extrapolation": {"rmse_V": float(s)}}) for s in range(3)]
    store = make_store(tmp_path / "s", recs)
    code, _, _ = run_cli(export, ["--all", "--store", store, "--format", "csv", "--out", tmp_path / "cells.csv"],
                         capsys)
    assert code == 0
    df = pd.read_csv(tmp_path / "cells.csv")
    table = df[df.status == "ok"].groupby(["system_label", "label"])["extrapolation/rmse_V"].agg(["mean", "std"])
    assert table.loc[("osc", "a")].tolist() == pytest.approx([1.0, 1.0])  # mean and std of 0, 1, 2


def test_export_former_keys_under_current_names(tmp_path, capsys):
    recs = [record("old", metrics={"extrapolation": {"phase_drift_ms": 1.5, "rmse_x": 0.1}}),
            record("new", seed=1, metrics={"extrapolation": {"phase_drift": 2.5, "rmse_x": 0.2}})]
    store = make_store(tmp_path / "s", recs)
    code, _, _ = run_cli(export, ["--all", "--store", store, "--format", "csv", "--out", tmp_path / "c.csv"], capsys)
    assert code == 0
    df = pd.read_csv(tmp_path / "c.csv").set_index("key")
    assert "extrapolation/phase_drift_ms" not in df.columns
    assert df.loc["old", "extrapolation/phase_drift"] == 1.5 and df.loc["new", "extrapolation/phase_drift"] == 2.5


def test_export_suite_cells_with_suite_labels(tmp_path, capsys):
    """A real run; the export takes the suite's labels (labels are not part of cell keys) and
    leaves out, and counts, the suite's cells the store lacks."""
    store = tmp_path / "res"
    run_suite(store, write_suite(tmp_path / "ran.toml", [("a", "exact", 0.5)]))
    suite = write_suite(tmp_path / "named.toml", [("renamed-a", "exact", 0.5), ("b", "exact", 1.0)])
    out = tmp_path / "cells.csv"
    code, stdout, err = run_cli(export, ["--suite", suite, "--store", store, "--format", "csv", "--out", out,
                                         "--device", "cpu"], capsys)
    assert code == 0, err
    assert "2 cell(s) of suite named are not in the store yet" in err
    df = pd.read_csv(out)
    assert list(df["label"]) == ["renamed-a", "renamed-a"] and list(df["seed"]) == [0, 1]
    assert set(df["system_label"]) == {"damped_oscillator"} and set(df["status"]) == {"ok"}
    assert set(df["prov/label"]) == {"a"}  # the stored provenance is exported as it is
    check_table(df, cells_of(store))
    assert df["extrapolation/rmse_x"].to_numpy() == pytest.approx([0.5, 0.5])
    assert (df["prov/method_plugin/name"] == "exact").all() and (df["prov/batch_size"] == 2).all()


def test_export_suite_cells_of_the_device_asked_for(tmp_path, capsys):
    """The device is part of a cell's key: --device cuda exports the cells computed on cuda (the
    fake method ignores the device, so this runs without a GPU), --device cpu the cpu ones."""
    store, suite = tmp_path / "res", write_suite(tmp_path / "s.toml", [("a", "exact", 0.5)])
    run_suite(store, suite, device="cuda")
    out = tmp_path / "cells.csv"
    argv = ["--suite", suite, "--store", store, "--format", "csv", "--out", out, "--device"]
    code, _, err = run_cli(export, [*argv, "cuda"], capsys)
    assert code == 0, err
    df = pd.read_csv(out)
    assert len(df) == 2 and set(df["prov/device"]) == {"cuda"}
    code, _, err = run_cli(export, [*argv, "cpu"], capsys)
    assert code == 0 and "2 cell(s) of suite s are not in the store yet" in err and len(pd.read_csv(out)) == 0


def test_export_finds_cells_under_their_legacy_key_read_only(tmp_path, capsys):
    suite_path = write_suite(tmp_path / "s.toml", [("a", "exact", 0.5)])
    cells = expand_cells(load_suite(str(suite_path)), registry())
    if not getattr(cells[0], "legacy_key", ""):
        pytest.skip("cells have no legacy keys in this version")
    store = make_store(tmp_path / "res", [record(cells[0].legacy_key, label="old-name"),
                                          record(cells[1].legacy_key, seed=1, device="cuda")])
    before = cells_of(store)
    code, _, err = run_cli(export, ["--suite", suite_path, "--store", store, "--format", "csv",
                                    "--out", tmp_path / "c.csv", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "1 cell(s) of suite s are not in the store yet" in err  # the one computed on cuda
    df = pd.read_csv(tmp_path / "c.csv")
    assert df["key"].tolist() == [cells[0].legacy_key] and df["label"].tolist() == ["a"]
    assert cells_of(store) == before  # nothing moved


def test_export_bad_input(tmp_path, capsys, monkeypatch):
    store = make_store(tmp_path / "s", [record("k1")])
    code, _, err = run_cli(export, ["--all", "--store", store, "--format", "xlsx", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--format 'xlsx': choose csv or parquet" in one_line_error(err)
    code, _, err = run_cli(export, ["--all", "--store", tmp_path / "nowhere", "--format", "csv",
                                    "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "no stiffbench store at" in one_line_error(err)
    assert not (tmp_path / "nowhere").exists()  # reading never creates a store
    code, _, err = run_cli(export, ["--store", store, "--format", "csv"], capsys)
    assert code == 2 and "--out" in one_line_error(err)
    code, _, err = run_cli(export, ["--suite", "no-such-suite", "--store", store, "--format", "csv",
                                    "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "unknown suite" in one_line_error(err)
    code, _, err = run_cli(export, ["--store", store, "--format", "csv", "--out", tmp_path / "x.csv",
                                    "--device", "tpu"], capsys)
    assert code == 2 and "--device" in one_line_error(err)
    monkeypatch.setattr(export, "_has_pyarrow", lambda: False)
    code, _, err = run_cli(export, ["--all", "--store", store, "--format", "parquet", "--out", tmp_path / "x.pq"],
                           capsys)
    assert code == 2 and "pip install 'stiffbench[parquet]'" in one_line_error(err)
    assert not (tmp_path / "x.pq").exists() and not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------------------------------------- merge
def test_merge_disjoint_real_runs_then_leaderboard(tmp_path, capsys):
    a, b, c = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    run_suite(a, write_suite(tmp_path / "sa.toml", [("a", "exact", 0.5)]))
    run_suite(b, write_suite(tmp_path / "sb.toml", [("b", "exact", 1.0)]))
    with Store(a) as store:  # a claim left by a killed run is not copied
        store.claim(["unfinished-key"], "someone-else")
    runs = [RunRecord("sa", "2026-01-02T00:00:00+00:00", "stiffbench run --suite sa.toml", 2, 2, 1.5, 300.0, "serial", 1, "x86_64, 2 CPUs"),
            RunRecord("sb", "2026-01-01T00:00:00+00:00", "stiffbench run --suite sb.toml", 2, 2, 2.5, 310.0, "serial", 1, "x86_64, 2 CPUs")]
    for location, run in zip((a, b), runs):
        with Store(location) as store:
            store.add_run(run)
    code, out, err = run_cli(merge, [a, b, "--into", c], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"merged 4 cells (A: 2, B: 2, both: 0, conflicts resolved: 0) into {c}"
    merged, cells_a, cells_b = cells_of(c), cells_of(a), cells_of(b)
    assert set(merged) == set(cells_a) | set(cells_b)
    with Store(c) as sc, Store(a) as sa, Store(b) as sb:
        for key, rec in merged.items():
            source = sa if key in cells_a else sb
            original = (cells_a if key in cells_a else cells_b)[key]
            assert (rec.status, rec.metrics, rec.provenance, rec.created) == \
                (original.status, original.metrics, original.provenance, original.created)
            got, want = sc.load_forecast(rec), source.load_forecast(original)
            assert got is not None and np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert sqlite3.connect(c / "store.sqlite").execute("SELECT COUNT(*) FROM claims").fetchone() == (0,)
    with Store(c) as store:  # both stores' runs, oldest first
        assert store.runs() == runs[::-1] and store.runs("sa") == runs[:1]
    assert not [p for p in tmp_path.iterdir() if ".merging-" in p.name]

    # the leaderboard of a suite with both variants renders the union
    suite = load_suite(str(write_suite(tmp_path / "both.toml", [("a", "exact", 0.5), ("b", "exact", 1.0)])))
    reg = registry()
    cells = expand_cells(suite, reg)
    assert {cell.key for cell in cells} == set(merged)
    with Store(c) as store:
        text = leaderboard.build(suite, cells, store, metric_instances(reg, suite))
    rows = [line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert len(rows) == 2 * len([l for l in text.splitlines() if l.startswith("## damped_oscillator")])
    assert all("| 2/2 " in row for row in rows) and "not in the store yet" not in text


def test_merge_identical_overlap_is_one_cell(tmp_path, capsys):
    same_a = record("k2", seed=1)
    same_b = record("k2", seed=1, device="cuda", torch_threads=8, machine="aarch64")  # host-specific fields
    same_b.train_s, same_b.forecast_s, same_b.created = 99.0, 3.0, "2026-12-01T00:00:00+00:00"
    a = make_store(tmp_path / "A", [record("k1"), same_a])
    b = make_store(tmp_path / "B", [same_b, record("k3", seed=2)])
    (a / "forecasts" / "k2.npz").unlink()  # A's copy lost its forecast: B's is used
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "C"], capsys)
    assert code == 0, err
    assert f"merged 3 cells (A: 1, B: 1, both: 1, conflicts resolved: 0) into {tmp_path / 'C'}" in out
    merged = cells_of(tmp_path / "C")
    assert sorted(merged) == ["k1", "k2", "k3"]
    assert merged["k2"].provenance["device"] == "cpu" and merged["k2"].train_s == 1.5  # A's row
    with Store(tmp_path / "C") as sc, Store(b) as sb:
        got, want = sc.load_forecast(merged["k2"]), sb.load_forecast(cells_of(b)["k2"])
        assert got is not None and np.array_equal(got[1], want[1])
    assert "without their forecast" not in err


def test_merge_conflict_refused_then_prefer(tmp_path, capsys):
    a = make_store(tmp_path / "A", [record("k1"), record("k2"), record("k3"), record("k4")])
    changed = record("k2")
    changed.metrics["extrapolation"]["rmse_x"] = 0.6
    relabelled = record("k3", label="other")
    b = make_store(tmp_path / "B", [record("k1", status="diverged"), changed, relabelled, record("k4")])
    c = tmp_path / "C"
    code, out, err = run_cli(merge, [a, b, "--into", c], capsys)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "3 cell(s) differ between" in line and "--prefer" in line
    assert "k1 (osc x a seed 0: ok vs diverged)" in line
    assert "extrapolation/rmse_x 0.5 vs 0.6" in line and "label a vs other" in line
    assert not c.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["A", "B"]

    code, out, err = run_cli(merge, [a, b, "--into", c, "--prefer", "b"], capsys)
    assert code == 0, err
    assert "3 conflicting cell(s) overridden with B's row" in out
    assert f"merged 4 cells (A: 0, B: 0, both: 4, conflicts resolved: 3) into {c}" in out
    merged = cells_of(c)
    assert merged["k1"].status == "diverged" and merged["k2"].metrics["extrapolation"]["rmse_x"] == 0.6
    assert merged["k3"].label == "other"
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "C2", "--prefer", "a"], capsys)
    assert code == 0 and cells_of(tmp_path / "C2")["k1"].status == "ok"


def test_merge_finished_row_wins_over_unfinished(tmp_path, capsys):
    a = make_store(tmp_path / "A", [record("k1", status="error"), record("k2")])
    b = make_store(tmp_path / "B", [record("k1"), record("k2", status="load_error")])
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "C"], capsys)
    assert code == 0, err
    assert "conflicts resolved: 0" in out and "2 cell(s) unfinished" in err
    merged = cells_of(tmp_path / "C")
    assert merged["k1"].status == "ok" and merged["k2"].status == "ok"
    with Store(tmp_path / "C") as store:
        assert store.final_keys(["k1", "k2"]) == {"k1", "k2"}
        assert store.load_forecast(merged["k1"]) is not None


def test_merge_former_key_names_are_not_a_conflict(tmp_path, capsys):
    a = make_store(tmp_path / "A", [record("k1", metrics={"extrapolation": {"phase_drift_ms": 1.5}})])
    b = make_store(tmp_path / "B", [record("k1", metrics={"extrapolation": {"phase_drift": 1.5}})])
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "C"], capsys)
    assert code == 0, err
    assert "both: 1, conflicts resolved: 0" in out


def test_merge_missing_or_corrupt_forecasts_are_counted(tmp_path, capsys):
    a = make_store(tmp_path / "A", [record("k1"), record("k2", seed=1)])
    b = make_store(tmp_path / "B", [record("k3", seed=2), record("k4", status="error")])
    (a / "forecasts" / "k1.npz").write_bytes(b"not an npz archive")  # fails its checksum
    (b / "forecasts" / "k3.npz").unlink()
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "C"], capsys)
    assert code == 0, err
    assert "2 cell(s) copied without their forecast" in err  # k4 (error) never had one
    merged = cells_of(tmp_path / "C")
    assert merged["k1"].forecast_sha256 is None and merged["k3"].forecast_sha256 is None
    assert merged["k2"].forecast_sha256 is not None
    with Store(tmp_path / "C") as store:  # without a forecast the cell stays final (not rescorable)
        assert store.final_keys(merged) == {"k1", "k2", "k3"}
        assert store.load_forecast(merged["k2"]) is not None


def test_merge_targets(tmp_path, capsys):
    a = make_store(tmp_path / "A", [record("k1")])
    b = make_store(tmp_path / "B", [record("k2", seed=1)])
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "empty"], capsys)
    assert code == 0, err
    assert len(cells_of(tmp_path / "empty")) == 2
    Store(tmp_path / "fresh").close()  # a new store without cells
    code, out, err = run_cli(merge, [a, b, "--into", tmp_path / "fresh"], capsys)
    assert code == 0, err
    assert len(cells_of(tmp_path / "fresh")) == 2
    code, out, err = run_cli(merge, [a, b / "store.sqlite", "--into", tmp_path / "single.sqlite"], capsys)
    assert code == 0, err
    assert len(cells_of(tmp_path / "single.sqlite")) == 2


def test_merge_bad_input(tmp_path, capsys):
    a = make_store(tmp_path / "A", [record("k1")])
    b = make_store(tmp_path / "B", [record("k2", seed=1)])
    code, _, err = run_cli(merge, [a, tmp_path / "missing", "--into", tmp_path / "C"], capsys)
    assert code == 2 and "STORE_B: no stiffbench store at" in one_line_error(err)
    assert not (tmp_path / "missing").exists() and not (tmp_path / "C").exists()
    code, _, err = run_cli(merge, [a, b, "--into", a], capsys)
    assert code == 2 and "already a store with 1 cell(s)" in one_line_error(err)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    code, _, err = run_cli(merge, [a, b, "--into", tmp_path / "full"], capsys)
    assert code == 2 and "not empty" in one_line_error(err)
    code, _, err = run_cli(merge, [a, b, "--into", tmp_path / "C", "--prefer", "c"], capsys)
    assert code == 2 and "--prefer 'c': choose a or b" in one_line_error(err)
    code, _, err = run_cli(merge, [a, b], capsys)
    assert code == 2 and "--into" in one_line_error(err)
    assert not (tmp_path / "C").exists() and cells_of(a).keys() == {"k1"}


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
@pytest.mark.skipif("export" not in cli.COMMANDS or "merge" not in cli.COMMANDS,
                    reason="export and merge are not wired into stiffbench.cli yet")
def test_commands_through_the_real_cli(tmp_path):
    a = make_store(tmp_path / "A", [record("k1")])
    b = make_store(tmp_path / "B", [record("k1", status="diverged")])
    env = {**os.environ, "STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}

    def stiffbench(*argv):
        return subprocess.run([sys.executable, "-m", "stiffbench.cli", *map(str, argv)], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=120)

    done = stiffbench("export", "--all", "--store", a, "--format", "csv", "--out", "cells.csv")
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(tmp_path / "cells.csv")["status"].tolist() == ["ok"]
    done = stiffbench("export", "--all", "--store", a, "--format", "xml", "--out", "cells.xml")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    done = stiffbench("merge", a, b, "--into", "C")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "ok vs diverged" in done.stderr
    assert not (tmp_path / "C").exists()
    done = stiffbench("merge", a, b, "--into", "C", "--prefer", "b")
    assert done.returncode == 0 and "conflicts resolved: 1" in done.stdout
