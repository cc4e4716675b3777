"""Shared test set-up: one torch thread (small ops are overhead-bound) and a per-session cache
directory for reference trajectories, also seen by CLI subprocesses through the environment."""

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("stiffbench-cache")
    old = os.environ.get("STIFFBENCH_CACHE")
    os.environ["STIFFBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("STIFFBENCH_CACHE", None)
    else:
        os.environ["STIFFBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def hh_reference(session_cache):
    """The default HH system and its clean reference over the whole horizon (computed once)."""
    from stiffbench.registry import Registry

    system = Registry().load("systems", "hh")()
    return system, system.reference(system.horizon)
