"""`stiffbench merge`: the union of two stores' cells, with their forecasts, in a new store.

    stiffbench merge STORE_A STORE_B --into STORE_C [--prefer a|b]

For combining results computed on several machines (or in several sessions) into one store, from
which `stiffbench leaderboard` renders them together. STORE_C must not exist yet, or be an empty
folder or a store without cells: a merge never writes into a store that holds cells. A new folder
is built under a temporary name next to it and renamed once complete, so an interrupted merge
leaves no half-written STORE_C.

- Cells are copied with their rows as they are (metrics, timings, provenance, creation time) and
  their forecast files, each read back through its SHA-256 (`Store.load_forecast`) and rewritten
  by `Store.put`. A cell whose forecast is missing or fails its checksum in its source store is
  copied without one (it then cannot be rescored) and counted on stderr.
- A key in both stores is one cell when both rows agree on status, seed, labels (method label and
  system label) and every metric value (compared exactly, with former metric key names mapped to
  the current ones). Timings (`train_s`, `forecast_s`), `created`, the reason text and the rest of
  the provenance (versions, device, threads, machine, batch size) may differ: they describe where
  and how fast the cell ran, not its result. The row kept is A's (B's with `--prefer b`); its
  forecast, or the other store's if its own is unusable.
- A cell that one store has not finished (`error`, `load_error`: a run would retry it) and the
  other has (`ok`, `diverged`, `timeout`, `n/a`) takes the finished row; this is not a conflict.
  Two unfinished rows are not a conflict either (A's is kept, or the preferred side's).
- Any other difference is a conflict. Without `--prefer`, nothing is written (STORE_C is not even
  created) and the command ends with one line: how many cells conflict and the first few, with
  what differs (e.g. `ok vs diverged`, `extrapolation/rmse_V 3.1 vs 2.9`). With `--prefer a` or
  `--prefer b` that store's row wins every conflict, and the number of overridden cells is printed.
- Claims (`claims` table: which run is computing which cell) are not copied.

Prints `merged N cells (A: a, B: b, both: k, conflicts resolved: c) into STORE_C`, where a and b
count the keys found in one store only and k the keys found in both (N = a + b + k).

Only the standard library is imported at import time (the CLI builds its parser without numpy).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sqlite3
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

SHOWN_CONFLICTS = 3


class MergeError(Exception):
    """Bad input to `stiffbench merge`, or conflicts without --prefer (the CLI prints it as one
    line, exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store_a", metavar="STORE_A", help="results folder or .sqlite file")
    parser.add_argument("store_b", metavar="STORE_B", help="results folder or .sqlite file")
    parser.add_argument("--into", required=True, metavar="STORE_C",
                        help="the merged store: a new folder (or .sqlite file), an empty folder or a store "
                             "without cells")
    parser.add_argument("--prefer", metavar="a|b",
                        help="resolve cells that differ between the stores with this store's row "
                             "(default: refuse to merge when any cell differs)")


@dataclass
class Decision:
    """Which row a key gets in the merged store: `side` "a" or "b"; `fallback` the other side
    when both rows are the same cell (its forecast may replace an unusable one)."""

    key: str
    side: str
    fallback: str | None = None


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)
    only_a: int = 0
    only_b: int = 0
    both: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (key, what differs)
    finished_over_unfinished: int = 0

    @property
    def total(self) -> int:
        return self.only_a + self.only_b + self.both


