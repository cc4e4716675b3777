"""The known terms of the built-in neuron models (`stiffbench.structure`), declared through the
`stiffbench.known_terms` entry points: each model's voltage-like equation is known physics (the
current balance, given all states), and every other state relaxes towards a steady state with a
time constant, both functions of the voltage-like state, that a hybrid method learns.

    Hodgkin–Huxley  dx/dt = (x_inf(V) - x) / tau_x(V),  x in {n, m, h}, gates in [0, 1]
    Morris–Lecar    dw/dt = (w_inf(V) - w) / tau(V),     tau = tau_w(V) / phi, a gate in [0, 1]
    FitzHugh–Nagumo dw/dt = (w_inf(v) - w) / tau,        w_inf = (v + a) / b, tau = 1 / (eps b)
    Hindmarsh–Rose  dy/dt = (y_inf(x) - y) / 1,          y_inf = c - d x^2
                    dz/dt = (z_inf(x) - z) / (1 / r),    z_inf = s (x - x_R)

Each form is exact for its model (HH: x_inf = alpha / (alpha + beta), tau = 1 / (alpha + beta)).
A gate's steady state is bounded by the state's declared bounds; the others are unbounded.
"""

from __future__ import annotations

from stiffbench.api import AbstractSystem
from stiffbench.structure import HybridStructure, Relaxation


def voltage_driven(system: AbstractSystem, voltage: str) -> HybridStructure:
    """`voltage`'s equation known (the system's own), every other state a relaxation driven by it,
    bounded where the system bounds the state."""
    field = system.torch_vector_field()
    i = system.state_names.index(voltage)
    bounds = getattr(system, "state_bounds", {}) or {}
    learned = {name: Relaxation((voltage,), bounds.get(name)) for name in system.state_names if name != voltage}
    return HybridStructure(system.state_names, (voltage,), lambda t, z: field(t, z)[..., i : i + 1], learned)


def hodgkin_huxley(system: AbstractSystem) -> HybridStructure:
    """HH: the current balance known; the gates n, m, h learned as functions of V."""
    return voltage_driven(system, "V")


def morris_lecar(system: AbstractSystem) -> HybridStructure:
    """Morris–Lecar: the current balance known (with m = m_inf(V)); w learned as a function of V."""
    return voltage_driven(system, "V")


def fitzhugh_nagumo(system: AbstractSystem) -> HybridStructure:
    """FitzHugh–Nagumo: the cubic v equation known; the recovery w learned as a function of v."""
    return voltage_driven(system, "v")


def hindmarsh_rose(system: AbstractSystem) -> HybridStructure:
    """Hindmarsh–Rose: the x equation known; y and z learned as functions of x."""
    return voltage_driven(system, "x")
