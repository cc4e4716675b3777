"""Results you can trust: a cell's identity (what reruns it and what does not), the code
revision each cell records, stale cells flagged in the leaderboard and recomputed on request.

The plugins are a throw-away distribution on PYTHONPATH (two method modules, so that editing
one leaves the other's cells current), run through the real CLI with the serial executor on the
toy oscillator, a few seconds each."""

import os
import subprocess
import sys

import pytest
from fake_plugins import write_distribution

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

METHOD = '''
"""A baseline forecasting the exact toy solution times {factor}."""
import time

import numpy as np
from stiffbench.api import AbstractMethod, AbstractModel, PluginParams, param
from stiffbench.testing.toy import DampedOscillator


class _Scaled(AbstractModel):
    def __init__(self, factor, n):
        self.factor, self.n = factor, n

    def forecast(self, t):
        return np.stack([DampedOscillator().exact(np.asarray(t)) * self.factor] * self.n)


class Params(PluginParams):
    nap_s: float = 0.0
    fast: bool = param(False, performance=True)


class {cls}(AbstractMethod):
    name = "{name}"
    description = "Exact toy solution times a factor."
    Params = Params
    batches_seeds = True

    def fit(self, task, seeds, config):
        for epoch in range(1, config.epochs + 1):
            time.sleep(self.params.nap_s)
            config.check(epoch, 0.0)
        return _Scaled({factor}, len(seeds))
'''

SUITE = """
seeds = [0, 1]
epochs = 2
{budget}
[[systems]]
name = "damped_oscillator"
[[methods]]
label = "alpha"
method = "alpha"
params = {alpha_params}
[[methods]]
label = "beta"
method = "beta"
"""


def write_plugins(site, alpha_factor=1.0, alpha_doc=""):
    pkg = site / "trust_plugins"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    source = METHOD.format(factor=alpha_factor, cls="Alpha", name="alpha")
    (pkg / "alpha.py").write_text(source.replace('"""A baseline', f'"""{alpha_doc}A baseline'))
    (pkg / "beta.py").write_text(METHOD.format(factor=1.0, cls="Beta", name="beta"))


@pytest.fixture
def workspace(tmp_path):
    site = tmp_path / "site"
    write_plugins(site)
    write_distribution(site, "trust-plugins", "1.0", {
        "stiffbench.methods": {"alpha": "trust_plugins.alpha:Alpha", "beta": "trust_plugins.beta:Beta"},
        "stiffbench.systems": {"damped_oscillator": "stiffbench.testing.toy:DampedOscillator"},
    })
    return tmp_path, site


def cli(workspace, *args, budget="", alpha_params="{}"):
    tmp_path, site = workspace
    (tmp_path / "s.toml").write_text(SUITE.format(budget=budget, alpha_params=alpha_params))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "stiffbench.cli", *args, "--suite", "s.toml", "--executor", "serial"]
                            if args[0] == "run" else [sys.executable, "-m", "stiffbench.cli", *args, "--suite", "s.toml"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def rows(workspace):
    """The table's row labels, sorted (rows are ranked by their metric values), and the document."""
    board = (workspace[0] / "leaderboard" / "s.md").read_text()
    return sorted(line.split("|")[1].strip() for line in board.splitlines() if line.startswith("| alpha") or
                  line.startswith("| beta")), board


def test_changed_method_source_flags_its_cells_and_rerun_stale_recomputes_only_those(workspace):
    first = cli(workspace, "run")
    assert "cells: 4 total, 0 cached, 4 to run" in first.stdout
    assert rows(workspace)[0] == ["alpha", "beta"]  # nothing stale

    write_plugins(workspace[1], alpha_factor=1.0, alpha_doc="Reworded. ")  # docstrings only: same revision
    cli(workspace, "leaderboard")
    assert rows(workspace)[0] == ["alpha", "beta"]

    write_plugins(workspace[1], alpha_factor=2.0)  # alpha's code changed; beta's module did not
    cli(workspace, "leaderboard")
    labels, board = rows(workspace)
    assert labels == ["alpha †", "beta"] and "--rerun-stale" in board

    plain = cli(workspace, "run")  # without the flag, stale cells are shown, not recomputed
    assert "cells: 4 total, 4 cached, 0 to run" in plain.stdout
    again = cli(workspace, "run", "--rerun-stale")
    assert "cells: 4 total, 2 cached, 2 to run" in again.stdout
    assert "x alpha seed" in again.stderr and "x beta seed" not in again.stderr
    assert rows(workspace)[0] == ["alpha", "beta"]


def test_compile_like_settings_and_a_larger_budget_rerun_nothing_that_finished(workspace):
    cli(workspace, "run", budget="budget_s = 30")
    toggled = cli(workspace, "run", budget="budget_s = 30", alpha_params="{ fast = true }")
    assert "cells: 4 total, 4 cached, 0 to run" in toggled.stdout
    raised = cli(workspace, "run", budget="budget_s = 60")
    assert "cells: 4 total, 4 cached, 0 to run" in raised.stdout
    unlimited = cli(workspace, "run")
    assert "cells: 4 total, 4 cached, 0 to run" in unlimited.stdout


def test_a_timeout_reruns_only_under_a_larger_budget(workspace):
    slow = "{ nap_s = 0.6 }"  # 2 epochs x 0.6 s per cell of 2 seeds: 2.4 s against a 1 s budget
    first = cli(workspace, "run", budget="budget_s = 0.5", alpha_params=slow)
    assert "alpha seed 0: timeout" in first.stderr
    same = cli(workspace, "run", budget="budget_s = 0.5", alpha_params=slow)
    assert "cells: 4 total, 4 cached, 0 to run" in same.stdout
    larger = cli(workspace, "run", budget="budget_s = 5", alpha_params=slow)
    assert "cells: 4 total, 2 cached, 2 to run" in larger.stdout and "alpha seed 0: ok" in larger.stderr
