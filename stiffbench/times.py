"""Small helpers on increasing time arrays."""

from __future__ import annotations

import numpy as np


def uniform_spacing(t) -> float:
    """The spacing of increasing, uniformly spaced times (ValueError otherwise; relative 1e-6)."""
    t = np.asarray(t, np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError("uniform spacing needs at least two times")
    h = (t[-1] - t[0]) / (len(t) - 1)
    if not h > 0 or np.max(np.abs(np.diff(t) - h)) > 1e-6 * h:
        raise ValueError("the times are not uniformly spaced and increasing")
    return float(h)


def is_uniform(t) -> bool:
    """Whether `t` holds at least two increasing, uniformly spaced times."""
    try:
        uniform_spacing(t)
    except ValueError:
        return False
    return True
