"""`stiffbench export`: the cells of a suite (or of a whole store) as one flat table, CSV or Parquet.

    stiffbench export [--suite NAME|PATH] [--store DIR] --format csv|parquet --out FILE [--all]
                      [--device auto|cpu|cuda]

One row per cell. By default the cells of the suite (default `quick`, as for `run` and
`leaderboard`) that the store holds, in suite order (system x method x seed); cells of the suite
not yet in the store are left out and counted on stderr. `--all` exports every cell of the store
instead, whatever suite computed it, sorted by system label, label, seed. The device is part of a
cell's identity: a suite's export shows the cells computed on `--device` (default `auto`: cuda
when available, else cpu, as for `leaderboard`). Export adds, moves and rewrites no cell.

Columns, in this order:

- `key, system, system_label, method, label, seed, status, reason, train_s, forecast_s, created`:
  `system` and `method` are plugin names; `system_label` and `label` are the leaderboard's section
  and row names: the suite's with a suite, the stored ones with `--all` (the provenance's
  `system_label`, else the system name). Times in seconds; `created` is the ISO 8601 UTC time the
  cell was computed.
- one column per metric value, `<window>/<key>` (e.g. `extrapolation/rmse_V`, `long/spike_f1`),
  empty (NaN) where the value is undefined or the cell has no such metric (another system, a cell
  that did not finish `ok`). Keys a metric stored under a former name (`phase_drift_ms`, ...) are
  exported under the current one (`AbstractMetric.former_keys`).
- the provenance, flattened: `prov/<name>` for each scalar entry (`prov/device`, `prov/torch`,
  `prov/epochs`, ...), nested dicts joined with `/` (`prov/method_plugin/version`), and the
  parameter dicts (`system_params`, `method_params`, `metric_params`) and any list as one JSON
  string each (`prov/system_params`).

Parquet needs pyarrow (`pip install 'stiffbench[parquet]'`). Reading an export back with pandas,
e.g. the mean and std of the extrapolation RMSE of V over the ok seeds of each row:

    import pandas as pd
    df = pd.read_csv("cells.csv")          # or pd.read_parquet("cells.parquet")
    ok = df[df.status == "ok"]
    ok.groupby(["system_label", "label"])["extrapolation/rmse_V"].agg(["mean", "std", "count"])
    # the parameters of a row: json.loads(df.loc[0, "prov/method_params"])

Only the standard library is imported at import time (the CLI builds its parser without pandas).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable

FORMATS = ("csv", "parquet")
BASE_COLUMNS = ["key", "system", "system_label", "method", "label", "seed", "status", "reason", "train_s",
                "forecast_s", "created"]
PROVENANCE_PREFIX = "prov/"
PARQUET_FIX = "pip install 'stiffbench[parquet]'"


class ExportError(Exception):
    """Bad input to `stiffbench export` (the CLI prints it as one line, exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="quick", help="built-in suite name or TOML path whose cells are "
                        "exported (default: quick)")
    parser.add_argument("--store", default="stiffbench-results", help="results folder or .sqlite file")
    parser.add_argument("--format", required=True, metavar="csv|parquet", help="output format")
    parser.add_argument("--out", required=True, metavar="FILE", help="file to write")
    parser.add_argument("--all", action="store_true", help="every cell in the store instead of the suite's")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="whose cells of the suite to export (the device is part of a cell's identity; "
                             "default: auto, cuda when available, else cpu; cuda cells export without a GPU); "
                             "ignored with --all")


def main(args: argparse.Namespace, registry=None) -> int:
    """Write the table; raises `ExportError` for bad input. `registry`: the plugin
    registry to expand the suite with (default: the installed plugins, limited by --plugins)."""
    fmt = (args.format or "").lower()
    if fmt not in FORMATS:
        raise ExportError(f"--format {args.format!r}: choose csv or parquet")
    if fmt == "parquet" and not _has_pyarrow():
        raise ExportError(f"--format parquet needs pyarrow, which is not installed: {PARQUET_FIX}")
    registry = registry if registry is not None else registry_from_args(args)
    store = open_existing_store(args.store)
    try:
        if args.all:
            frame = export_frame(store.records(), metrics=loadable_metrics(registry))
            missing = 0
        else:
            device = _device(getattr(args, "device", "auto"))
            cells = _suite_cells(args.suite, registry, device)
            frame, missing = suite_frame(cells, store, loadable_metrics(registry), device)
    finally:
        store.close()
    if missing:
        print(f"{missing} cell(s) of suite {Path(args.suite).stem} are not in the store yet and are left out",
              file=sys.stderr)
    out = Path(args.out)
    try:
        if out.parent != Path(""):
            out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False, engine="pyarrow")
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    n_metrics = sum(1 for c in frame.columns if "/" in c and not c.startswith(PROVENANCE_PREFIX))
    print(f"exported {len(frame)} cell(s) ({n_metrics} metric columns) to {out}")
    return 0


