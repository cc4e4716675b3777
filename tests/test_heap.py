"""stiffbench.heap: with the mmap threshold fixed, freed large blocks are unmapped (returned to the
system); with glibc's dynamic threshold a freed mapped block raises it and later blocks of that
size come from the heap, where they stay, free but held, behind one still in use. Each case runs
in a fresh interpreter (the setting is process-wide and cannot be undone). The test reads glibc's
own accounting (mallinfo2), not the resident set size, so a loaded machine (swapping, reclaim)
cannot change its outcome."""

import os
import platform
import subprocess
import sys

import pytest

GLIBC = """
import ctypes

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
"""

SCRIPT = GLIBC + """
import sys
from stiffbench.heap import keep_large_blocks_mapped
if sys.argv[1] == "fixed":
    assert keep_large_blocks_mapped()
MIB = 2**20
libc.free(libc.malloc(MIB))          # glibc's dynamic rule raises the threshold past 1 MiB here
blocks = [libc.malloc(MIB) for _ in range(200)]
before = libc.mallinfo2()
for b in blocks[:-1]:                # free all but the last, which pins the heap's top
    libc.free(b)
after = libc.mallinfo2()
print((before.hblkhd - after.hblkhd) / MIB, after.fordblks / MIB)  # unmapped, and free but held in the heap
"""


def freed_mib(mode: str) -> tuple[float, float]:
    """(MiB unmapped, MiB free but kept in the heap) after freeing 199 of 200 1-MiB blocks."""
    # without malloc settings from the environment: any of them turns glibc's dynamic threshold off
    # (dask.distributed, tested elsewhere in this run, puts MALLOC_TRIM_THRESHOLD_ in os.environ)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env)
    unmapped, held = map(float, out.stdout.split())
    return unmapped, held


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                    reason="glibc 2.33+ only (mallinfo2)")
def test_fixed_threshold_returns_freed_large_blocks_and_the_default_does_not():
    unmapped, held = freed_mib("fixed")
    assert unmapped >= 199 and held < 10  # every freed block went back to the system
    unmapped, held = freed_mib("dynamic")
    assert unmapped < 1 and held >= 199  # the same blocks kept in the heap below the last one


SERIAL_RUN = GLIBC + """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
import torch
from stiffbench.registry import PluginSpec, Registry
from stiffbench.runner import Runner
from stiffbench.store import Store
from stiffbench.suite import Suite
torch.set_num_threads(2)
registry = Registry([
    PluginSpec("systems", "damped_oscillator", "stiffbench.testing.toy:DampedOscillator", "stiffbench", "0"),
    PluginSpec("methods", "exact", "fake_plugins:Exact", "fakes", "1"),
    PluginSpec("metrics", "rmse", "stiffbench.metrics.rmse:RMSE", "stiffbench", "0"),
])
suite = Suite(name="s", seeds=[0], epochs=1, systems=[{"name": "damped_oscillator"}],
              methods=[{"label": "a", "method": "exact"}])
with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
    report = Runner(registry, store).run(suite)       # the serial executor: batches run in this process
    assert [r.status for r in report.records] == ["ok"]
MIB = 2**20
libc.free(libc.malloc(4 * MIB))      # with glibc's dynamic rule this raises the threshold past 4 MiB
before = libc.mallinfo2().hblkhd
block = libc.malloc(4 * MIB)
print(torch.get_num_threads(), (libc.mallinfo2().hblkhd - before) / MIB)  # 0 MiB mapped: the rule is still on
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                    reason="glibc 2.33+ only (mallinfo2)")
def test_a_serial_run_leaves_the_calling_process_as_it_was():
    """The serial executor runs batches in the caller: afterwards torch's thread count is the
    caller's again, and glibc's dynamic mmap threshold is still in force (a freed mapped block
    raised it, so the next block of that size comes from the heap, not from a new mapping)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", SERIAL_RUN, tests_dir], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    threads, mapped = out.stdout.split()
    assert int(threads) == 2 and float(mapped) == 0.0
