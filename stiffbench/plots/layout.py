"""Where a suite's figures live, and the markdown links a leaderboard gives to those that exist.

    <figures dir>/<system label>/<variant label>-seed<N>.png   one cell's forecast figure
    <figures dir>/<system label>/cost.png                      cost against accuracy
    <figures dir>/<system label>/curves.png                    training curves

Labels are used as file names with any character other than letters, digits, ".", "_" and "-"
replaced by "_". The default figures dir of a suite is `<leaderboard dir>/figures/<suite>`.
Nothing here imports matplotlib.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

COST, CURVES = "cost.png", "curves.png"


def safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def default_figures_dir(leaderboard_dir: str | Path, suite_name: str) -> Path:
    return Path(leaderboard_dir) / "figures" / safe_name(suite_name)


def forecast_file(root: Path, system_label: str, label: str, seed: int) -> Path:
    return root / safe_name(system_label) / f"{safe_name(label)}-seed{seed}.png"


def summary_file(root: Path, system_label: str, name: str) -> Path:
    return root / safe_name(system_label) / name


def figure_links(root: Path, system_label: str, rows: Sequence[str], relative_to: Path) -> str | None:
    """One markdown line linking the section's figures that exist under `root` (paths relative to
    the folder `relative_to`, where the leaderboard is), or None when there is none."""
    def link(text: str, path: Path) -> str:
        return f"[{text}]({Path(os.path.relpath(path, relative_to)).as_posix()})"

    parts = [link(text, summary_file(root, system_label, name))
             for text, name in (("cost vs accuracy", COST), ("training curves", CURVES))
             if summary_file(root, system_label, name).is_file()]
    for label in rows:
        parts += [link(f"{label} (seed {seed})", path) for seed, path in forecast_files(root, system_label, label)]
    return f"Figures: {' · '.join(parts)}" if parts else None


def forecast_files(root: Path, system_label: str, label: str) -> list[tuple[int, Path]]:
    """(seed, path) of the row's forecast figures that exist, by seed."""
    pattern = re.compile(re.escape(safe_name(label)) + r"-seed(\d+)\.png")
    found = ((m, p) for p in (root / safe_name(system_label)).glob("*.png") if (m := pattern.fullmatch(p.name)))
    return sorted((int(m.group(1)), p) for m, p in found)
