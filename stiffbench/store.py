"""Results store: one SQLite row per cell, keyed by a hash of everything that determines it.

Layout of a results folder:

    <folder>/store.sqlite          cells table (JSON columns for metrics and provenance)
    <folder>/forecasts/<key>.npz   the forecast of each finished cell (t, y), for rescoring

A cell's training curve (`stiffbench.curves`), when its method reports one, is a JSON row of the
`curves` table, read and written with the cell.

Only the driver process writes. Each cell is committed in its own transaction (WAL journal), so
an interrupted run keeps every finished cell. A run claims the cells it is about to compute
(`claims` table), so two runs on one store never compute the same cell. Forecast files carry
their SHA-256 in the row; a file that no longer matches is never read, and its cell counts as
not finished (the next run recomputes it); a missing file only means the cell cannot be
rescored, so a store can be shared without its forecasts. A damaged database is refused.
Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sqlite3
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .cache import load_npz_checked, save_npz_atomic
from .hashing import file_sha256

SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "timeout", "error", "load_error", "n/a")
# Statuses that are final for a cell key; `error` and `load_error` come from the environment or
# a fixable plugin bug and are retried by the next run.
FINAL_STATUSES = ("ok", "diverged", "timeout", "n/a")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    system TEXT NOT NULL,
    method TEXT NOT NULL,
    label TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    metrics TEXT NOT NULL,
    train_s REAL,
    forecast_s REAL,
    provenance TEXT NOT NULL,
    forecast_sha256 TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    suite TEXT NOT NULL,
    started TEXT NOT NULL,
    command TEXT NOT NULL,
    cells_total INTEGER NOT NULL,
    cells_run INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    peak_rss_mb REAL NOT NULL,
    executor TEXT NOT NULL,
    workers INTEGER NOT NULL,
    machine TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS curves (key TEXT PRIMARY KEY, curve TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since TEXT NOT NULL
);
"""


_SELECT_CELLS = "SELECT cells.*, curves.curve FROM cells LEFT JOIN curves ON curves.key = cells.key"


class StoreError(Exception):
    """A store that cannot be opened or is not a stiffbench store."""


@dataclass
class CellRecord:
    """One cell's result. metrics: {window: {key: float | None}}; times in seconds; curve: the
    training curve ({"epoch": [...], "loss": [...], <term>: [...]}, `stiffbench.curves`) or None."""

    key: str
    system: str
    method: str
    label: str
    seed: int
    status: str
    reason: str | None = None
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    train_s: float | None = None
    forecast_s: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    forecast_sha256: str | None = None
    created: str = ""
    curve: dict[str, list] | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


@dataclass(frozen=True)
class RunRecord:
    """One `stiffbench run` that computed cells: the command, when it started (UTC, ISO 8601), how
    many of the suite's cells it ran, its wall time (s), the peak resident memory of the runner and
    its finished workers (MiB), the executor, the number of workers and the machine (platform,
    processor count)."""

    suite: str
    started: str
    command: str
    cells_total: int
    cells_run: int
    wall_s: float
    peak_rss_mb: float
    executor: str
    workers: int
    machine: str


