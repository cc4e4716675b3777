"""Training checkpoints: a long batch interrupted (a closed terminal, SIGKILL, power loss) resumes from
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
checkpoint intact.

Format: torch's zip format holding only tensors, dicts, lists, tuples, str, bytes, int, float,
bool and None, read with `torch.load(weights_only=True)`, which builds nothing else. A checkpoint
folder may be shared or copied with a results store, and unpickling a file can run any code in
it, so nothing richer is read. A numpy array is saved as `{"__ndarray__": tensor}` (same dtype,
same bytes) and loaded back as a numpy array; `save` refuses (TypeError) any other type, so every
checkpoint it writes can be loaded. A file that cannot be loaded this way (a pickle of anything
else, a truncated or foreign file) is refused, never executed: one line naming it goes to `log`
(a RuntimeWarning without one), and training starts over.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

DEFAULT_EVERY_S = 120.0
_NDARRAY = "__ndarray__"
_PRIMITIVES = (str, bytes, int, float, bool, type(None))
_CONTAINERS = (dict, OrderedDict, list, tuple)


def checkpoint_path(folder: str | Path, cell_keys: Iterable[str]) -> Path:
    """Where the batch made of these cells keeps its checkpoint (order-independent)."""
    digest = hashlib.sha256("\n".join(sorted(cell_keys)).encode()).hexdigest()[:24]
    return Path(folder) / f"{digest}.pt"


@dataclass
class Checkpointer:
    """Saves and loads one batch's training state at `path`, at most every `every_s` seconds;
    `log` (if given) is told when training resumes from a checkpoint or a file is refused.
    `resumed_train_s`: the training seconds the loaded state had already cost (its "train_s"),
    for the batch's timing."""

    path: Path
    every_s: float = DEFAULT_EVERY_S
    log: Callable[[str], None] | None = None
    resumed_train_s: float = 0.0
    _last_save: float = field(default_factory=time.monotonic, repr=False)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or the file is refused (see the module)."""
        import torch

        if not self.path.exists():
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on foreign pickles: the refusal says it all
                state = _decode(torch.load(self.path, map_location="cpu", weights_only=True))
            if type(state) is not dict:
                raise TypeError(f"holds a {type(state).__name__}, not a dict")
            resumed_train_s = float(state.get("train_s", 0.0))
        except Exception as exc:  # anything but a tensor-only checkpoint: start over rather than fail the batch
            message = (f"refused training checkpoint {self.path}: not a tensor-only checkpoint "
                       f"({_reason(exc)}); training starts over")
            if self.log is not None:
                self.log(message)
            else:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            return None
        if self.log is not None:
            self.log(f"resuming from epoch {state.get('epoch', '?')} of checkpoint {self.path}")
        self.resumed_train_s = resumed_train_s
        return state

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` atomically (temporary file + rename); TypeError if it holds anything but
        tensors, numpy arrays, dicts, lists, tuples and primitives."""
        import torch

        encoded = _encode(state)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save(encoded, tmp)
        os.replace(tmp, self.path)
        self._last_save = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _encode(obj: Any, where: str = "state") -> Any:
    """obj with each numpy array replaced by {_NDARRAY: tensor}; TypeError for what
    `torch.load(weights_only=True)` would not load (`where` names the offending item)."""
    import torch

    if type(obj) is np.ndarray:
        return {_NDARRAY: torch.from_numpy(np.array(obj))}  # a contiguous, writable copy
    if isinstance(obj, torch.Tensor) or type(obj) in _PRIMITIVES:
        return obj
    if type(obj) not in _CONTAINERS:
        raise TypeError(f"checkpoint {where} has type {type(obj).__name__}: a checkpoint holds only tensors, "
                        "numpy arrays, dicts, lists, tuples, str, bytes, int, float, bool and None")
    bad_key = next((k for k in obj if type(k) not in _PRIMITIVES), None) if isinstance(obj, dict) else None
    if bad_key is not None:
        raise TypeError(f"checkpoint {where} has a key of type {type(bad_key).__name__}: keys must be primitives")
    return _map(obj, lambda k, v: _encode(v, f"{where}[{k!r}]"))


def _decode(obj: Any) -> Any:
    """The inverse of `_encode`: each {_NDARRAY: tensor} becomes a numpy array again."""
    if type(obj) is dict and obj.keys() == {_NDARRAY}:
        return obj[_NDARRAY].numpy()
    return _map(obj, lambda k, v: _decode(v)) if type(obj) in _CONTAINERS else obj


def _map(obj: dict | list | tuple, fn: Callable[[Any, Any], Any]) -> dict | list | tuple:
    """A container of obj's type holding fn(key or index, item) for each item; an OrderedDict keeps
    its attributes (a module state_dict's `_metadata`, the versions `load_state_dict` reads)."""
    if isinstance(obj, dict):
        out = type(obj)((k, fn(k, v)) for k, v in obj.items())
        if type(obj) is OrderedDict:
            out.__dict__.update(vars(obj))
        return out
    return type(obj)(fn(i, v) for i, v in enumerate(obj))


def _reason(exc: Exception) -> str:
    """'Type: reason' on one line; for a file torch's weights-only loader refused, the reason is
    what follows "WeightsUnpickler error:" in its long message (e.g. "Unsupported global: ...")."""
    text = str(exc).rpartition("WeightsUnpickler error:")[2].strip()
    reason = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
