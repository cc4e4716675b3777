"""The largest absolute error of each state over an evaluation window (the L-infinity error)."""

import numpy as np
from stiffbench.api import AbstractMetric


class MaxAbsError(AbstractMetric):
    """max_abs_<state> = max over the window's samples of |pred - true|, in the state's unit.

    Where `rmse` averages over the window, this reports the worst sample: a forecast that is right
    except for one missed spike has a small RMSE and a max_abs as large as the spike.
    """

    name = "max_abs_error"
    description = "Per-state largest absolute error over the window's samples (L-infinity), in the state's unit."
    keys = ()  # the keys depend on the system's states: see result_keys
    rank = 11  # the column after rmse (rank 10)

    def result_keys(self, system):
        return tuple(f"max_abs_{s}" for s in system.state_names)

    def key_units(self, system):
        units = system.state_units()
        return {f"max_abs_{s}": units[s] for s in system.state_names if units.get(s)}

    def compute(self, pred, true, system):
        errors = np.max(np.abs(pred.y - true.y), axis=0)
        return {f"max_abs_{s}": float(e) for s, e in zip(true.state_names, errors)}
