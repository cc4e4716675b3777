"""Training curves: each cell's loss per epoch, as its method's model reports it, thinned for storage.

A model may expose (see `AbstractModel`):

    loss_history : array (epochs run, n_models), the training loss of each model per epoch
    loss_terms   : {term name: array (epochs run, n_models)}, the loss's parts (optional)

Models without `loss_history` have no curve. A curve is stored as {"epoch": [...], "loss": [...],
<term>: [...]} with 1-based epoch numbers and non-finite values as None (JSON has no NaN); runs
longer than `MAX_POINTS` epochs keep `MAX_POINTS` evenly spaced epochs, the first and last included,
which is enough to draw the curve and keeps a store of thousands of cells small.
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 1000


def kept_epochs(n_epochs: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """0-based indices of the epochs kept: all of them, or `max_points` evenly spaced ones
    including the first and the last."""
    if n_epochs <= max_points:
        return np.arange(n_epochs)
    return np.unique(np.linspace(0, n_epochs - 1, max_points).round().astype(int))


def training_curves(model, n_models: int) -> list[dict[str, list] | None]:
    """One curve per model of a batch (None for all when the model reports no usable history)."""
    history = _as_table(getattr(model, "loss_history", None), n_models)
    if history is None:
        return [None] * n_models
    terms = {name: _as_table(values, n_models) for name, values in (getattr(model, "loss_terms", None) or {}).items()}
    terms = {name: values for name, values in terms.items() if values is not None and len(values) == len(history)}
    keep = kept_epochs(len(history))
    columns = {"loss": history, **terms}
    return [{"epoch": (keep + 1).tolist(), **{name: _json_floats(values[keep, i]) for name, values in columns.items()}}
            for i in range(n_models)]


def _as_table(values, n_models: int) -> np.ndarray | None:
    """values as a float (epochs, n_models) array, or None when it is not one."""
    try:
        table = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if table.ndim == 1 and n_models == 1:
        table = table[:, None]
    if table.ndim != 2 or table.shape[1] != n_models or len(table) == 0:
        return None
    return table


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]
