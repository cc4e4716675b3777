"""pytest-benchmark suite: solver cost, one training epoch per built-in method, reference generation.

In the normal test run (`addopts = --benchmark-disable`) every benchmark body runs once, as a smoke
test that also checks its result. To time them for real (one torch thread, results saved under
.benchmarks/ with the machine info below) run:

    pytest tests/bench --benchmark-enable --benchmark-autosave --benchmark-group-by=group

and compare saved runs with `pytest-benchmark compare`. Benchmarks that need torch.compile run only
then (they would spend most of a smoke run compiling).
"""

import platform

import pytest
import torch

import stiffbench


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["stiffbench"] = stiffbench.__version__
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["device"] = "cpu"
    machine_info["cpu_model"] = platform.processor() or platform.machine()


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
