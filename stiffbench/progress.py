"""Training progress: plain lines for logs, a live display for a terminal, and the pipe between them.

A training batch reports to a *reporter*, an object with three methods:
`started(what, models, epochs)` when training begins, `epoch(epoch, loss)` after each epoch (it is
`FitConfig.progress`) and `log(line)` for notes such as a resumed checkpoint. Reporters:

- `line_reporter`: plain lines through a log function, an epoch line at most every `every_s`
  seconds and at the last epoch (what CI logs show);
- `ChannelWriter`: in a worker process, each event as one JSON line on a pipe to the driver,
  where `relay_events` hands them to
- `BatchBar`: one batch's bar in a `LiveDisplay`, the rich display of a run on a terminal (a bar
  over the run's cells above one bar per running batch).

`Throttled` forwards epoch events at most every `every_s` seconds: an epoch that is not forwarded
costs a clock read and a comparison (about 0.3 µs), and a batch's bar receives at most
1 / `LIVE_EVERY_S` updates per second (a JSON line through the pipe costs about 15 µs).

The pace shown is the recent pace (`RecentPace`), not the average since the start: an adaptive
solver's epochs get slower as its models learn stiffer dynamics, and batches of a suite differ.
"""

from __future__ import annotations

import json
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TextIO

LIVE_EVERY_S = 0.25  # a batch's bar is updated at most 4 times per second
BAR_PACE_SPAN_S = 10.0  # a batch's pace: over about the last 10 s of epochs
CELL_PACE_SPAN_S = 300.0  # the run's pace: over about the last 5 min of finished cells (batches finish in bursts)
EVENT_ARITY = {"started": 3, "epoch": 2, "log": 1}  # the events a reporter receives, with their argument counts


def duration(seconds: float) -> str:
    """'42 s', '17 min' or '2 h 05 min' (rounded down to the unit shown)."""
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class RecentPace:
    """Seconds per unit of work over about the last `span_s` seconds.

    Samples are (units done, time in s). The pace runs from the newest sample at least `span_s`
    older than the newest one (else the oldest kept) to the newest: with span_s = 0, the pace since
    the previous sample. Unknown (None) until two samples differ in units done.
    """

    def __init__(self, span_s: float):
        self.span_s = span_s
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, done: float, now: float) -> None:
        self.samples.append((done, now))
        while len(self.samples) > 2 and self.samples[1][1] <= now - self.span_s:
            self.samples.popleft()

    def seconds_per_unit(self) -> float | None:
        (done0, t0), (done1, t1) = self.samples[0], self.samples[-1]
        return (t1 - t0) / (done1 - done0) if done1 > done0 else None

    def text(self, total: float, unit: str) -> str:
        """', 3 s/epoch, about 21 s left' (the time left at this pace), or '' while the pace is unknown."""
        per_unit = self.seconds_per_unit() if self.samples else None
        if per_unit is None:
            return ""
        left = (total - self.samples[-1][0]) * per_unit
        return f", {per_unit:.3g} s/{unit}, about {duration(left)} left"


def epoch_text(epoch: int, epochs: int, loss: float, pace: RecentPace) -> str:
    """'epoch 3/10, loss 0.5, 3 s/epoch, about 21 s left'."""
    return f"epoch {epoch}/{epochs}, loss {loss:.4g}{pace.text(epochs, 'epoch')}"


class Throttled:
    """A reporter whose epoch events reach `inner` at most every `every_s` seconds after the
    previous one (the first `every_s` after `started`) and always at the last epoch; `started`
    and `log` pass at once."""

    def __init__(self, inner, every_s: float, clock: Callable[[], float] = time.monotonic):
        self.inner, self.every_s, self.clock = inner, every_s, clock
        self.epochs, self.last = 0, 0.0

    def started(self, what: str, models: int, epochs: int) -> None:
        self.epochs, self.last = epochs, self.clock()
        self.inner.started(what, models, epochs)

    def epoch(self, epoch: int, loss: float) -> None:
        now = self.clock()
        if now - self.last >= self.every_s or epoch == self.epochs:
            self.last = now
            self.inner.epoch(epoch, loss)

    def log(self, line: str) -> None:
        self.inner.log(line)


