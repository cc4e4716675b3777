"""Results store: one SQLite row per cell, keyed by a hash of everything that determines it.

Layout of a results folder:

    <folder>/store.sqlite          cells table (JSON columns for metrics and provenance)
    <folder>/forecasts/<key>.npz   the forecast of each finished cell (t, y), for rescoring

Only the driver process writes. Each cell is committed in its own transaction (WAL journal), so
an interrupted run keeps every finished cell. Forecast files carry their SHA-256 in the row; a
file that no longer matches is reported as missing rather than read. Nothing is pickled.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .cache import load_npz_checked, save_npz_atomic

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
"""


class StoreError(Exception):
    """A store that cannot be opened or is not a stiffbench store."""


@dataclass
class CellRecord:
    """One cell's result. metrics: {window: {key: float | None}}; times in seconds."""

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

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


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
        self._conn.execute("PRAGMA quick_check").fetchone()
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
        """Insert or replace a cell; the forecast (t, y) is written first so a row never points
        to a missing file."""
        if forecast is not None:
            t, y = forecast
            record.forecast_sha256 = save_npz_atomic(self.forecast_path(record.key), {"t": t, "y": y})
        self._conn.execute(
            "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.key, record.system, record.method, record.label, record.seed, record.status,
                record.reason, json.dumps(record.metrics), record.train_s, record.forecast_s,
                json.dumps(record.provenance, sort_keys=True), record.forecast_sha256, record.created,
            ),
        )

    def update_metrics(self, key: str, metrics: dict, reason: str | None, status: str) -> None:
        self._conn.execute(
            "UPDATE cells SET metrics=?, reason=?, status=? WHERE key=?", (json.dumps(metrics), reason, status, key)
        )

    def get(self, key: str) -> CellRecord | None:
        rows = self.get_many([key])
        return rows.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, CellRecord]:
        keys = list(keys)
        out: dict[str, CellRecord] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT * FROM cells WHERE key IN ({marks})", chunk):
                out[row[0]] = _record_from_row(row)
        return out

    def final_keys(self, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` whose stored status is final (not retried)."""
        return {k for k, r in self.get_many(keys).items() if r.status in FINAL_STATUSES}

    def forecast_path(self, key: str) -> Path:
        return self.forecast_dir / f"{key}.npz"

    def load_forecast(self, record: CellRecord) -> tuple[np.ndarray, np.ndarray] | None:
        """(t, y) of a cell, or None when absent or failing its checksum."""
        if record.forecast_sha256 is None:
            return None
        arrays = load_npz_checked(self.forecast_path(record.key), record.forecast_sha256)
        return None if arrays is None else (arrays["t"], arrays["y"])


def _record_from_row(row: tuple) -> CellRecord:
    (key, system, method, label, seed, status, reason, metrics, train_s, forecast_s, provenance, sha, created) = row
    return CellRecord(
        key=key, system=system, method=method, label=label, seed=seed, status=status, reason=reason,
        metrics=json.loads(metrics), train_s=train_s, forecast_s=forecast_s, provenance=json.loads(provenance),
        forecast_sha256=sha, created=created,
    )
