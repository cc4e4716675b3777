"""The candidate terms Theta(y) of the sindy method, whose sparse linear combination is the identified
vector field dy/dt = Xi Theta(y).

Two libraries, both in the states' own units:

- polynomial: every monomial of the states up to `degree`, constant included, enumerated (exponents
  and names) by pysindy's `PolynomialLibrary`;
- neuron: the polynomial terms, then the gate forms of a voltage-like state V (`gate_forms`), then each
  gate form times each other state. Hodgkin-Huxley's gate equations, dx/dt = alpha(V) (1 - x) -
  beta(V) x, are sums of such products when alpha and beta are among the forms.

Both are evaluated by one vectorised numpy function (`TermLibrary.__call__`), cheap enough for the
thousands of right-hand-side calls of the forecast's solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, exprel

try:
    import pysindy as ps
except ImportError as exc:  # an optional dependency: the message says how to install it
    raise ImportError("the sindy method needs pysindy: pip install 'stiffbench[sindy]'") from exc


def gate_forms(V: np.ndarray, scales: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The gate forms at voltages V (N,), (N, 2K + 2KC) for K scales k and C offsets c, in this order:

    exp(-V/k) and exp(V/k) for each k (an offset would only scale them);
    (V - c) / (1 - exp(-(V - c)/k)) for each k, then each c: the rational form of HH's alpha_n and
        alpha_m, its removable singularity at V = c (limit k) exact through `exprel`;
    1 / (1 + exp(-(V - c)/k)) for each k, then each c: the sigmoid form of HH's beta_h.
    """
    V = np.asarray(V, np.float64)[:, None]
    u = ((V[:, :, None] - offsets) / scales[:, None]).reshape(len(V), -1)  # (N, K*C), k-major
    k = np.repeat(scales, len(offsets))
    return np.concatenate([np.exp(-V / scales), np.exp(V / scales), k / exprel(-u), expit(u)], axis=1)


def gate_form_names(voltage: str, scales: np.ndarray, offsets: np.ndarray) -> list[str]:
    """The names of `gate_forms`' columns, e.g. exp(-V/80), (V+55)/(1-exp(-(V+55)/10))."""
    pairs = [(f"{k:g}", _shifted(voltage, c)) for k in scales for c in offsets]  # k-major, as gate_forms
    return ([f"exp(-{voltage}/{k:g})" for k in scales] + [f"exp({voltage}/{k:g})" for k in scales]
            + [f"{s}/(1-exp(-{s}/{k}))" for k, s in pairs] + [f"1/(1+exp(-{s}/{k}))" for k, s in pairs])


def _shifted(voltage: str, offset: float) -> str:
    """V - c written as "(V+55)" for c = -55, or "V" for c = 0."""
    return f"({voltage}{-offset:+g})" if offset else voltage


@dataclass(frozen=True)
class GateTerms:
    """The gate forms of state `voltage` (an index) with scales k and offsets c (`gate_forms`)."""

    voltage: int
    scales: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class TermLibrary:
    """Theta(y): the monomials with exponents `powers` (P, n), then, with `gates`, the gate forms
    and their products with every other state."""

    names: tuple[str, ...]
    powers: np.ndarray
    gates: GateTerms | None = None

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Theta at states y (N, n) -> (N, len(names)); non-finite where a term overflows."""
        y = np.asarray(y, np.float64)
        with np.errstate(all="ignore"):
            columns = [np.prod(y[:, None, :] ** self.powers, axis=2)]
            if self.gates is not None:
                g = self.gates
                forms = gate_forms(y[:, g.voltage], g.scales, g.offsets)
                others = np.delete(y, g.voltage, axis=1)
                columns += [forms, (forms[:, :, None] * others[:, None, :]).reshape(len(y), -1)]
            return np.concatenate(columns, axis=1)


def polynomial_library(states: tuple[str, ...], degree: int) -> TermLibrary:
    """Every monomial of the states up to `degree`, the constant first (pysindy's order and names)."""
    enumerated = ps.PolynomialLibrary(degree=degree, include_bias=True).fit(np.zeros((1, len(states))))
    return TermLibrary(tuple(enumerated.get_feature_names(list(states))), np.asarray(enumerated.powers_))


def neuron_library(states: tuple[str, ...], degree: int, voltage: str, scales, offsets) -> TermLibrary:
    """The polynomial library, then the gate forms of state `voltage` (scales k and offsets c in
    its unit), then each form times each other state (form-major)."""
    if voltage not in states:
        raise ValueError(f"voltage_state {voltage!r} is not a state of this system ({', '.join(states)})")
    polynomial = polynomial_library(states, degree)
    scales, offsets = np.asarray(scales, np.float64), np.asarray(offsets, np.float64)
    forms = gate_form_names(voltage, scales, offsets)
    others = [s for s in states if s != voltage]
    names = (*polynomial.names, *forms, *(f"{f} {s}" for f in forms for s in others))
    return TermLibrary(names, polynomial.powers, GateTerms(states.index(voltage), scales, offsets))
