"""Child-process entry point: `python -m stiffbench.worker [--progress-fd FD]` runs one pickled
BatchJob.

Protocol (between stiffbench's own processes only; nothing here reads files): the job arrives
pickled on stdin; the results leave pickled on the original stdout, which is moved to a private
descriptor first so that anything a plugin prints goes to stderr instead of corrupting the
stream. With `--progress-fd`, the batch's progress goes as JSON lines to that inherited pipe
(`progress.ChannelWriter`, at most 1 / `progress.LIVE_EVERY_S` epoch events per second) instead
of plain lines to stderr. The child exits by itself within a second if its parent dies (a killed
driver leaves no orphan training processes behind). A worker process is the place for
process-wide tuning: it fixes glibc's mmap threshold (`heap.keep_large_blocks_mapped`) before
training, so that its resident memory does not grow with heap fragmentation; the driver's
process is never tuned.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import threading
import time


def _exit_when_orphaned(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(0.5)


def _reporter(argv: list[str]):
    """The ChannelWriter on the pipe named by `--progress-fd FD`, throttled; None without it."""
    parser = argparse.ArgumentParser(prog="python -m stiffbench.worker")
    parser.add_argument("--progress-fd", type=int)
    fd = parser.parse_args(argv).progress_fd
    if fd is None:
        return None
    from .progress import LIVE_EVERY_S, ChannelWriter, Throttled

    return Throttled(ChannelWriter(os.fdopen(fd, "w", encoding="utf-8")), LIVE_EVERY_S)


def main() -> None:
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    result_fd = os.dup(1)
    os.dup2(2, 1)  # plugin prints go to stderr
    sys.stdout = sys.stderr
    reporter = _reporter(sys.argv[1:])
    job = pickle.load(sys.stdin.buffer)
    from .execute import execute_batch
    from .heap import keep_large_blocks_mapped

    keep_large_blocks_mapped()
    results = execute_batch(job, reporter)
    with os.fdopen(result_fd, "wb") as out:
        pickle.dump(results, out, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()
