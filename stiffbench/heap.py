"""Keep a long training process's resident memory from creeping up with heap fragmentation.

On Linux, PyTorch's CPU tensors come from glibc malloc, which serves blocks of at least its mmap
threshold (128 KiB at start) with their own mappings, unmapped when freed. glibc raises that
threshold, up to 32 MiB, each time such a block is freed, so after a few epochs every tensor of a
training batch comes from the heap instead; space freed between blocks still in use there stays
with the process. Left alone, a batch worker's resident memory grows for as long as it trains
(the paper suite's backsolve batch, 5 models over 5000 epochs with a cold inductor cache, grows
from 0.6 to 2.1 GB). `keep_large_blocks_mapped()` fixes the threshold at 128 KiB (`mallopt`, the same as
MALLOC_MMAP_THRESHOLD_=131072): large tensors are mapped and unmapped every time, which costs
page faults but leaves nothing behind. It changes no numbers. Elsewhere (no glibc) it does
nothing.
"""

from __future__ import annotations

import ctypes

MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks this large or larger get their own mapping (glibc's initial threshold)."""

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def keep_large_blocks_mapped(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for the rest of this process (no dynamic
    raising). True if set; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
