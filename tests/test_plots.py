"""Figures: rendered headless (Agg) from stored forecasts; files, panel counts, seed choice, links.

The CLI test runs a tiny suite (hh shortened to 40 ms and vdp, 2 seeds, 3 epochs of a small neural
ODE) with `run --plots`, then `stiffbench plot --all-seeds` on its store.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stiffbench.api import SpikeSettings, Trajectory
from stiffbench.plots import select_seeds
from stiffbench.plots.forecast import CellView, forecast_figure, is_log_spaced, panel_count
from stiffbench.plots.layout import figure_links, forecast_file, safe_name
from stiffbench.ranking import PrimaryMetric
from stiffbench.store import CellRecord

pytest.importorskip("matplotlib")

SUITE = """
seeds = [0, 1]
epochs = 3
[[systems]]
name = "hh"
params = { extrapolation = [14.68, 30.0], long = [30.0, 40.0] }
[[systems]]
name = "vdp"
[[methods]]
label = "node"
method = "vanilla_node"
params = { hidden = [8] }
"""


def _view(names, spikes=None, t=np.linspace(0.0, 10.0, 101)):
    y = np.column_stack([np.sin(t + k) for k in range(len(names))])
    forecast = y.copy()
    forecast[60:, 0] = np.nan  # diverges at t = 6
    return CellView("title", Trajectory(t, forecast, names), Trajectory(t, y, names), Trajectory(t[:30], y[:30], names),
                    (0.0, 2.9), (0.0, 8.0), "ms", {names[0]: "mV"}, {names[-1]: (0.0, 1.0)}, spikes)


def test_panel_counts_spiking_and_not():
    spiking = _view(("V", "m", "h", "n"), SpikeSettings("V", 0.5, 1.0, 1.0))
    assert panel_count(spiking) == 6  # V, raster, phase V-n, then m, h, n
    assert len(forecast_figure(spiking).axes) == 6
    plain = _view(("x", "y", "z"))
    assert panel_count(plain) == 4  # three states and a phase portrait of x and y
    assert len(forecast_figure(plain).axes) == 4
    assert panel_count(_view(("x",))) == 1


def test_log_spacing_detected_only_for_geometric_times_over_two_decades():
    assert is_log_spaced(np.r_[0.0, np.logspace(-5, 5, 101)])  # rober's grid: t = 0, then 10 per decade
    assert not is_log_spaced(np.linspace(0.0, 100.0, 101))
    assert not is_log_spaced(np.logspace(0, 1, 11))  # one decade only


def _records(values):
    return [CellRecord(key=str(seed), system="s", method="m", label="m", seed=seed, status="ok",
                       metrics={"w": {"f1": value}}) for seed, value in values.items()]


def test_the_median_seed_is_drawn_not_the_best():
    records = _records({0: 0.9, 1: 0.1, 2: 0.5, 3: 0.7})
    higher = PrimaryMetric("f1", True)
    # best first: 0 (0.9), 3 (0.7), 2 (0.5), 1 (0.1); position 4 // 2 = 2 -> seed 2
    assert [r.seed for r in select_seeds(records, "w", higher)] == [2]
    # lower is better: 1, 2, 3, 0 -> position 2 -> seed 3
    assert [r.seed for r in select_seeds(records, "w", PrimaryMetric("f1", False))] == [3]
    assert [r.seed for r in select_seeds(records, "w", higher, seed=1)] == [1]
    assert [r.seed for r in select_seeds(records, "w", higher, all_seeds=True)] == [0, 1, 2, 3]
    undefined = _records({4: None, 2: None})
    assert [r.seed for r in select_seeds(undefined, "w", higher)] == [2]  # none defined: the lowest seed


def test_links_name_existing_figures_only(tmp_path):
    root = tmp_path / "figures" / "suite"
    for label, seed in (("a-b", 1), ("a", 0), ("a", 2)):
        path = forecast_file(root, "hh 1", label, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (root / safe_name("hh 1") / "cost.png").write_bytes(b"")
    line = figure_links(root, "hh 1", ["a", "a-b", "c"], tmp_path)
    assert line == ("Figures: [cost vs accuracy](figures/suite/hh_1/cost.png) · [a (seed 0)](figures/suite/hh_1/a-seed0.png)"
                    " · [a (seed 2)](figures/suite/hh_1/a-seed2.png) · [a-b (seed 1)](figures/suite/hh_1/a-b-seed1.png)")
    assert figure_links(root, "other", ["a"], tmp_path) is None


def cli(cwd, *args):
    return subprocess.run([sys.executable, "-m", "stiffbench.cli", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_run_with_plots_then_plot_all_seeds_through_the_cli(tmp_path):
    (tmp_path / "tiny.toml").write_text(SUITE)
    run = cli(tmp_path, "run", "--suite", "tiny.toml", "--executor", "serial", "--device", "cpu", "--plots", "--quiet")
    assert run.returncode == 0, run.stderr
    figures = tmp_path / "leaderboard" / "figures" / "tiny"
    median = sorted(p.relative_to(figures).as_posix() for p in figures.rglob("*.png"))
    names = {p.split("/")[1] for p in median}
    assert {"cost.png", "curves.png"} <= names
    assert sum(p.startswith("hh/node-seed") for p in median) == 1  # one seed per row by default
    assert sum(p.startswith("vdp/node-seed") for p in median) == 1
    width, height = _png_size(figures / "hh" / "curves.png")
    assert width > 400 and height > 300
    board = (tmp_path / "leaderboard" / "tiny.md").read_text()
    assert "[training curves](figures/tiny/hh/curves.png)" in board
    assert "[cost vs accuracy](figures/tiny/vdp/cost.png)" in board

    again = cli(tmp_path, "plot", "--suite", "tiny.toml", "--all-seeds", "--out", "figs")
    assert again.returncode == 0, again.stderr
    assert "figures: 8 written under figs" in again.stdout  # 2 systems x (2 seeds + cost + curves)
    assert {p.name for p in (tmp_path / "figs" / "hh").glob("node-seed*.png")} == {"node-seed0.png", "node-seed1.png"}
    assert "[node (seed 1)](../figs/vdp/node-seed1.png)" in (tmp_path / "leaderboard" / "tiny.md").read_text()


def test_plot_errors_are_one_line(tmp_path):
    missing = cli(tmp_path, "plot", "--store", "nowhere")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "stiffbench: error: no store at nowhere (run the suite first: stiffbench run --suite quick --store nowhere)"]
    both = cli(tmp_path, "plot", "--seed", "1", "--all-seeds")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_variant_colours_differ_in_hue_for_ten_and_never_repeat_for_twenty():
    from matplotlib import colormaps

    from stiffbench.plots.summary import _colour

    tab20 = colormaps["tab20"]
    assert [_colour(i) for i in range(10)] == [tab20(2 * i) for i in range(10)]  # the ten dark hues
    assert [_colour(i) for i in range(10, 20)] == [tab20(2 * i + 1) for i in range(10)]  # then their shades
    assert len({_colour(i) for i in range(20)}) == 20