# ----------------------------------------------------------------------------------------------
def export_frame(records: Iterable, labels: dict[str, tuple[str, str]] | None = None, metrics=()):
    """The export table of `records` (CellRecords), in the given order unless `labels` is None,
    in which case rows are sorted by (system_label, label, seed, key).

    labels : key -> (system_label, label) to show (a suite's names); None: the stored names.
    metrics: metric instances whose `former_keys` rename stored keys to current ones.
    """
    import pandas as pd

    renamed = {old: new for metric in metrics for old, new in getattr(metric, "former_keys", {}).items()}
    rows, metric_columns, prov_columns = [], {}, {}
    for record in records:
        if labels is None:
            system_label = record.provenance.get("system_label") or record.system
            label = record.label
        else:
            system_label, label = labels[record.key]
        row = {
            "key": record.key, "system": record.system, "system_label": system_label, "method": record.method,
            "label": label, "seed": record.seed, "status": record.status, "reason": record.reason,
            "train_s": _float(record.train_s), "forecast_s": _float(record.forecast_s), "created": record.created,
        }
        for column, value in current_metrics(record.metrics, renamed).items():
            metric_columns.setdefault(column, None)
            row[column] = value
        for column, value in flatten_provenance(record.provenance).items():
            prov_columns.setdefault(column, None)
            row[column] = value
        rows.append(row)
    if labels is None:
        rows.sort(key=lambda r: (r["system_label"], r["label"], r["seed"], r["key"]))
    columns = BASE_COLUMNS + list(metric_columns) + list(prov_columns)
    frame = pd.DataFrame(rows, columns=columns)
    for column in metric_columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in ("train_s", "forecast_s"):
        frame[column] = frame[column].astype(float)
    frame["seed"] = frame["seed"].astype("int64")
    for column in prov_columns:
        frame[column] = _uniform(frame[column])
    return frame


def suite_frame(cells, store, metrics=(), device: str = "cpu"):
    """(table, number of cells missing from the store) for runner.expand_cells' cells on `device`.

    A cell stored under the key of the first key rule (`Cell.legacy_key`, computed on `device`),
    which `run` and `leaderboard` move to its current key on first use, is exported as found,
    under that key: export does not move it."""
    records = store.get_many(c.key for c in cells)
    missing = [c for c in cells if c.key not in records and getattr(c, "legacy_key", "")]
    legacy = store.get_many(c.legacy_key for c in missing)
    found = []
    for cell in cells:
        record = records.get(cell.key)
        if record is None and getattr(cell, "legacy_key", ""):
            record = legacy.get(cell.legacy_key)
            if record is not None and record.provenance.get("device", "cpu") != device:
                record = None
        if record is not None:
            found.append((cell, record))
    labels = {record.key: (cell.system_label, cell.label) for cell, record in found}
    return export_frame([record for _, record in found], labels, metrics), len(cells) - len(found)


def current_metrics(metrics: dict, renamed: dict[str, str]) -> dict[str, float]:
    """{"<window>/<key>": value (NaN when undefined)} with former keys under their current names;
    a current key the record also holds wins over its former name."""
    out: dict[str, float] = {}
    for window, values in metrics.items():
        for key, value in values.items():
            if key in renamed and renamed[key] in values:
                continue
            out[f"{window}/{renamed.get(key, key)}"] = _float(value)
    return out


def flatten_provenance(provenance: dict, prefix: str = PROVENANCE_PREFIX) -> dict[str, Any]:
    """Scalars as `prov/<name>`, nested dicts joined with `/`; parameter dicts (`*_params`) and
    lists as JSON strings."""
    out: dict[str, Any] = {}
    for name, value in provenance.items():
        column = f"{prefix}{name}"
        if isinstance(value, dict) and not name.endswith("_params"):
            out.update(flatten_provenance(value, column + "/"))
        elif isinstance(value, (dict, list, tuple)):
            out[column] = json.dumps(value, sort_keys=True)
        else:
            out[column] = value
    return out


def open_existing_store(location):
    """The Store at `location`, which must exist (a store is never created by reading it)."""
    from .store import Store, StoreError

    if not store_exists(location):
        raise ExportError(f"no stiffbench store at {location}")
    try:
        return Store(location)
    except StoreError as exc:
        raise ExportError(str(exc)) from None


def store_exists(location) -> bool:
    """Whether `location` is an existing store: a .sqlite/.db file, or a folder holding store.sqlite."""
    path = Path(location)
    if path.suffix in (".sqlite", ".db"):
        return path.is_file()
    return (path / "store.sqlite").is_file()


def loadable_metrics(registry) -> list:
    """Every metric the registry can load, default parameters (for `former_keys`)."""
    from .registry import PluginError
    from .runner import metric_instances

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return metric_instances(registry)
    except PluginError:  # e.g. two metrics with one name: export under the stored names
        return []



def registry_from_args(args):
    """The plugin registry, limited to --plugins when the CLI passes it."""
    from .registry import Registry

    plugins = getattr(args, "plugins", None)
    allowed = None if plugins is None else [n.strip() for n in plugins.split(",") if n.strip()]
    return Registry(allowed=allowed)



def _device(choice: str) -> str:
    """"auto": cuda when a CUDA device is visible, else cpu. An explicit choice is taken as it is:
    exporting cells computed on a GPU needs none."""
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _suite_cells(suite_name: str, registry, device: str):
    from .registry import PluginError
    from .runner import expand_cells
    from .suite import SuiteError, load_suite

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecations are reported by run / leaderboard
            return expand_cells(load_suite(suite_name), registry, device)
    except (SuiteError, PluginError) as exc:
        raise ExportError(str(exc)) from None


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def _float(value) -> float:
    if value is None or isinstance(value, bool):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _uniform(column):
    """A provenance column as one type, so Parquet can store it: numbers stay numbers (ints with
    gaps become floats), strings stay strings; a column mixing kinds becomes strings (JSON for
    non-strings)."""
    values = [v for v in column if v is not None and not (isinstance(v, float) and v != v)]
    kinds = {"bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else
             "str" if isinstance(v, str) else "other" for v in values}
    if len(kinds) <= 1 and kinds != {"other"}:
        return column
    return column.map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