def main(args: argparse.Namespace, registry=None) -> int:
    """Merge; raises `MergeError` for bad input and for conflicts without --prefer."""
    from .export import loadable_metrics, registry_from_args, store_exists

    prefer = None if args.prefer is None else args.prefer.lower()
    if prefer not in (None, "a", "b"):
        raise MergeError(f"--prefer {args.prefer!r}: choose a or b")
    for name, location in (("STORE_A", args.store_a), ("STORE_B", args.store_b)):
        if not store_exists(location):
            raise MergeError(f"{name}: no stiffbench store at {location}")
    target = check_target(args.into)
    metrics = loadable_metrics(registry if registry is not None else registry_from_args(args))
    renamed = {old: new for metric in metrics for old, new in getattr(metric, "former_keys", {}).items()}

    store_a = _open(args.store_a)
    try:
        store_b = _open(args.store_b)
    except BaseException:
        store_a.close()
        raise
    try:
        rows = {"a": {r.key: r for r in store_a.records()}, "b": {r.key: r for r in store_b.records()}}
        plan = plan_merge(rows["a"], rows["b"], prefer, renamed)
        if plan.conflicts and prefer is None:
            raise MergeError(conflict_message(plan, rows, args.store_a, args.store_b))
        sources = {"a": store_a, "b": store_b}
        without_forecast = write_merged(plan, rows, sources, args.into, target)
    finally:
        store_a.close()
        store_b.close()

    if plan.conflicts:
        winner, loser = prefer.upper(), ("B" if prefer == "a" else "A")
        print(f"--prefer {prefer}: {len(plan.conflicts)} conflicting cell(s) overridden with {winner}'s row "
              f"({loser}'s dropped)")
    if plan.finished_over_unfinished:
        print(f"{plan.finished_over_unfinished} cell(s) unfinished (error, load_error) in one store take the other's "
              "finished row", file=sys.stderr)
    if without_forecast:
        print(f"{without_forecast} cell(s) copied without their forecast (missing or failing its checksum in the "
              "source store); they cannot be rescored", file=sys.stderr)
    print(f"merged {plan.total} cells (A: {plan.only_a}, B: {plan.only_b}, both: {plan.both}, "
          f"conflicts resolved: {len(plan.conflicts) if prefer else 0}) into {args.into}")
    return 0


# ----------------------------------------------------------------------------------------------
def plan_merge(rows_a: dict, rows_b: dict, prefer: str | None, renamed: dict[str, str] | None = None) -> Plan:
    """Decide each key's row (see the module docstring); conflicts are listed whether or not
    `prefer` resolves them."""
    from .store import FINAL_STATUSES

    renamed = renamed or {}
    plan = Plan()
    for key in sorted(set(rows_a) | set(rows_b)):
        a, b = rows_a.get(key), rows_b.get(key)
        if b is None:
            plan.only_a += 1
            plan.decisions.append(Decision(key, "a"))
            continue
        if a is None:
            plan.only_b += 1
            plan.decisions.append(Decision(key, "b"))
            continue
        plan.both += 1
        final_a, final_b = a.status in FINAL_STATUSES, b.status in FINAL_STATUSES
        if final_a != final_b:
            plan.finished_over_unfinished += 1
            plan.decisions.append(Decision(key, "a" if final_a else "b"))
            continue
        side = prefer or "a"
        if not final_a:  # both would be retried by the next run
            plan.decisions.append(Decision(key, side))
            continue
        what = difference(a, b, renamed)
        if what is None:
            plan.decisions.append(Decision(key, side, fallback="b" if side == "a" else "a"))
        else:
            plan.conflicts.append((key, what))
            plan.decisions.append(Decision(key, side))
    return plan


def difference(a, b, renamed: dict[str, str] | None = None) -> str | None:
    """What differs between two rows of one key that makes them different results (None: the
    same cell): status, seed, labels, then the first differing metric value."""
    if a.status != b.status:
        return f"{a.status} vs {b.status}"
    if a.seed != b.seed:
        return f"seed {a.seed} vs {b.seed}"
    if a.label != b.label:
        return f"label {a.label} vs {b.label}"
    sys_a, sys_b = _system_label(a), _system_label(b)
    if sys_a != sys_b:
        return f"system label {sys_a} vs {sys_b}"
    values_a, values_b = _metric_values(a, renamed or {}), _metric_values(b, renamed or {})
    for name in sorted(set(values_a) | set(values_b)):
        va, vb = values_a.get(name, _MISSING), values_b.get(name, _MISSING)
        if not _same_value(va, vb):
            return f"{name} {_show(va, vb)} vs {_show(vb, va)}"
    return None


