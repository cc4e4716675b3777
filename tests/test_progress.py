"""Training progress: the plain lines (unchanged for logs), the pace and throttle arithmetic, the
live display rendered to a captured terminal, and epoch events travelling from worker processes
to the driver's display."""

import io
import math
import os
import pty
import re
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest
from rich.console import Console

import fake_plugins
from stiffbench.executors import ProcessExecutor, SerialExecutor
from stiffbench.progress import ChannelWriter, LiveDisplay, RecentPace, Throttled, duration, line_reporter, relay_events
from stiffbench.registry import PluginSpec
from stiffbench.runner import Runner
from stiffbench.store import Store
from test_runner import registry, suite

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A reporter that records what it receives."""

    def __init__(self):
        self.events = []

    def started(self, what, models, epochs):
        self.events.append(("started", what, models, epochs))

    def epoch(self, epoch, loss):
        self.events.append(("epoch", epoch, loss))

    def log(self, line):
        self.events.append(("log", line))


# -- plain lines and arithmetic ------------------------------------------------------------------
def test_plain_lines_pace_and_time_left():
    clock = FakeClock(100.0)
    lines = []
    reporter = line_reporter(lines.append, 5.0, clock)
    reporter.started("hh x m seeds 0", 1, 10)
    for epoch, at in [(1, 106.0), (2, 108.0), (3, 112.0), (4, 113.0), (10, 114.0)]:
        clock.now = at
        reporter.epoch(epoch, 0.5)
    reporter.log("resuming from epoch 3 of checkpoint b.pt")
    assert lines == [
        "training hh x m seeds 0 (1 models, 10 epochs)",
        "    hh x m seeds 0: epoch 1/10, loss 0.5",  # 6 s after the start; no pace yet
        # (112 - 106) s over epochs 1 -> 3: 3 s per epoch, 7 epochs left
        "    hh x m seeds 0: epoch 3/10, loss 0.5, 3 s/epoch, about 21 s left",
        # the last epoch always prints: (114 - 112) s over 7 epochs
        "    hh x m seeds 0: epoch 10/10, loss 0.5, 0.286 s/epoch, about 0 s left",
        "resuming from epoch 3 of checkpoint b.pt",
    ]


def test_duration_formats():
    assert duration(42.9) == "42 s"
    assert duration(60.0) == "1 min"
    assert duration(1228 * 3.1) == "1 h 03 min"  # 3806.8 s
    assert duration(2 * 3600 + 5 * 60 + 59) == "2 h 05 min"


def test_recent_pace_spans_the_last_seconds():
    pace = RecentPace(10.0)
    assert pace.text(20, "epoch") == ""  # no sample
    pace.add(0, 0.0)
    assert pace.text(20, "epoch") == ""  # one sample
    pace.add(2, 4.0)
    pace.add(5, 9.0)
    # all three within 10 s of the newest: (9 - 0) s over 5 epochs
    assert pace.seconds_per_unit() == pytest.approx(1.8)
    pace.add(9, 15.0)
    # (2, 4 s) is the newest sample at least 10 s old: (15 - 4) s over 7 epochs = 1.571 s/epoch,
    # 11 epochs left: 17.3 s
    assert pace.seconds_per_unit() == pytest.approx(11 / 7)
    assert pace.text(20, "epoch") == ", 1.57 s/epoch, about 17 s left"
    pace.add(9, 16.0)
    assert pace.text(20, "epoch") == ", 1.71 s/epoch, about 18 s left"  # (16 - 4) s over 7 epochs, 11 left
    stalled = RecentPace(0.0)
    stalled.add(3, 1.0)
    stalled.add(3, 2.0)
    assert stalled.text(10, "epoch") == ""  # no epoch done between the samples: unknown


def test_throttled_forwards_at_most_every_interval_and_always_the_last_epoch():
    clock, inner = FakeClock(0.0), Recorder()
    reporter = Throttled(inner, 0.25, clock)
    reporter.started("b", 2, 5)
    for epoch, at in [(1, 0.125), (2, 0.25), (3, 0.375), (4, 0.5), (5, 0.625)]:
        clock.now = at
        reporter.epoch(epoch, epoch / 8)
    reporter.log("note")
    assert inner.events == [("started", "b", 2, 5), ("epoch", 2, 0.25), ("epoch", 4, 0.5), ("epoch", 5, 0.625),
                            ("log", "note")]


def test_channel_events_survive_the_pipe():
    read_fd, write_fd = os.pipe()
    writer = ChannelWriter(os.fdopen(write_fd, "w", encoding="utf-8"))
    writer.started("hh x node seeds 0,1", 2, 30)
    writer.epoch(np.int64(7), np.float32(0.5))  # numpy scalars, as training loops may pass them
    writer.epoch(8, float("nan"))
    writer.log('checkpoint "a.pt" refused')
    writer.stream.close()
    inner = Recorder()
    with os.fdopen(read_fd, encoding="utf-8") as stream:
        relay_events(stream, inner)
    assert inner.events[:2] == [("started", "hh x node seeds 0,1", 2, 30), ("epoch", 7, 0.5)]
    assert inner.events[2][:2] == ("epoch", 8) and math.isnan(inner.events[2][2])
    assert inner.events[3] == ("log", 'checkpoint "a.pt" refused')


def test_lines_that_are_not_events_are_logged_as_they_are():
    inner = Recorder()
    lines = ['["epoch", 3]', "plain words", '{"epoch": 1}', '["shutdown"]', '[["log"], 1]', "5", "[]"]
    relay_events([line + "\n" for line in lines], inner)
    assert inner.events == [("log", line) for line in lines]


# -- the live display ----------------------------------------------------------------------------
def rendered(console) -> str:
    return ANSI.sub("", console.file.getvalue())


def test_live_display_renders_cells_batches_and_lines_above():
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    clock = FakeClock(0.0)
    display = LiveDisplay(console, clock)
    with display.running(4):
        with display.batch("hh x node seeds 0,1") as bar:
            display.progress.refresh()
            assert "hh x node seeds 0,1" in rendered(console) and "starting" in rendered(console)
            bar.started("hh x node seeds 0,1", 2, 10)
            clock.now = 2.0
            bar.epoch(4, 0.25)
            display.progress.refresh()
            # 4 epochs in 2 s: 0.5 s/epoch, 6 epochs left: 3 s
            assert "hh x node seeds 0,1" in rendered(console)
            assert "epoch 4/10, loss 0.25, 0.5 s/epoch, about 3 s left" in rendered(console)
            bar.log("[bold]a plugin's line[/bold]")
        assert len(display.progress.tasks) == 1  # the finished batch's bar is gone
        clock.now = 10.0
        display.cell_done()
        clock.now = 20.0
        display.cell_done()
        display.print("[2/4] hh x node seed 1: ok, train 9.0s")
        display.progress.refresh()
    text = rendered(console)
    # 2 cells in 20 s: 10 s per cell, 2 left: 20 s
    assert "2/4, 10 s/cell, about 20 s left" in text
    assert "[bold]a plugin's line[/bold]\n" in text  # printed as it is, not as rich markup
    assert "[2/4] hh x node seed 1: ok, train 9.0s\n" in text
    assert "━" in text  # bars were drawn


# -- epoch events from where batches run ---------------------------------------------------------
class Paced(fake_plugins.Exact):
    """Three epochs of 0.3 s each (longer than the live display's interval), loss epoch / 10; it
    writes one line to stderr, as plugins do."""

    name = "paced"
    description = "Three slow epochs."
    batches_seeds = False

    def fit(self, task, seeds, config):
        print("paced plugin says hello", file=sys.stderr, flush=True)
        for epoch in range(1, 4):
            time.sleep(0.3)
            config.check(epoch, epoch / 10)
        return fake_plugins._Offset(fake_plugins.DampedOscillator(), [0.0] * len(seeds))


class RecordingDisplay:
    """Stands in for LiveDisplay: records what the runner and the executor tell it."""

    def __init__(self):
        self.calls, self.bars = [], []

    @contextmanager
    def running(self, total):
        self.calls.append(("running", total))
        yield self
        self.calls.append(("stopped",))

    def cell_done(self):
        self.calls.append(("cell_done",))

    @contextmanager
    def batch(self, label):
        bar = Recorder()
        self.bars.append((label, bar))
        yield bar

    def print(self, line):
        self.calls.append(("print", line))


@pytest.mark.slow
@pytest.mark.parametrize("isolated", [False, True], ids=["serial", "process"])
def test_epoch_events_reach_the_display(tmp_path, capfd, isolated):
    reg = registry([PluginSpec("methods", "paced", "test_progress:Paced", "fakes", "1")])
    display = RecordingDisplay()
    executor = ProcessExecutor(1) if isolated else SerialExecutor()
    try:
        with Store(tmp_path / "res") as store:
            Runner(reg, store, executor=executor, verbose=True, progress=display).run(
                suite([("p", "paced", {})], seeds=[0], epochs=3))
    finally:
        executor.close()
    assert display.calls == [("running", 1), ("cell_done",), ("stopped",)]
    [(label, bar)] = display.bars
    assert label == "damped_oscillator x p seeds 0"
    epochs = [e for e in bar.events if e[0] != "log"]
    # every epoch is 0.3 s after the previous one, more than the display's 0.25 s interval
    assert epochs == [("started", "damped_oscillator x p seeds 0", 1, 3), ("epoch", 1, 0.1), ("epoch", 2, 0.2),
                      ("epoch", 3, 0.3)]
    err = capfd.readouterr().err
    assert "training" not in err and "epoch" not in err  # no plain lines besides the display
    if isolated:  # the worker's stderr is relayed to the display, not written to the terminal
        assert ("log", "paced plugin says hello") in bar.events and err == ""
    else:
        assert "paced plugin says hello" in err  # a plugin in the driver writes to stderr as before


# -- the command line: plain lines in logs, the display on a terminal ----------------------------
def run_cli(tmp_path, *args, terminal: bool) -> tuple[int, str, str]:
    """`stiffbench run` on a suite of the exact fake (2 seeds, 2 epochs, one process worker), with
    stderr a pipe or a pseudo-terminal; returns exit code, stdout and stderr (ANSI codes kept)."""
    site = tmp_path / "site"
    fake_plugins.fake_distribution(site)
    (tmp_path / "s.toml").write_text('seeds = [0, 1]\nepochs = 2\n[[systems]]\nname = "damped_oscillator"\n'
                                     '[[methods]]\nlabel = "a"\nmethod = "exact"\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.path.dirname(__file__)]), COLUMNS="200")
    command = [sys.executable, "-m", "stiffbench.cli", "run", "--suite", "s.toml", "--executor", "process",
               "--workers", "1", *args]
    if not terminal:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
        return done.returncode, done.stdout, done.stderr
    parent, child = pty.openpty()
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=child, text=True)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # EIO: every process holding the terminal has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(parent)
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return proc.returncode, out, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.slow
def test_plain_lines_when_stderr_is_not_a_terminal(tmp_path):
    code, out, err = run_cli(tmp_path, terminal=False)
    assert code == 0, err
    assert "cells: 2 total, 0 cached, 2 to run" in out
    lines = err.splitlines()
    assert lines[:2] == ["training damped_oscillator x a seeds 0,1 (2 models, 2 epochs)",
                         "    damped_oscillator x a seeds 0,1: epoch 2/2, loss 0"]  # the last epoch; no pace yet
    assert re.fullmatch(r"\[1/2\] damped_oscillator x a seed 0: ok, train \d+\.\ds", lines[2])
    assert re.fullmatch(r"\[2/2\] damped_oscillator x a seed 1: ok, train \d+\.\ds", lines[3])
    assert "\x1b[" not in err


@pytest.mark.slow
def test_live_display_on_a_terminal_and_lines_on_request(tmp_path):
    code, _, err = run_cli(tmp_path / "auto", terminal=True)
    assert code == 0, err
    assert "\x1b[?25l" in err  # the live display hides the cursor while it draws
    text = ANSI.sub("", err)
    assert re.search(r"\[1/2\] damped_oscillator x a seed 0: ok, train \d+\.\ds\n", text)
    assert re.search(r"cells +━+ 2/2", text)
    assert "training damped_oscillator" not in text  # no plain progress lines under the display
    code, _, err = run_cli(tmp_path / "lines", "--progress", "lines", terminal=True)
    assert code == 0, err
    assert "training damped_oscillator x a seeds 0,1 (2 models, 2 epochs)\n" in err and "\x1b[" not in err
