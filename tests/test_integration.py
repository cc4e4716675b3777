"""End-to-end through the real CLI: run a suite, resume, add a plugin distribution, rerun.

The plugin is a throw-away distribution: a package plus a hand-written `*.dist-info` (METADATA
and entry_points.txt) on PYTHONPATH, which importlib.metadata discovers like any installed one.
HH is shortened (windows up to 40 ms) and training is 2 epochs so that this runs in seconds.
"""

import os
import subprocess
import sys

import pytest
from fake_plugins import write_distribution

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

SHORT_HH = '{ extrapolation = [14.68, 30.0], long = [30.0, 40.0] }'

PLUGIN = '''
"""A persistence baseline: forecasts the initial state forever."""
import numpy as np
from stiffbench.api import AbstractMethod, AbstractModel


class _Constant(AbstractModel):
    def __init__(self, y0, n):
        self.y0, self.n = y0, n

    def forecast(self, t):
        return np.broadcast_to(self.y0, (self.n, len(t), len(self.y0))).copy()


class Persistence(AbstractMethod):
    name = "persistence"
    description = "Forecasts the initial state for all times (demo plugin)."

    def fit(self, task, seeds, config):
        return _Constant(task.y0, len(seeds))
'''


def suite_text(methods):
    blocks = "".join(f'\n[[methods]]\nlabel = "{label}"\nmethod = "{method}"\n' for label, method in methods)
    return (f"seeds = [0, 1]\nepochs = 2\n[leaderboard]\nqualitative_summary = true\n"
            f"[[systems]]\nname = \"hh\"\nparams = {SHORT_HH}\n{blocks}")


def make_plugin_distribution(site):
    pkg = site / "sbdemo_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    write_distribution(site, "sbdemo-plugin", "0.3.0", {"stiffbench.methods": {"persistence": "sbdemo_plugin:Persistence"}})


def cli(cwd, *args, pythonpath=None, env=None):
    env = {**os.environ, **(env or {})}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "stiffbench.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    return result


def test_run_resume_and_add_plugin(tmp_path):
    suite = tmp_path / "demo.toml"
    suite.write_text(suite_text([("node", "vanilla_node")]))

    first = cli(tmp_path, "run", "--suite", str(suite))
    assert first.returncode == 0, first.stderr
    assert "cells: 2 total, 0 cached, 2 to run" in first.stdout
    board = (tmp_path / "leaderboard" / "demo.md").read_text()
    assert "## hh — extrapolation window [14.68, 30] ms" in board and "| node" in board
    assert "bound_violation" in board.splitlines()[board.splitlines().index("## hh — long window [30, 40] ms") + 2]
    assert (tmp_path / "stiffbench-results" / "store.sqlite").exists()

    # the footer records the run that computed the cells: command, cells, wall time, peak RSS
    run_lines = [line for line in board.splitlines() if line.startswith("- run ")]
    assert len(run_lines) == 1 and f"`stiffbench run --suite {suite}`: 2 of 2 cells in " in run_lines[0]
    assert "s wall, peak RSS " in run_lines[0] and "MiB (process executor, " in run_lines[0]

    again = cli(tmp_path, "run", "--suite", str(suite))
    assert again.returncode == 0 and "cells: 2 total, 2 cached, 0 to run" in again.stdout
    board = (tmp_path / "leaderboard" / "demo.md").read_text()
    assert [line for line in board.splitlines() if line.startswith("- run ")] == run_lines  # nothing ran: no record

    site = tmp_path / "site"
    make_plugin_distribution(site)
    listing = cli(tmp_path, "list", "methods", pythonpath=site)
    assert listing.returncode == 0
    assert "persistence" in listing.stdout and "sbdemo-plugin 0.3.0" in listing.stdout
    assert "Forecasts the initial state" in listing.stdout

    env_off = {"STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert "persistence" not in cli(tmp_path, "list", "methods", pythonpath=site, env=env_off).stdout
    named = cli(tmp_path, "list", "methods", "--plugins", "persistence", pythonpath=site, env=env_off)
    assert "persistence" in named.stdout and "pinode_sr" in named.stdout

    suite.write_text(suite_text([("node", "vanilla_node"), ("persist", "persistence")]))
    third = cli(tmp_path, "run", "--suite", str(suite), pythonpath=site)
    assert third.returncode == 0, third.stderr
    assert "cells: 4 total, 2 cached, 2 to run" in third.stdout
    assert "training hh x node" not in third.stderr  # the cached cells were not retrained
    board = (tmp_path / "leaderboard" / "demo.md").read_text()
    persist_rows = [line for line in board.splitlines() if line.startswith("| persist ")]
    assert len(persist_rows) == 3  # one row in each window's table and in the qualitative summary
    assert all("| 2/2 " in row for row in persist_rows[:2])
    assert "sbdemo-plugin 0.3.0" in board

    rescored = cli(tmp_path, "leaderboard", "--suite", str(suite), "--rescore", pythonpath=site)
    assert rescored.returncode == 0 and "rescored 4 cell(s)" in rescored.stderr


@pytest.mark.parametrize(
    "suite_body, fragment",
    [
        ('seeds = [0]\nepochs = 1\n[[systems]]\nname = "nope"\n[[methods]]\nlabel = "a"\nmethod = "vanilla_node"\n',
         "unknown system 'nope'"),
        ('seeds = [0]\nepochs = 1\n[[systems]]\nname = "hh"\n[[methods]]\nlabel = "a"\nmethod = "vanilla_node"\n'
         'params = { hiden = [8] }\n', "methods[0] (a).params: hiden"),
        ('seeds = [0]\nepochs = 0\n[[systems]]\nname = "hh"\n[[methods]]\nlabel = "a"\nmethod = "vanilla_node"\n',
         "epochs"),
    ],
)
def test_run_user_errors(tmp_path, suite_body, fragment):
    suite = tmp_path / "bad.toml"
    suite.write_text(suite_body)
    result = cli(tmp_path, "run", "--suite", str(suite))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr and "Traceback" not in result.stderr