class PlainLines:
    """A reporter writing plain lines through `log`: 'training <what> (<models> models, <epochs>
    epochs)' and, per epoch it receives, the epoch, loss and pace since the previous one."""

    def __init__(self, log: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.log, self.clock = log, clock
        self.what, self.epochs, self.pace = "", 0, RecentPace(0.0)

    def started(self, what: str, models: int, epochs: int) -> None:
        self.what, self.epochs, self.pace = what, epochs, RecentPace(0.0)
        self.log(f"training {what} ({models} models, {epochs} epochs)")

    def epoch(self, epoch: int, loss: float) -> None:
        self.pace.add(epoch, self.clock())
        self.log(f"    {self.what}: {epoch_text(epoch, self.epochs, loss, self.pace)}")


def line_reporter(log: Callable[[str], None], every_s: float, clock: Callable[[], float] = time.monotonic) -> Throttled:
    """Plain lines through `log`, an epoch line at most every `every_s` seconds and at the last
    epoch, with the pace since the previous line and the time left at that pace."""
    return Throttled(PlainLines(log, clock), every_s, clock)


class ChannelWriter:
    """A reporter in a worker process: each event as one JSON line on `stream`, a pipe that the
    driver reads with `relay_events`. A write that fails (the driver is gone) is dropped: the
    worker ends by itself then (`stiffbench.worker`)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def started(self, what: str, models: int, epochs: int) -> None:
        self._send(["started", what, models, epochs])

    def epoch(self, epoch: int, loss: float) -> None:
        self._send(["epoch", int(epoch), float(loss)])

    def log(self, line: str) -> None:
        self._send(["log", line])

    def _send(self, event: list) -> None:
        try:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()
        except OSError:
            pass


def relay_events(lines: Iterable[str], reporter) -> None:
    """Hand each event line that a ChannelWriter wrote to `reporter`; any other line is logged as it is."""
    for line in lines:
        line = line.rstrip("\n")
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        kind = event[0] if isinstance(event, list) and event and isinstance(event[0], str) else None
        if kind is not None and EVENT_ARITY.get(kind) == len(event) - 1:
            getattr(reporter, kind)(*event[1:])
        else:
            reporter.log(line)


class LiveDisplay:
    """The live display of a run on a terminal (rich): a bar over the run's cells (done/total,
    recent pace, time left) and below it one bar per running batch (`batch`). Lines printed
    through `print`, and whatever this process writes to sys.stderr meanwhile, appear above the bars.

    Batches report from executor threads; rich's Progress serialises their updates and redraws
    the display 4 times per second from its own thread.
    """

    def __init__(self, console, clock: Callable[[], float] = time.monotonic):
        from rich.progress import BarColumn, Progress, TextColumn

        self.clock = clock
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                                 console=console, refresh_per_second=4, redirect_stdout=False)
        self.cells_task = None
        self.cells_done, self.cells_total, self.cell_pace = 0, 0, RecentPace(CELL_PACE_SPAN_S)

    @contextmanager
    def running(self, total_cells: int) -> Iterator[LiveDisplay]:
        """Show the display while the block runs `total_cells` cells."""
        self.cells_done, self.cells_total, self.cell_pace = 0, total_cells, RecentPace(CELL_PACE_SPAN_S)
        self.cell_pace.add(0, self.clock())
        self.cells_task = self.progress.add_task("cells", total=total_cells, detail=self._cells_text())
        with self.progress:
            yield self

    def cell_done(self) -> None:
        """Count one finished cell (called by the driver as it stores each record)."""
        self.cells_done += 1
        self.cell_pace.add(self.cells_done, self.clock())
        self.progress.update(self.cells_task, completed=self.cells_done, detail=self._cells_text())

    def _cells_text(self) -> str:
        return f"{self.cells_done}/{self.cells_total}{self.cell_pace.text(self.cells_total, 'cell')}"

    @contextmanager
    def batch(self, label: str) -> Iterator[BatchBar]:
        """A bar for one batch while the block runs it, labelled `label` until the batch starts training."""
        bar = BatchBar(self, label)
        try:
            yield bar
        finally:
            self.progress.remove_task(bar.task)

    def print(self, line: str) -> None:
        """Print `line` above the bars, as it is (no rich markup)."""
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)


class BatchBar:
    """A reporter drawing one batch's bar in a LiveDisplay: its label, epoch k/N, loss, recent
    pace and time left; its `log` lines print above the display."""

    def __init__(self, display: LiveDisplay, label: str):
        self.display = display
        self.task = display.progress.add_task(f"  {label}", total=None, detail="starting")
        self.epochs, self.pace = 0, RecentPace(BAR_PACE_SPAN_S)

    def started(self, what: str, models: int, epochs: int) -> None:
        self.epochs, self.pace = epochs, RecentPace(BAR_PACE_SPAN_S)
        self.pace.add(0, self.display.clock())
        self.display.progress.update(self.task, description=f"  {what}", total=epochs, completed=0,
                                     detail=f"epoch 0/{epochs}")

    def epoch(self, epoch: int, loss: float) -> None:
        self.pace.add(epoch, self.display.clock())
        self.display.progress.update(self.task, completed=epoch, detail=epoch_text(epoch, self.epochs, loss, self.pace))

    def log(self, line: str) -> None:
        self.display.print(line)
