"""CLI: list, simulate and score, including every user-error path (exit 2, one line, no traceback)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from stiffbench.cli import main

STATES = ["V", "n", "m", "h"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, fragment):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stiffbench: error:"), err
    assert fragment in lines[0], err


@pytest.fixture(scope="module")
def ref_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "ref.csv"
    assert main(["simulate", "--system", "hh", "--t-end", "100", "--out", str(path)]) == 0
    return path


def test_list_all_and_one_kind(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in ["hh", "vanilla_node", "vanilla_pinn", "pinode_sr", "rmse", "spike_f1", "phase_drift",
                 "isi_error", "amp_dev", "amp_pres"]:
        assert f" {name} " in out
    assert "stiffbench 0.1.0" in out
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0 and "pinode_sr" in out and "rmse" not in out


def test_list_unknown_kind(capsys):
    assert_user_error(*run_cli(capsys, "list", "gadgets")[::2], "invalid choice")


def test_simulate_writes_the_grid(ref_csv):
    frame = pd.read_csv(ref_csv)
    assert list(frame.columns) == ["t", *STATES]
    assert len(frame) == 10001 and frame["t"].iloc[-1] == 100.0 and frame["t"].iloc[1468] == 14.68
    assert frame.iloc[0, 1:].tolist() == [-65.0, 0.32, 0.05, 0.6]
    assert frame["V"].max() > 30  # it spikes


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--system", "nope", "--t-end", "10"], "unknown system 'nope'"),
        (["--system", "hh", "--t-end", "-1"], "--t-end must be positive"),
        (["--system", "hh", "--t-end", "10", "--param", "g_Na=-3"], "g_Na"),
        (["--system", "hh", "--t-end", "10", "--param", "bogus=1"], "bogus"),
        (["--system", "hh", "--t-end", "ten"], "invalid float value"),
        (["--system", "hh"], "required"),
    ],
)
def test_simulate_user_errors(capsys, tmp_path, args, fragment):
    code, _, err = run_cli(capsys, "simulate", *args, "--out", str(tmp_path / "x.csv"))
    assert_user_error(code, err, fragment)


def test_simulate_unwritable_out(capsys, tmp_path):
    code, _, err = run_cli(capsys, "simulate", "--system", "hh", "--t-end", "1", "--out", str(tmp_path))
    assert_user_error(code, err, "cannot write")


def score(capsys, pred, ref, *extra):
    code, out, err = run_cli(capsys, "score", "--system", "hh", "--pred", str(pred), "--ref", str(ref), *extra)
    return code, out, err


def test_score_identical_is_perfect(capsys, ref_csv):
    code, out, _ = score(capsys, ref_csv, ref_csv)
    result = json.loads(out)
    assert code == 0 and result["status"] == "ok"
    # every built-in key (installed third-party metrics may add their own)
    assert set(result) >= {"status", "rmse_V", "rmse_n", "rmse_m", "rmse_h", "spike_f1", "phase_drift",
                           "isi_error", "amp_dev", "amp_pres_pct"}
    assert result["spike_f1"] == 1.0 and result["phase_drift"] == 0.0 and result["rmse_V"] == 0.0


def test_score_shifted_prediction_on_a_window(capsys, ref_csv, tmp_path):
    frame = pd.read_csv(ref_csv)
    shifted = frame.copy()
    shifted[STATES] = frame[STATES].shift(30).bfill()  # 0.3 ms late
    pred = tmp_path / "pred.csv"
    shifted.to_csv(pred, index=False)
    code, out, _ = score(capsys, pred, ref_csv, "--window", "20", "60")
    result = json.loads(out)
    assert code == 0 and result["spike_f1"] == 1.0
    assert result["phase_drift"] == pytest.approx(0.3, abs=1e-9)
    assert result["isi_error"] == pytest.approx(0.0, abs=1e-9)


def test_score_nan_is_diverged(capsys, ref_csv, tmp_path):
    frame = pd.read_csv(ref_csv)
    frame.loc[5000, "V"] = np.nan
    pred = tmp_path / "pred.csv"
    frame.to_csv(pred, index=False)
    code, out, _ = score(capsys, pred, ref_csv)
    result = json.loads(out)
    assert code == 0 and result["status"] == "diverged" and result["rmse_V"] is None


def test_score_user_errors(capsys, ref_csv, tmp_path):
    frame = pd.read_csv(ref_csv)
    cases = {
        "missing column(s) h": frame.drop(columns="h"),
        "grids differ": frame.iloc[:-1],
        "non-numeric value 'abc'": frame.astype({"m": object}).assign(m=lambda f: f["m"].where(f.index != 7, "abc")),
    }
    for fragment, bad in cases.items():
        path = tmp_path / "bad.csv"
        bad.to_csv(path, index=False)
        assert_user_error(*score(capsys, path, ref_csv)[::2], fragment)
    assert_user_error(*score(capsys, tmp_path / "absent.csv", ref_csv)[::2], "file not found")
    assert_user_error(*score(capsys, ref_csv, ref_csv, "--window", "50", "20")[::2], "T0 must be less than T1")
    assert_user_error(*score(capsys, ref_csv, ref_csv, "--window", "200", "300")[::2], "outside the CSV grid")


@pytest.mark.slow
def test_real_cli_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stiffbench.cli", "score", "--system", "hh", "--pred", str(tmp_path / "a.csv"),
         "--ref", str(tmp_path / "b.csv")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