class Store:
    """Open (creating if needed) the store in a results folder, or at an explicit .sqlite path."""

    def __init__(self, location: str | Path):
        location = Path(location)
        if location.suffix in (".sqlite", ".db"):
            self.db_path, self.folder = location, location.parent
        else:
            self.folder, self.db_path = location, location / "store.sqlite"
        self.forecast_dir = self.folder / "forecasts"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path} is not a readable stiffbench store ({exc})") from None
        except OSError as exc:
            raise StoreError(f"cannot open store at {location}: {exc.strerror or exc}") from None

    def _check_schema(self) -> None:
        check = self._conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise StoreError(f"{self.db_path} is damaged (integrity check: {check[0] if check else 'no answer'}); "
                             "refusing to read it as partial results")
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.db_path} has schema version {row[0]}, this stiffbench reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    def put(self, record: CellRecord, forecast: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Insert or replace a cell and its training curve in one transaction; the forecast (t, y)
        is written first so a row never points to a missing file."""
        if forecast is not None:
            t, y = forecast
            record.forecast_sha256 = save_npz_atomic(self.forecast_path(record.key), {"t": t, "y": y})
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.key, record.system, record.method, record.label, record.seed, record.status,
                    record.reason, json.dumps(record.metrics), record.train_s, record.forecast_s,
                    json.dumps(record.provenance, sort_keys=True), record.forecast_sha256, record.created,
                ),
            )
            if record.curve is None:
                self._conn.execute("DELETE FROM curves WHERE key=?", (record.key,))
            else:
                self._conn.execute("INSERT OR REPLACE INTO curves VALUES (?,?)", (record.key, json.dumps(record.curve)))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def update_metrics(self, key: str, metrics: dict, reason: str | None, status: str,
                       provenance: dict | None = None) -> None:
        """Replace a cell's metrics, reason and status (and provenance, if given) after rescoring."""
        if provenance is None:
            self._conn.execute(
                "UPDATE cells SET metrics=?, reason=?, status=? WHERE key=?", (json.dumps(metrics), reason, status, key)
            )
        else:
            self._conn.execute("UPDATE cells SET metrics=?, reason=?, status=?, provenance=? WHERE key=?",
                               (json.dumps(metrics), reason, status, json.dumps(provenance, sort_keys=True), key))

    def get(self, key: str) -> CellRecord | None:
        rows = self.get_many([key])
        return rows.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, CellRecord]:
        rows = self._select_keys(f"{_SELECT_CELLS} WHERE cells.key IN ({{}})", keys)
        return {row[0]: _record_from_row(row) for row in rows}

    def _select_keys(self, sql: str, keys: Iterable[str], extra: tuple = ()) -> Iterator[tuple]:
        """Rows of `sql` whose "{}" is filled with one placeholder per key, run in chunks of 500 keys
        (SQLite's limit on bound parameters); `extra` parameters follow each chunk's keys."""
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            yield from self._conn.execute(sql.format(",".join("?" * len(chunk))), [*chunk, *extra])

    def records(self) -> Iterator[CellRecord]:
        """Every cell in the store, in key order."""
        for row in self._conn.execute(f"{_SELECT_CELLS} ORDER BY cells.key"):
            yield _record_from_row(row)

    def rekey(self, old: str, new: str, provenance: dict) -> None:
        """Move a cell to a new key (its forecast file with it), with updated provenance."""
        source, target = self.forecast_path(old), self.forecast_path(new)
        if source.is_file():
            os.replace(source, target)
        with self._transaction():
            self._conn.execute("UPDATE cells SET key=?, provenance=? WHERE key=?",
                               (new, json.dumps(provenance, sort_keys=True), old))
            self._conn.execute("UPDATE curves SET key=? WHERE key=?", (new, old))

    def final_keys(self, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` whose stored status is final (not retried)."""
        return self._final_keys_unlocked(list(keys))

    def _final_keys_unlocked(self, keys: list[str]) -> set[str]:
        """Keys with a final status whose forecast file is intact or absent: a corrupted forecast
        (present, failing its SHA-256) makes its cell run again; an absent one only means the cell
        cannot be rescored (a store may be shared without its forecasts folder)."""
        final: set[str] = set()
        statuses = ",".join("?" * len(FINAL_STATUSES))
        sql = f"SELECT key, forecast_sha256 FROM cells WHERE key IN ({{}}) AND status IN ({statuses})"
        for key, sha in self._select_keys(sql, keys, tuple(FINAL_STATUSES)):
            path = self.forecast_path(key)
            if sha is None or not path.is_file() or file_sha256(str(path)) == sha:
                final.add(key)
        return final

    # ------------------------------------------------------------------------------------------
    def claim(self, keys: Iterable[str], owner: str, take_over: bool = False, rerun: Iterable[str] = ()) -> set[str]:
        """Atomically claim the keys no live run has claimed and no final result holds.

        Two runs on one store thus never run the same cell. A claim whose owner process is gone
        (same host, dead pid: a killed run) is stale and taken over. A claim made on another host
        cannot be checked from here (a store copied or committed with a killed run's claims in
        it): it is respected unless `take_over`, which claims every key without a final result.
        Keys in `rerun` are claimable although their result is final (they are to be recomputed).
        """
        rerun = set(rerun)
        keys = list(keys)
        host, pid = socket.gethostname(), os.getpid()
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        claimed: set[str] = set()
        with self._transaction():
            rows = self._select_keys("SELECT key, owner, host, pid FROM claims WHERE key IN ({})", keys)
            existing = {r[0]: r[1:] for r in rows}
            final = self._final_keys_unlocked(keys) - rerun
            for key in keys:
                if key in final:
                    continue
                other = existing.get(key)
                stale = take_over or (other is not None and other[1] == host and not _pid_alive(other[2]))
                if other is not None and other[0] != owner and not stale:
                    continue
                self._conn.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)", (key, owner, host, pid, now))
                claimed.add(key)
        return claimed

    def claimants(self, keys: Iterable[str]) -> list[tuple[str, str, str]]:
        """The distinct (host, pid, since) of the runs holding claims on keys."""
        rows = self._select_keys("SELECT host, pid, since FROM claims WHERE key IN ({})", keys)
        return sorted({(host, str(pid), since) for host, pid, since in rows})

    def release(self, keys: Iterable[str], owner: str) -> None:
        """Drop this owner's claims on keys."""
        self._conn.executemany("DELETE FROM claims WHERE key=? AND owner=?", [(k, owner) for k in keys])

    def add_run(self, run: RunRecord) -> None:
        """Record a run (the leaderboard's footer lists a suite's runs)."""
        with self._conn:
            self._conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", astuple(run))

    def runs(self, suite: str | None = None) -> list[RunRecord]:
        """The recorded runs of a suite (None: of every suite), oldest first."""
        where, args = ("WHERE suite = ?", (suite,)) if suite is not None else ("", ())
        rows = self._conn.execute(f"SELECT * FROM runs {where} ORDER BY started", args).fetchall()
        return [RunRecord(*row) for row in rows]

    def forecast_path(self, key: str) -> Path:
        return self.forecast_dir / f"{key}.npz"

    def load_forecast(self, record: CellRecord) -> tuple[np.ndarray, np.ndarray] | None:
        """(t, y) of a cell, or None when absent or failing its checksum."""
        if record.forecast_sha256 is None:
            return None
        arrays = load_npz_checked(self.forecast_path(record.key), record.forecast_sha256)
        return None if arrays is None else (arrays["t"], arrays["y"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _record_from_row(row: tuple) -> CellRecord:
    (key, system, method, label, seed, status, reason, metrics, train_s, forecast_s, provenance, sha, created,
     curve) = row
    return CellRecord(
        key=key, system=system, method=method, label=label, seed=seed, status=status, reason=reason,
        metrics=json.loads(metrics), train_s=train_s, forecast_s=forecast_s, provenance=json.loads(provenance),
        forecast_sha256=sha, created=created, curve=None if curve is None else json.loads(curve),
    )
