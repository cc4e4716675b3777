"""stiffbench.heap: with the mmap threshold fixed, freed large blocks leave the process; with
glibc's dynamic threshold a freed mapped block raises it and later blocks of that size stay in
the heap behind one still in use. Each case runs in a fresh interpreter (the setting is
process-wide and cannot be undone)."""

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, sys
from stiffbench.heap import keep_large_blocks_mapped
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "fixed":
    assert keep_large_blocks_mapped()
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
size = 1 << 20                       # 1 MiB blocks, above the initial 128 KiB threshold
libc.free(libc.malloc(size))         # glibc's dynamic rule raises the threshold past 1 MiB here
blocks = [libc.malloc(size) for _ in range(200)]
for b in blocks:
    libc.memset(b, 1, size)          # touch every page: 200 MiB resident
before = rss_mib()
for b in blocks[:-1]:                # free all but the last, which pins the heap's top
    libc.free(b)
print(before - rss_mib())
"""


def released_mib(mode: str) -> float:
    # without malloc settings from the environment: any of them turns glibc's dynamic threshold off
    # (dask.distributed, tested elsewhere in this run, puts MALLOC_TRIM_THRESHOLD_ in os.environ)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_fixed_threshold_returns_freed_large_blocks_and_the_default_does_not():
    assert released_mib("fixed") > 150  # 199 MiB freed, as unmapped blocks
    assert released_mib("dynamic") < 50  # the same blocks kept in the heap below the last one
