"""Training checkpoints: a long batch interrupted (session end, SIGKILL, power loss) resumes from
its last saved epoch on the next run instead of starting over.

A `Checkpointer` is handed to a method through `FitConfig.checkpoint`. The built-in methods'
training loop saves its whole state (network parameters and buffers, Adam's moments and step
counts, the loss history, the training seconds spent) at most every `every_s` seconds and loads
it when it starts. Continuing from a checkpoint runs the same operations on the same values as
the uninterrupted run, so the result is the same (bitwise on CPU).

The runner names a batch's checkpoint after the batch's cell keys (which include the seeds,
parameters, plugin versions and epochs), under `<store>/checkpoints/`, and deletes it once the
batch's results are stored. A checkpoint whose batch is never run again is left in place.
Writes go to a temporary file that is then renamed, so a crash mid-write leaves the previous
checkpoint intact; an unreadable checkpoint is ignored (training starts over) with a warning.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

DEFAULT_EVERY_S = 120.0


def checkpoint_path(folder: str | Path, cell_keys: Iterable[str]) -> Path:
    """Where the batch made of these cells keeps its checkpoint (order-independent)."""
    digest = hashlib.sha256("\n".join(sorted(cell_keys)).encode()).hexdigest()[:24]
    return Path(folder) / f"{digest}.pt"


@dataclass
class Checkpointer:
    """Saves and loads one batch's training state at `path`, at most every `every_s` seconds;
    `log` (if given) is told when training resumes from a checkpoint. `resumed_train_s`: the
    training seconds the loaded state had already cost (its "train_s"), for the batch's timing."""

    path: Path
    every_s: float = DEFAULT_EVERY_S
    log: Callable[[str], None] | None = None
    resumed_train_s: float = 0.0
    _last_save: float = field(default_factory=time.monotonic, repr=False)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it cannot be read."""
        import torch

        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # truncated or foreign file: start over rather than fail the batch
            warnings.warn(f"ignoring unreadable training checkpoint {self.path}: {exc!r}", RuntimeWarning)
            return None
        if self.log is not None:
            self.log(f"resuming from epoch {state.get('epoch', '?')} of checkpoint {self.path}")
        self.resumed_train_s = float(state.get("train_s", 0.0)) if isinstance(state, dict) else 0.0
        return state

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` atomically (temporary file + rename)."""
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        self._last_save = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
