"""Multiple shooting: segmentation, the batched Heun over segments, parameter checks, and a fit."""

import numpy as np
import pytest
import torch

from stiffbench.api import BatchMember, FitConfig
from stiffbench.registry import Registry
from stiffbench_methods.multiple_shooting import (
    MultipleShootingNODE,
    MultipleShootingParams,
    growing_stages,
    heun_segments,
    segment_starts,
)


def test_segment_starts_by_hand():
    assert segment_starts(31, 10).tolist() == [0, 10, 20]  # 30 intervals: three segments
    assert segment_starts(26, 10).tolist() == [0, 10, 15]  # the last segment moved back to end at 25
    assert segment_starts(11, 10).tolist() == [0]
    with pytest.raises(ValueError, match="group_size 10 exceeds the 5 observation intervals"):
        segment_starts(6, 10)


def test_heun_segments_by_hand():
    # du/dt = -u: one Heun step of size h multiplies u by 1 - h + h^2 / 2; segments have their own steps
    u0 = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)  # (B=1, K=2, n=1)
    steps = torch.tensor([[0.1, 0.1], [0.2, 0.4]], dtype=torch.float64)  # (K, G=2)
    out = heun_segments(lambda t, u: -u, u0, torch.zeros(2, dtype=torch.float64), steps, substeps=1)
    g = lambda h: 1 - h + h * h / 2  # noqa: E731
    expected = [[1.0, g(0.1), g(0.1) ** 2], [2.0, 2 * g(0.2), 2 * g(0.2) * g(0.4)]]
    assert out.shape == (1, 2, 3, 1)
    np.testing.assert_allclose(out[0, :, :, 0].numpy(), expected, rtol=1e-15)
    # two substeps of h / 2 each
    two = heun_segments(lambda t, u: -u, u0, torch.zeros(2, dtype=torch.float64), steps, substeps=2)
    assert two[0, 0, 1, 0].item() == pytest.approx(g(0.05) ** 2, rel=1e-15)


def test_heun_segments_pass_each_segment_its_own_time():
    seen = []
    heun_segments(lambda t, u: seen.append(t.clone()) or torch.zeros_like(u), torch.zeros(1, 2, 1),
                  torch.tensor([0.0, 5.0]), torch.tensor([[1.0], [2.0]]), substeps=1)
    assert [s.tolist() for s in seen] == [[0.0, 5.0], [1.0, 7.0]]  # k1 at the start, k2 at the step's end


def test_adaptive_solvers_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="multiple_shooting integrates its segments with heun and backprop"):
        MultipleShootingParams(solver="tsit5")


@pytest.mark.slow
def test_learns_the_fhn_limit_cycle_from_three_periods(session_cache):
    """Where single shooting flattens out (the vanilla neural ODE's forecast leaves the cycle within
    a period), multiple shooting of an autonomous field keeps the period within 5 %."""
    from stiffbench.metrics.oscillation import PeriodError

    system = Registry().load("systems", "fhn")({"t_train": 120.0, "extrapolation": (120.0, 360.0), "long": (360.0, 2000.0)})
    task = system.training_task(session_cache)
    params = MultipleShootingParams(autonomous=True)
    model = MultipleShootingNODE.fit_batch([BatchMember(params, task, 0)], FitConfig(epochs=1000))
    reference = system.reference(360.0, session_cache)
    forecast = model.forecast(reference.t)[0]
    window = reference.window(120.0, 360.0)
    pred = type(window)(window.t, forecast[reference.t >= 120.0 - 1e-9], window.state_names)
    error = PeriodError().compute(pred, window, system)["period_error"]
    assert error < 0.05, error


def test_growing_stages_by_hand():
    """40 intervals from segments of 10: 10, 20, then single shooting; without growth one stage."""
    stages = growing_stages(41, 10, grow_every=5)
    assert [(starts.tolist(), size) for starts, size in stages] == [([0, 10, 20, 30], 10), ([0, 20], 20), ([0], 40)]
    assert [(s.tolist(), g) for s, g in growing_stages(41, 10, None)] == [([0, 10, 20, 30], 10)]
    # 25 intervals: the moved-back last start of each stage, then one segment
    assert [(s.tolist(), g) for s, g in growing_stages(26, 10, 1)] == [([0, 10, 15], 10), ([0, 5], 20), ([0], 25)]


def test_growing_segments_switch_stage_every_grow_every_epochs(session_cache):
    """The first epochs (stage 0) are the fixed segmentation's loss exactly; after grow_every epochs
    the loss is another (longer segments); the free states of every stage's starts are parameters."""
    system = Registry().load("systems", "fhn")({"t_train": 40.0, "extrapolation": (40.0, 80.0), "long": (80.0, 120.0)})
    task = system.training_task(session_cache)
    fixed = MultipleShootingNODE.objective([BatchMember(MultipleShootingParams(group_size=100), task, 0)], "cpu", False)
    grow = MultipleShootingNODE.objective(
        [BatchMember(MultipleShootingParams(group_size=100, grow_every=2), task, 0)], "cpu", False)
    # 400 intervals: stages of 100, 200 and 400 intervals; free states at nodes 100, 200, 300
    assert grow[0].starts.shape[1] == 3 and fixed[0].starts.shape[1] == 3
    values_fixed = [fixed[2]().item() for _ in range(3)]
    values_grow = [grow[2]().item() for _ in range(3)]
    assert values_grow[:2] == values_fixed[:2] and values_grow[2] != values_fixed[2]
    assert int(grow[0].epochs_done) == 3
