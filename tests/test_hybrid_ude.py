"""hybrid_ude and the known-terms capability it requires (`stiffbench.structure`)."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stiffbench.api import FitConfig
from stiffbench.execute import task_for
from stiffbench.registry import Registry
from stiffbench.runner import expand_cells
from stiffbench.store import Store
from stiffbench.structure import HybridStructure, KnownTerms, Relaxation, StructuredTask, known_terms_of
from stiffbench.suite import Suite
from stiffbench.testing.conformance import check_method
from stiffbench.testing.toy import DampedOscillator
from stiffbench_methods.hybrid_ude import HybridUDE, Kinetics, _Objective
from stiffbench_systems.hh import HodgkinHuxley, vector_field
from stiffbench_systems.vdp import VanDerPol

REGISTRY = Registry()


def test_hybrid_ude_passes_the_conformance_kit(session_cache):
    check_method(HybridUDE, cache_dir=session_cache, strict=True)


@pytest.mark.parametrize("known, learned, message", [
    (("x",), {"x": Relaxation(("x",))}, "both known and learned: x"),
    (("x",), {}, "must split the system's states"),
    (("x",), {"v": Relaxation(("y",))}, "drivers that are not states: y"),
])
def test_a_structure_must_split_the_states_exactly(known, learned, message):
    with pytest.raises(ValueError, match=message):
        HybridStructure(("x", "v"), known, lambda t, z: z, learned)


def test_hh_declares_its_current_balance_known_through_an_entry_point():
    """HH offers KnownTerms without a method of its own: the `stiffbench.known_terms` entry point.
    Its known field is the system's dV/dt (checked against the numpy field at a hand-picked state);
    the gates are relaxations of V, bounded in [0, 1]. Van der Pol declares nothing."""
    hh = HodgkinHuxley()
    assert isinstance(hh, KnownTerms) and hh.lacks(KnownTerms) is None
    assert not isinstance(VanDerPol(), KnownTerms)
    structure = known_terms_of(hh)
    assert structure.known_states == ("V",)
    assert structure.learned == {g: Relaxation(("V",), (0.0, 1.0)) for g in ("n", "m", "h")}
    z = np.array([-40.0, 0.4, 0.2, 0.5])
    got = structure.known_field(0.0, torch.tensor(z))
    i_ion = 120 * 0.2**3 * 0.5 * (-40 - 50) + 36 * 0.4**4 * (-40 + 77) + 0.3 * (-40 + 54.387)
    assert got.shape == (1,) and float(got) == pytest.approx((10 - i_ion) / 1.0, rel=1e-12)
    assert float(got) == pytest.approx(vector_field(z, hh.params)[0], rel=1e-12)
    with pytest.raises(ValueError, match="declares no known terms"):
        known_terms_of(VanDerPol())


def test_the_runner_gives_the_structure_only_to_methods_that_require_it():
    hh = HodgkinHuxley({"t_train": (0.0, 1.0), "extrapolation": (1.0, 2.0), "long": (2.0, 3.0)})
    assert isinstance(task_for(hh, HybridUDE, None), StructuredTask)
    assert not isinstance(task_for(hh, REGISTRY.load("methods", "vanilla_node"), None), StructuredTask)


def test_open_loop_relaxation_is_exact_for_a_constant_steady_state_and_time_constant():
    """With every network output 0, a bounded state relaxes to x_inf = 0.5 with tau = tau_scale +
    step: x(t) = 0.5 + (x0 - 0.5) exp(-t / tau) at every observation time, to rounding."""
    system = DampedOscillator()
    task = StructuredTask.of(system.training_task(), HybridStructure(
        ("x", "v"), ("x",), lambda t, z: z[..., 1:2], {"v": Relaxation(("x",), (0.0, 1.0))}))
    params = HybridUDE.Params(tau_scale=0.3)
    kinetics = Kinetics(task.structure, task, params, [0, 1])
    for net in kinetics.nets:
        for w in [*net.weights, *net.biases]:
            w.data.zero_()
    x = _Objective(kinetics, task, params).learned_states().detach().numpy()
    tau, x0, t = 0.3 + system.params.dt, system.params.y0[1], task.observations.t
    expected = 0.5 + (x0 - 0.5) * np.exp(-(t - t[0]) / tau)
    assert x.shape == (2, len(t), 1)
    np.testing.assert_allclose(x[:, :, 0], np.stack([expected, expected]), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_learns_the_oscillator_whose_relaxation_form_is_exact(session_cache):
    """The toy oscillator's v' = (v_inf(x) - v) / tau is exact (v_inf = -5 x, tau = 2.5). Trained
    400 epochs on 6 time units (about two periods, so that each x is seen with several v), x
    re-anchored every 20 intervals, both seeds extrapolate the next 3 with a largest error below
    0.1 (the amplitude starts at 1) and under a fifth of the untrained model's (measured: 0.055
    and 0.064 against about 1.4)."""
    system = DampedOscillator({"t_train": 6.0, "t_end": 9.0})
    task = task_for(system, HybridUDE, session_cache)
    window = task.forecast_t >= system.params.t_train
    exact = system.exact(task.forecast_t[window])

    def error(epochs):
        model = HybridUDE({"tau_scale": 1.0, "segment": 20}).fit(task, [0, 1], FitConfig(epochs=epochs))
        return model, np.abs(model.forecast(task.forecast_t)[:, window] - exact).max(axis=(1, 2))

    model, trained = error(400)
    _, untrained = error(1)
    assert (trained < 0.1).all() and (trained < untrained / 5).all(), (trained, untrained)
    assert (model.loss_history[-1] < 1e-2 * model.loss_history[0]).all()


@pytest.mark.slow
def test_through_the_cli_hybrid_ude_runs_where_terms_are_declared_and_is_na_elsewhere(tmp_path):
    """fhn declares its known terms, vdp does not: one ok cell, one n/a cell naming KnownTerms;
    the hybrid cell's provenance records the declaration's code revision."""
    (tmp_path / "hybrid.toml").write_text(
        'seeds = [0]\nepochs = 3\n[[systems]]\nname = "fhn"\n[[systems]]\nname = "vdp"\n'
        '[[methods]]\nlabel = "hybrid"\nmethod = "hybrid_ude"\nparams = { hidden = [8] }\n')
    run = subprocess.run([sys.executable, "-m", "stiffbench.cli", "run", "--suite", "hybrid.toml", "--executor",
                          "serial", "--store", "store"], cwd=tmp_path, env=dict(os.environ), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    cells = {r.provenance["system_label"]: r for r in Store(tmp_path / "store").records()}
    assert cells["fhn"].status == "ok" and set(cells["fhn"].provenance["code_revision"]) == {
        "system", "method", "known_terms"}
    assert cells["vdp"].status == "n/a" and "requires KnownTerms" in cells["vdp"].reason


def test_a_hybrid_cell_depends_on_the_declaration_of_the_known_terms():
    suite = Suite.model_validate({"name": "t", "seeds": [0], "epochs": 1, "systems": [{"name": "hh"}],
                                  "methods": [{"label": "h", "method": "hybrid_ude"},
                                              {"label": "n", "method": "vanilla_node"}]})
    hybrid, node = expand_cells(suite, REGISTRY)
    assert set(hybrid.revision) == {"system", "method", "known_terms"} and len(hybrid.revision["known_terms"]) == 16
    assert set(node.revision) == {"system", "method"}


def test_the_gate_networks_bound_the_steady_state_and_floor_tau():
    """Whatever the network outputs, a gate's x_inf lies in (0, 1) and tau >= the solver step."""
    hh = HodgkinHuxley({"t_train": (0.0, 1.0), "extrapolation": (1.0, 2.0), "long": (2.0, 3.0)})
    task = task_for(hh, HybridUDE, None)
    kinetics = Kinetics(task.structure, task, HybridUDE.Params(), [0])
    for net in kinetics.nets:
        for w in net.weights:
            w.data.mul_(1e3)
    z = torch.tensor([[[v, 0.3, 0.1, 0.6] for v in np.linspace(-200, 200, 41)]], dtype=torch.float64)
    steady, tau = kinetics.steady_and_tau(z)
    assert ((steady >= 0) & (steady <= 1)).all() and (tau >= kinetics.step).all() and math.isclose(kinetics.step, 0.01)
