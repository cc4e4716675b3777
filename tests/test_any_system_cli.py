"""Through the real CLI: one system under two labels with different parameters renders two
leaderboard sections, and a rerun finds every cell cached (and nothing to rescore).

HH is shortened (windows up to 40 ms); 1 seed, 2 epochs of a tiny vanilla neural ODE.
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

SUITE = """
seeds = [0]
epochs = 2
[[systems]]
name = "hh"
label = "hh-I10"
params = { I_ext = 10, extrapolation = [14.68, 30.0], long = [30.0, 40.0] }
[[systems]]
name = "hh"
label = "hh-I15"
params = { I_ext = 15, extrapolation = [14.68, 30.0], long = [30.0, 40.0] }
[[methods]]
label = "node"
method = "vanilla_node"
params = { hidden = [8] }
[metrics.spike_f1]
params = { tolerance = 1.5 }
"""


def cli(cwd, *args):
    return subprocess.run([sys.executable, "-m", "stiffbench.cli", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)


def section_rows(board, heading):
    lines = board.splitlines()
    rows = []
    for line in lines[lines.index(heading) + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.split("|")[1:-1]])
    return rows


def test_one_system_under_two_labels_through_the_cli(tmp_path):
    (tmp_path / "twice.toml").write_text(SUITE)
    args = ("run", "--suite", "twice.toml", "--executor", "serial", "--device", "cpu")

    first = cli(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "cells: 2 total, 0 cached, 2 to run" in first.stdout
    board = (tmp_path / "leaderboard" / "twice.md").read_text()
    lines = board.splitlines()
    headings = [line for line in lines if line.startswith("## hh-")]
    assert headings == [
        "## hh-I10 — extrapolation window [14.68, 30] ms", "## hh-I10 — long window [30, 40] ms",
        "## hh-I15 — extrapolation window [14.68, 30] ms", "## hh-I15 — long window [30, 40] ms",
    ]
    # a line under each label names the system and what its parameters change from the defaults
    (i10,) = [line for line in lines if line.startswith("`hh-I10`:")]
    (i15,) = [line for line in lines if line.startswith("`hh-I15`:")]
    assert i10.startswith("`hh-I10`: system `hh` with ") and "I_ext" not in i10  # 10 is the default
    assert "extrapolation = [14.68, 30.0]" in i10 and "long = [30.0, 40.0]" in i10
    assert i15.startswith("`hh-I15`: system `hh` with I_ext = 15.0, ")
    assert lines.index(i10) < lines.index(headings[0]) < lines.index(i15) < lines.index(headings[2])
    for heading in headings:
        header, _, row = section_rows(board, heading)
        assert header[:2] == ["method", "rmse_V (mV)"] and "phase_drift (ms)" in header
        assert row[0] == "node" and row[-2] == "1/1"  # one row, its one cell ok
    assert "qualitative summary" not in board  # the suite does not ask for it

    again = cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "cells: 2 total, 2 cached, 0 to run" in again.stdout
    assert "training hh" not in again.stderr
    # the stored cells were scored with the suite's metric parameters: nothing to rescore
    assert "rescored" not in again.stderr
