"""Executors: where batches run. `serial` (in the driver), `process` (one isolated child process
per batch, one per core at a time), `dask` (dask.distributed, local or an existing cluster).

`process` and `dask` run each batch in a fresh child process (`python -m stiffbench.worker`) with
one torch thread, so a plugin that hangs or loops is stopped at the batch's hard limit (status
`timeout`) and a crash (segfault, out of memory) becomes status `error`; the rest of the suite
carries on. Only the driver writes the store: results stream back as batches finish.

Given a `stiffbench.progress.LiveDisplay`, `run` shows a bar per running batch: `serial` reports to
it directly; `process` relays each child's progress events and its stderr through two pipes, read
by threads of the driver. `dask` does not relay them (its tasks may run on other machines): the
display's bar over cells still advances as results arrive.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Iterable, Iterator

from .execute import BatchJob, Result, execute_batch, failed_records
from .progress import LIVE_EVERY_S, Throttled, relay_events

EXECUTORS = ("serial", "process", "dask")
RELAY_JOIN_S = 5.0  # how long a finished batch waits for its relays (a child's own child may hold a pipe open)


def run_isolated(job: BatchJob, procs: set | None = None, lock: threading.Lock | None = None,
                 progress=None) -> list[Result]:
    """Run `job` in a child process; kill it past `job.hard_limit_s` (-> timeout records).

    progress : a LiveDisplay that shows the batch's bar, fed with the child's progress events and
               its stderr lines (None: the child writes to this process's stderr)."""
    if progress is None:
        return _run_child(job, procs, lock)
    with progress.batch(job.describe()) as bar, _relayed_pipes(bar) as (events_fd, stderr_fd):
        return _run_child(job, procs, lock, events_fd, stderr_fd)


@contextmanager
def _relayed_pipes(bar) -> Iterator[tuple[int, int]]:
    """Two pipes for a child, yielded as their write ends: its progress events (`ChannelWriter`
    lines) and its stderr, each read by a thread that hands them to `bar`. A thread ends once the
    child and this block have closed the pipe's write end."""
    pipes = [os.pipe(), os.pipe()]
    readers = [threading.Thread(target=_drain, args=(read_fd, relay, bar), daemon=True)
               for (read_fd, _), relay in zip(pipes, (relay_events, _log_lines))]
    for reader in readers:
        reader.start()
    try:
        yield pipes[0][1], pipes[1][1]
    finally:
        for _, write_fd in pipes:
            os.close(write_fd)
        for reader in readers:
            reader.join(timeout=RELAY_JOIN_S)


def _drain(read_fd: int, relay, bar) -> None:
    with os.fdopen(read_fd, encoding="utf-8", errors="replace") as stream:
        relay(stream, bar)


def _log_lines(stream, bar) -> None:
    for line in stream:
        bar.log(line.rstrip("\n"))


def _run_child(job: BatchJob, procs, lock, events_fd: int | None = None, stderr_fd: int | None = None) -> list[Result]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    command = [sys.executable, "-m", "stiffbench.worker"]
    if events_fd is not None:
        command += ["--progress-fd", str(events_fd)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr_fd,
                            pass_fds=() if events_fd is None else (events_fd,), env=env)
    if procs is not None:
        with lock:
            procs.add(proc)
    try:
        out, _ = proc.communicate(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL), timeout=job.hard_limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return failed_records(job, "timeout", f"stopped after the hard limit of {job.hard_limit_s:.0f} s "
                                              f"(budget {job.budget_s:g} s per cell)")
    finally:
        if procs is not None:
            with lock:
                procs.discard(proc)
    if proc.returncode != 0 or not out:
        return failed_records(job, "error", f"worker process died (exit code {proc.returncode})")
    return pickle.loads(out)


class SerialExecutor:
    """Batches run one after another in the driver process; budgets are checked cooperatively."""

    def __init__(self):
        self.workers = 1

    def run(self, jobs: Iterable[BatchJob], progress=None) -> Iterator[tuple[BatchJob, list[Result]]]:
        """Each job's results in turn; `progress` (a LiveDisplay) shows the running batch's bar."""
        for job in jobs:
            if progress is None:
                results = execute_batch(job)
            else:
                with progress.batch(job.describe()) as bar:
                    results = execute_batch(job, Throttled(bar, LIVE_EVERY_S))
            yield job, results

    def close(self) -> None:
        pass


class ProcessExecutor:
    """Up to `workers` isolated child processes at a time (default: one per core)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._procs: set = set()
        self._lock = threading.Lock()

    def run(self, jobs: Iterable[BatchJob], progress=None) -> Iterator[tuple[BatchJob, list[Result]]]:
        """Each job's results as its batch finishes; `progress` (a LiveDisplay) shows a bar per running batch."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(run_isolated, job, self._procs, self._lock, progress): job for job in jobs}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                for future in futures:
                    future.cancel()
                self.close()

    def close(self) -> None:
        """Kill every child still running (on interruption)."""
        with self._lock:
            for proc in list(self._procs):
                proc.kill()


class DaskExecutor:
    """Batches as dask.distributed tasks, each isolated in a child process on its worker.

    scheduler : address of an existing scheduler (e.g. tcp://host:8786, or one started by
                dask-jobqueue on SLURM); None starts a LocalCluster of `workers` single-threaded
                worker processes on this machine.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise RuntimeError("--executor dask needs dask.distributed: pip install 'stiffbench[dask]'") from None
        if scheduler:
            self._cluster = None
            self.client = Client(scheduler, timeout=30)
        else:
            n = workers or os.cpu_count() or 1
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                         dashboard_address=None, host="127.0.0.1")
            self.client = Client(self._cluster)
        self.workers = len(self.client.scheduler_info()["workers"]) or 1

    def run(self, jobs: Iterable[BatchJob], progress=None) -> Iterator[tuple[BatchJob, list[Result]]]:
        """Each job's results as its task finishes. `progress` is accepted for a common interface
        and not fed: no batch bars under dask (see the module docstring)."""
        from dask.distributed import as_completed as dask_completed

        futures = {self.client.submit(run_isolated, job, pure=False): job for job in jobs}
        try:
            for future in dask_completed(futures):
                job = futures[future]
                try:
                    results = future.result()
                except Exception as exc:  # the task itself failed on the worker (lost worker, ...)
                    results = failed_records(job, "error", f"dask task failed: {type(exc).__name__}: {exc}")
                yield job, results
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(name: str, workers: int | None = None, scheduler: str | None = None):
    """The executor called `name` (serial, process or dask)."""
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(scheduler, workers)
    raise ValueError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)}")