def conflict_message(plan: Plan, rows: dict, name_a, name_b) -> str:
    """One line: how many cells conflict, the first few with what differs, how to resolve."""
    shown = []
    for key, what in plan.conflicts[:SHOWN_CONFLICTS]:
        record = rows["a"][key]
        shown.append(f"{key} ({_system_label(record)} x {record.label} seed {record.seed}: {what})")
    more = len(plan.conflicts) - len(shown)
    text = (f"{len(plan.conflicts)} cell(s) differ between {name_a} and {name_b}: {', '.join(shown)}"
            + (f" and {more} more" if more else "")
            + "; nothing written (rerun with --prefer a or --prefer b to keep one store's rows)")
    return " ".join(text.split("\n"))


def check_target(location) -> str:
    """How STORE_C will be written: "new" (a folder to create), "empty" (an empty folder),
    "in place" (a .sqlite path or a store without cells). Raises MergeError for a store with cells
    or a folder that holds other files."""
    path = Path(location)
    if path.suffix in (".sqlite", ".db"):
        if path.is_dir():
            raise MergeError(f"--into {location}: is a folder, not a .sqlite file")
        if path.exists():
            _refuse_if_cells(path, location)
        return "in place"
    if not path.exists():
        return "new"
    if not path.is_dir():
        raise MergeError(f"--into {location}: exists and is not a folder")
    db = path / "store.sqlite"
    if db.exists():
        _refuse_if_cells(db, location)
        return "in place"
    if any(path.iterdir()):
        raise MergeError(f"--into {location}: the folder is not empty and holds no stiffbench store; "
                        "merge into a new or empty folder")
    return "empty"


def write_merged(plan: Plan, rows: dict, sources: dict, location, target: str) -> int:
    """Write the planned rows and forecasts, and both stores' recorded runs, into the store at
    `location`; returns the number of cells copied without a forecast. A new or empty folder is
    built under a temporary name and renamed when complete."""
    from .store import Store

    final = Path(location)
    build = final
    if target in ("new", "empty"):
        build = final.parent / f".{final.name}.merging-{os.getpid()}"
        if build.exists():
            shutil.rmtree(build)
    try:
        without_forecast = 0
        with Store(build) as merged:
            for decision in plan.decisions:
                record = rows[decision.side][decision.key]
                forecast, lost = _forecast(sources[decision.side], record)
                if forecast is None and decision.fallback is not None:
                    other = rows[decision.fallback][decision.key]
                    forecast, lost_other = _forecast(sources[decision.fallback], other)
                    lost = lost or lost_other
                if forecast is None and lost:
                    without_forecast += 1
                merged.put(dataclasses.replace(record, forecast_sha256=None), forecast)
            for run in sorted(set(sources["a"].runs()) | set(sources["b"].runs()), key=lambda run: run.started):
                merged.add_run(run)
        if build != final:
            if final.exists():
                final.rmdir()  # checked empty above
            os.replace(build, final)
    except BaseException:
        if build != final:
            shutil.rmtree(build, ignore_errors=True)
        raise
    return without_forecast


# ----------------------------------------------------------------------------------------------
_MISSING = object()


def _forecast(store, record):
    """(forecast or None, whether the row had one that could not be read)."""
    if record.forecast_sha256 is None:
        return None, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a refused (non-npz) file counts as missing
        forecast = store.load_forecast(record)
    return forecast, forecast is None


def _open(location):
    from .store import Store, StoreError

    try:
        return Store(location)
    except StoreError as exc:
        raise MergeError(str(exc)) from None


def _refuse_if_cells(db: Path, location) -> None:
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM cells").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise MergeError(f"--into {location}: {db} exists and is not a readable stiffbench store ({exc})") from None
    if count:
        raise MergeError(f"--into {location}: already a store with {count} cell(s); merge into a new store")


def _system_label(record) -> str:
    return record.provenance.get("system_label") or record.system


def _metric_values(record, renamed: dict[str, str]) -> dict[str, object]:
    out = {}
    for window, values in record.metrics.items():
        for key, value in values.items():
            if key in renamed and renamed[key] in values:
                continue
            out[f"{window}/{renamed.get(key, key)}"] = value
    return out


def _same_value(a, b) -> bool:
    if a is b or a == b:
        return True
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _show(value, other) -> str:
    if value is _MISSING:
        return "absent"
    if value is None:
        return "null"
    if isinstance(value, float) and isinstance(other, float) and f"{value:.4g}" != f"{other:.4g}":
        return f"{value:.4g}"
    return repr(value)
