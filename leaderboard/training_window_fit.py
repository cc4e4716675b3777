"""How well each variant fits the training window [0, 14.68] ms: per-state RMSE of the stored
forecasts against the clean reference there (mean ± std over the ok seeds), beside the RMSE of
the noisy training observations themselves. A diagnostic for leaderboard/paper-report.md: a model whose
gates miss the clean trajectory inside the training window cannot extrapolate them.

    python leaderboard/training_window_fit.py --suite paper --store leaderboard/paper-results

Needs the stored forecasts (`<store>/forecasts/`, not committed): rerun the suite to recreate them.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from stiffbench.registry import Registry
from stiffbench.runner import expand_cells
from stiffbench.store import Store
from stiffbench.suite import load_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="paper")
    parser.add_argument("--store", default="leaderboard/paper-results")
    args = parser.parse_args()
    registry = Registry()
    cells = expand_cells(load_suite(args.suite), registry)
    errors: dict[str, list[np.ndarray]] = defaultdict(list)
    noise: dict[str, np.ndarray] = {}
    systems = {}
    with Store(args.store) as store:
        records = store.get_many(c.key for c in cells)
        for cell in cells:
            record = records.get(cell.key)
            forecast = store.load_forecast(record) if record is not None and record.status == "ok" else None
            if forecast is None:
                continue
            params_key = cell.system.params.model_dump_json()
            if params_key not in systems:
                system = cell.system.cls(cell.system.params)
                obs = system.training_task().observations
                clean = system.reference(float(obs.t[-1])).y[: len(obs.t)]
                systems[params_key] = (system.state_names, len(obs.t), clean, obs.y)
            names, n_train, clean, observed = systems[params_key]
            errors[cell.label].append(np.sqrt(((forecast[1][:n_train] - clean) ** 2).mean(axis=0)))
            noise[cell.label] = np.sqrt(((observed - clean) ** 2).mean(axis=0))
    if not errors:
        raise SystemExit("no ok cell with a stored forecast in this store")
    print("| variant | seeds | " + " | ".join(f"RMSE {n}" for n in names) + " | observation noise RMSE (" + ", ".join(names) + ") |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for label, rows in errors.items():
        rows_arr = np.array(rows)
        spread = rows_arr.std(0, ddof=1) if len(rows) > 1 else np.zeros(len(names))
        cols = " | ".join(f"{m:.3g} ± {s:.2g}" for m, s in zip(rows_arr.mean(0), spread))
        print(f"| {label} | {len(rows)} | {cols} | " + ", ".join(f"{v:.3g}" for v in noise[label]) + " |")


if __name__ == "__main__":
    main()
