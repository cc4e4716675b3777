"""A cell's identity, its key, and what makes a stored cell reusable.

The identity is what changes a cell's numbers: the system and its parameters, the method and its
parameters, both plugins' distributions and versions, the seed, the epochs, the device (CPU and
GPU round differently; "cpu" is left out, as the default), and the step budget of adaptive solves
(`max_solver_steps`: a forecast that runs out of steps is NaN from there on, so it changes the
result, not only whether there is one). Not part of it:

- labels: they name rows and sections;
- `performance` parameters (`compile`): they change speed, not results beyond rounding;
- the wall-clock budget `budget_s`: a cell that finished did so within its budget, and a larger
  one changes nothing about it. A cell that ended `timeout` is rerun when the suite's budget is
  larger than the one it ran under (`rerun_for_budget`);
- workers, executors, checkpoints, the store's location.

Parameters added to a plugin later stay out of the key while at their default (`params`), so
existing cells keep their keys. Cells stored under the first key rule (which hashed `budget_s`
and `compile` and no device) are found under that key and moved to their current one the first
time a run or a leaderboard asks for them (`adopt_legacy_cells`), with the move recorded in their
provenance; nothing is retrained.
"""

from __future__ import annotations

from typing import Iterable

from .hashing import config_hash
from .params import key_params

KEY_RULE = 2


def cell_key(system, method, seed: int, epochs: int, device: str, max_solver_steps: int | None) -> str:
    """The key of one cell (system and method: the runner's resolved plugins)."""
    return config_hash({
        **_plugins(system, method, performance=False),
        "seed": seed,
        "epochs": epochs,
        **({"device": device} if device != "cpu" else {}),
        **({"max_solver_steps": max_solver_steps} if max_solver_steps else {}),
    })


def legacy_key(system, method, seed: int, epochs: int, budget_s: float | None, max_solver_steps: int | None) -> str:
    """The key the same cell had under the first rule (budget_s and performance parameters hashed)."""
    return config_hash({
        **_plugins(system, method, performance=True),
        "seed": seed,
        "epochs": epochs,
        "budget_s": budget_s,
        **({"max_solver_steps": max_solver_steps} if max_solver_steps else {}),
    })


def _plugins(system, method, performance: bool) -> dict:
    def params(plugin) -> dict:
        return key_params(plugin.params, performance) if plugin.cls is not None else dict(plugin.entry.params)

    return {
        "system": system.name,
        "system_params": params(system),
        "system_plugin": [system.spec.distribution, system.spec.version],
        "method": method.name,
        "method_params": params(method),
        "method_plugin": [method.spec.distribution, method.spec.version],
    }


def adopt_legacy_cells(cells: Iterable, store, device: str) -> int:
    """Move the cells stored under their first-rule key (computed on `device`) to their current key;
    returns how many moved. Cells the store already holds under their current key are untouched."""
    cells = [c for c in cells if c.legacy_key]
    present = set(store.get_many(c.key for c in cells))
    missing = [c for c in cells if c.key not in present]
    legacy = store.get_many(c.legacy_key for c in missing)
    moved = 0
    for cell in missing:
        record = legacy.get(cell.legacy_key)
        if record is None or record.provenance.get("device", "cpu") != device:
            continue
        provenance = {**record.provenance, "key_history": [
            *record.provenance.get("key_history", []),
            f"{cell.legacy_key} (key rule 1: budget_s and compile hashed, no device) -> key rule {KEY_RULE}"]}
        store.rekey(cell.legacy_key, cell.key, provenance)
        moved += 1
    return moved


def rerun_for_budget(record, budget_s: float | None) -> bool:
    """Whether a stored `timeout` cell deserves another try under the suite's budget: it ran under a
    smaller one (None: unlimited)."""
    if record.status != "timeout":
        return False
    ran_under = record.provenance.get("budget_s")
    return ran_under is not None and (budget_s is None or budget_s > ran_under)
