"""Executors and crash safety: hard timeouts, crashes, equal numbers under every executor,
SIGKILL of the driver, and two runs sharing one store."""

import os
import signal
import subprocess
import sys
import time

import pytest

import fake_plugins
from stiffbench.executors import DaskExecutor, ProcessExecutor, SerialExecutor
from stiffbench.registry import Registry
from stiffbench.runner import Runner
from stiffbench.store import Store
from stiffbench.suite import Suite
from test_runner import registry, suite

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

SHORT_HH = {"extrapolation": [14.68, 30.0], "long": [30.0, 40.0]}


def run_with(executor, tmp_path, s, reg=None, **kw):
    try:
        with Store(tmp_path / "res") as store:
            report = Runner(reg or registry(), store, executor=executor, **kw).run(s)
            stored = store.get_many(c.key for c in report.cells)
            return {(c.label, c.seed): stored[c.key] for c in report.cells}
    finally:
        executor.close()


def test_hanging_plugin_is_killed_and_the_rest_finishes(tmp_path):
    s = suite([("hang", "hanging", {}), ("ok", "exact", {})], seeds=[0], budget_s=2.0)
    start = time.monotonic()
    records = run_with(ProcessExecutor(2), tmp_path, s, grace_s=6.0)  # hard limit 8 s: room to start a worker
    assert time.monotonic() - start < 30
    assert records[("hang", 0)].status == "timeout" and "hard limit" in records[("hang", 0)].reason
    assert records[("ok", 0)].status == "ok"


def test_crashing_worker_is_an_error(tmp_path):
    records = run_with(ProcessExecutor(2), tmp_path, suite([("crash", "crashing", {}), ("ok", "exact", {})], seeds=[0]))
    assert records[("crash", 0)].status == "error" and "worker process died" in records[("crash", 0)].reason
    assert records[("ok", 0)].status == "ok"


def real_suite():
    return Suite(name="same", seeds=[0, 1], epochs=2, systems=[{"name": "hh", "params": SHORT_HH}],
                 methods=[{"label": "node", "method": "vanilla_node"}, {"label": "pinn", "method": "vanilla_pinn"}])


def metrics_of(records):
    return {key: (r.status, r.metrics) for key, r in records.items()}


def test_same_numbers_under_every_executor(tmp_path):
    serial = metrics_of(run_with(SerialExecutor(), tmp_path / "serial", real_suite(), Registry()))
    process = metrics_of(run_with(ProcessExecutor(2), tmp_path / "process", real_suite(), Registry()))
    dask = metrics_of(run_with(DaskExecutor(workers=2), tmp_path / "dask", real_suite(), Registry()))
    assert all(status == "ok" for status, _ in serial.values())
    assert serial == process == dask


def cli(tmp_path, site, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.path.dirname(__file__)]))
    return subprocess.Popen([sys.executable, "-m", "stiffbench.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sleepy_suite(tmp_path, n_seeds=4):
    path = tmp_path / "sleepy.toml"
    path.write_text(f'seeds = {list(range(n_seeds))}\nepochs = 1\n[[systems]]\nname = "damped_oscillator"\n'
                    '[[methods]]\nlabel = "z"\nmethod = "sleepy"\n')
    return str(path)


def count_cells(store_dir):
    with Store(store_dir) as store:
        return store._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_sigkill_keeps_finished_cells_and_resume_skips_them(tmp_path, executor):
    site = tmp_path / "site"
    fake_plugins.fake_distribution(site)
    suite_path = sleepy_suite(tmp_path, 6)
    proc = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", executor, "--workers", "1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (tmp_path / "stiffbench-results" / "store.sqlite").exists() and count_cells(tmp_path / "stiffbench-results") >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = count_cells(tmp_path / "stiffbench-results")
    assert 2 <= finished < 6
    rerun = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", executor)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert f"cells: 6 total, {finished} cached, {6 - finished} to run" in out
    assert count_cells(tmp_path / "stiffbench-results") == 6


def test_two_runs_on_one_store_do_not_run_a_cell_twice(tmp_path):
    site = tmp_path / "site"
    fake_plugins.fake_distribution(site)
    suite_path = sleepy_suite(tmp_path, 4)
    first = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", "process", "--workers", "2")
    time.sleep(0.5)
    second = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", "process", "--workers", "2")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    trained = sum(err.count("training damped_oscillator x z") for _, err in outs)
    assert trained == 4, outs
    assert count_cells(tmp_path / "stiffbench-results") == 4


def test_cli_skips_foreign_claims_and_takes_them_over_on_request(tmp_path):
    """A store carrying a killed run's claims from another host: the run says who holds them and how
    to take them over; --take-over-claims then runs those cells."""
    site = tmp_path / "site"
    fake_plugins.fake_distribution(site)
    suite_path = sleepy_suite(tmp_path, 2)
    results = tmp_path / "stiffbench-results"
    first = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", "serial")
    assert first.wait(timeout=120) == 0
    with Store(results) as store:
        keys = [k for (k,) in store._conn.execute("SELECT key FROM cells")]
        store._conn.execute("DELETE FROM cells")
        store._conn.executemany("INSERT INTO claims VALUES (?, 'gone:7:abc', 'otherhost', 7, '2026-01-02T03:04:05+00:00')",
                                [(k,) for k in keys])
    skip = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", "serial")
    out, err = skip.communicate(timeout=120)
    assert skip.returncode == 0, err
    assert "0 to run (2 claimed by another run, skipped: otherhost pid 7 since 2026-01-02T03:04:05+00:00" in out
    assert "--take-over-claims" in out and count_cells(results) == 0
    take = cli(tmp_path, site, "run", "--suite", suite_path, "--executor", "serial", "--take-over-claims")
    out, err = take.communicate(timeout=120)
    assert take.returncode == 0, err
    assert "2 to run" in out and count_cells(results) == 2
