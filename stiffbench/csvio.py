"""Trajectories as CSV: a column `t` and one column per state, one row per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .api import Trajectory


class CSVError(ValueError):
    """A CSV that cannot be read as a trajectory; the message is one line naming the problem."""


def write_trajectory(path: Path, trajectory: Trajectory) -> None:
    """Write columns t,<states> with 12 significant digits (round-trips the 0.01 grid exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(trajectory.y, columns=list(trajectory.state_names))
    frame.insert(0, "t", trajectory.t)
    frame.to_csv(path, index=False, float_format="%.12g")


def read_trajectory(path: Path, state_names: tuple[str, ...], finite: bool = False) -> Trajectory:
    """Read a CSV with columns t and `state_names` (extra columns ignored).

    NaN (written as "nan" or, as pandas does, as an empty cell) and Inf are read as such: a
    diverged forecast is a valid input. With `finite=True` they are errors (a reference must be
    finite). Non-numeric text is always an error.
    """
    if not path.is_file():
        raise CSVError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CSVError(f"{path}: not a readable CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    columns = ["t", *state_names]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CSVError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
    if len(frame) == 0:
        raise CSVError(f"{path}: no data rows")
    values = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        text = frame[column].str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        bad = numeric.isna() & ~text.str.lower().isin(["", "nan", "-nan", "+nan"])
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise CSVError(f"{path}: non-numeric value {frame[column].iloc[row]!r} in column {column}, row {row + 2}")
        values[:, j] = numeric.to_numpy(dtype=float)
    if finite and not np.isfinite(values[:, 1:]).all():
        row = int(np.argmax(~np.isfinite(values[:, 1:]).all(axis=1)))
        raise CSVError(f"{path}: NaN, Inf or empty value in row {row + 2}; a reference must be finite")
    t = values[:, 0]
    if not np.isfinite(t).all() or (len(t) > 1 and not (np.diff(t) > 0).all()):
        raise CSVError(f"{path}: column t must be finite and strictly increasing")
    return Trajectory(t, values[:, 1:], tuple(state_names))


def same_grid(pred: Trajectory, ref: Trajectory) -> None:
    """Raise CSVError unless both trajectories are sampled at the same times (1e-9 relative)."""
    tol = 1e-9 * max(1.0, float(np.abs(ref.t).max()))
    if len(pred.t) != len(ref.t) or not np.allclose(pred.t, ref.t, rtol=0, atol=tol):
        raise CSVError(
            f"prediction and reference grids differ ({len(pred.t)} vs {len(ref.t)} samples, "
            f"[{pred.t[0]:g}, {pred.t[-1]:g}] vs [{ref.t[0]:g}, {ref.t[-1]:g}])"
        )
