"""The training progress line: throttled to one per interval, with the recent pace and the time left."""

import stiffbench.execute as execute


def test_progress_lines_pace_and_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(execute.time, "monotonic", lambda: clock[0])
    lines = []
    progress = execute._progress_printer(lines.append, "hh x m seed 0", 10, 5.0)
    for epoch, at in [(1, 106.0), (2, 108.0), (3, 112.0), (4, 113.0), (10, 114.0)]:
        clock[0] = at
        progress(epoch, 0.5)
    assert lines == [
        "    hh x m seed 0: epoch 1/10, loss 0.5",  # first line: no pace yet
        # (112 - 106) s over epochs 1 -> 3: 3 s per epoch, 7 epochs left
        "    hh x m seed 0: epoch 3/10, loss 0.5, 3 s/epoch, about 21 s left",
        # the last epoch always prints: (114 - 112) s over 7 epochs
        "    hh x m seed 0: epoch 10/10, loss 0.5, 0.286 s/epoch, about 0 s left",
    ]


def test_duration_formats():
    assert execute._duration(42.9) == "42 s"
    assert execute._duration(60.0) == "1 min"
    assert execute._duration(1228 * 3.1) == "1 h 03 min"  # 3806.8 s
    assert execute._duration(2 * 3600 + 5 * 60 + 59) == "2 h 05 min"
