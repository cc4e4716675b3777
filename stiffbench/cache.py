"""On-disk cache of numpy arrays keyed by a configuration hash, with integrity checks.

Each entry is `<cache_dir>/<prefix>-<hash>.npz` plus a `.sha256` sidecar holding the file's
digest. A file whose digest does not match (truncated, corrupted) is recomputed, never trusted.
Nothing is unpickled: npz is loaded with allow_pickle=False, so a file that matches its digest
but is not a plain npz archive (a pickle, object arrays, a damaged archive) is refused with a
RuntimeWarning and treated as missing, never executed.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .hashing import config_hash, file_sha256


def default_cache_dir() -> Path:
    """$STIFFBENCH_CACHE, else ~/.cache/stiffbench."""
    env = os.environ.get("STIFFBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "stiffbench"


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write arrays to path atomically (temp file + rename) and return the file's SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return digest


def load_npz_checked(path: Path, sha256: str) -> dict[str, np.ndarray] | None:
    """The arrays in path if its digest equals sha256 and it is a plain npz archive, else None."""
    if not path.exists() or file_sha256(str(path)) != sha256:
        return None
    try:
        with open(path, "rb") as fh:  # ours to close, even when np.load fails half-way
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an archive")
            return {k: data[k] for k in data.files}
    except Exception as exc:  # numpy's parsers raise many kinds (ValueError, BadZipFile, TokenError, ...)
        detail = str(exc).strip().splitlines()
        reason = type(exc).__name__ + (f": {detail[0].split('. ')[0]}" if detail else "")
        warnings.warn(f"refused {path}: not a plain npz archive ({reason}); treated as missing", RuntimeWarning,
                      stacklevel=2)
        return None


def cached_arrays(
    cache_dir: str | os.PathLike | None,
    prefix: str,
    config: Any,
    compute: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Arrays for `config` from the cache, or `compute()` saved there (cache_dir None: default)."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{prefix}-{config_hash(config)}.npz"
    digest_path = path.with_suffix(".sha256")
    if digest_path.exists():
        arrays = load_npz_checked(path, digest_path.read_text().strip())
        if arrays is not None:
            return arrays
    arrays = compute()
    digest = save_npz_atomic(path, arrays)
    digest_path.write_text(digest + "\n")
    return arrays
