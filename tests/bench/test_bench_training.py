"""One training epoch of each built-in method on the HH task (1469 observations, 5 seeds, float32,
eager), and stiffbench's compiled path on the paper suite's 25-model Heun batch (timed runs only)."""

from dataclasses import replace

import numpy as np
import pytest

from stiffbench.api import FitConfig
from stiffbench.bench import paper_members
from stiffbench_methods.pinode_sr import PINODESR
from stiffbench_methods.vanilla_node import VanillaNODE
from stiffbench_methods.vanilla_pinn import VanillaPINN
from stiffbench_systems.hh import HodgkinHuxley

SEEDS = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def hh_task():
    system = HodgkinHuxley()
    return replace(system.training_task(), physics=system.torch_vector_field())


@pytest.mark.benchmark(group="training-epoch")
@pytest.mark.parametrize("method_cls", [VanillaNODE, PINODESR, VanillaPINN], ids=lambda c: c.name)
def test_one_epoch(benchmark, method_cls, hh_task):
    method = method_cls({"compile": False} if method_cls is not VanillaPINN else {})
    model = benchmark(method.fit, hh_task, SEEDS, FitConfig(epochs=1))
    assert model.loss_history.shape == (1, len(SEEDS)) and np.isfinite(model.loss_history).all()


@pytest.mark.benchmark(group="training-epoch")
def test_one_epoch_paper_batch_compiled(benchmark):
    if benchmark.disabled:
        pytest.skip("compiles for ~30 s: timed runs only (--benchmark-enable)")
    members = paper_members(25, "float32", True, None)
    model = benchmark.pedantic(PINODESR.fit_batch, (members, FitConfig(epochs=1)), rounds=3, warmup_rounds=1)
    assert model.loss_history.shape == (1, 25) and np.isfinite(model.loss_history).all()
