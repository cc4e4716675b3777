"""Known terms: a system's declaration of which parts of its vector field are known physics and
which are left to learn, for structured hybrid methods (universal differential equations,
Rackauckas et al. 2020, arXiv:2001.04385).

A `HybridStructure` splits the states in two:

- known states, whose derivatives the system gives as code (`known_field`: e.g. Hodgkin–Huxley's
  current balance C_m dV/dt = I - sum of ionic currents, given the gates);
- learned states, each a first-order relaxation dx/dt = (x_inf(d) - x) / tau(d) towards a
  steady state x_inf, with time constant tau, both unknown functions of its driver states d
  (HH's gates: x_inf(V), tau_x(V)); a gate's x_inf lies in its bounds, so the gate does too.

A system offers it (the `KnownTerms` capability) in one of two ways:

- a `known_terms()` method returning its `HybridStructure`;
- an entry point in the group `stiffbench.known_terms` named after the system, whose object is
  a function `(system instance) -> HybridStructure`: a declaration that ships beside the
  system's code, e.g. from a package declaring structure for a system it does not own.

Methods that require `KnownTerms` get the structure as `task.structure` (a `StructuredTask`).
"""

from __future__ import annotations

import functools
import importlib.metadata as md
from abc import ABCMeta
from dataclasses import dataclass, field, fields
from typing import Mapping

from .api import AbstractSystem, TrainingTask, VectorField
from .revision import code_revision

ENTRY_POINT_GROUP = "stiffbench.known_terms"


@dataclass(frozen=True)
class Relaxation:
    """A learned state's form: dx/dt = (x_inf(d) - x) / tau(d), d = the `drivers` states.

    bounds : (lower, upper) that x_inf stays strictly within (a gate: (0, 1)); None: unbounded
    """

    drivers: tuple[str, ...]
    bounds: tuple[float, float] | None = None

    def __post_init__(self):
        if not self.drivers:
            raise ValueError("a relaxation needs at least one driver state")
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"relaxation bounds must be (lower, upper) with lower < upper, got {self.bounds}")


@dataclass(frozen=True)
class HybridStructure:
    """Which states' equations are known and which are learned, for a system of `state_names`.

    known_states : the states whose derivatives `known_field` gives
    known_field  : f(t, z) -> the known states' derivatives, shape (..., len(known_states)), for the
                   full state z (..., n) in the system's order; torch, any float dtype, batched
                   over leading dimensions, t a scalar or broadcasting against z[..., 0]
    learned      : {state: Relaxation} for every other state
    """

    state_names: tuple[str, ...]
    known_states: tuple[str, ...]
    known_field: VectorField
    learned: Mapping[str, Relaxation] = field(default_factory=dict)

    def __post_init__(self):
        known, learned, names = set(self.known_states), set(self.learned), set(self.state_names)
        if known & learned:
            raise ValueError(f"states both known and learned: {', '.join(sorted(known & learned))}")
        if known | learned != names or len(self.known_states) + len(self.learned) != len(self.state_names):
            raise ValueError(f"known ({', '.join(self.known_states)}) and learned ({', '.join(self.learned)}) states "
                             f"must split the system's states ({', '.join(self.state_names)}) exactly")
        undeclared = sorted({d for r in self.learned.values() for d in r.drivers} - names)
        if undeclared:
            raise ValueError(f"relaxation drivers that are not states: {', '.join(undeclared)}")

    def index(self, names) -> list[int]:
        """Positions of `names` in the system's state order."""
        return [self.state_names.index(name) for name in names]


class KnownTerms(metaclass=ABCMeta):
    """A system that declares its known terms (`HybridStructure`): by a `known_terms()` method, or
    by an entry point in `stiffbench.known_terms` under its name. `isinstance(system, KnownTerms)`
    is true either way."""

    def known_terms(self) -> HybridStructure:
        """The split of this instance's vector field into known and learned terms."""
        raise NotImplementedError

    @classmethod
    def __subclasshook__(cls, other: type):
        if cls is not KnownTerms:
            return NotImplemented
        if callable(getattr(other, "known_terms", None)) or _declaration(getattr(other, "name", None)) is not None:
            return True
        return NotImplemented


@functools.lru_cache(maxsize=None)
def _declaration(system_name: str | None) -> md.EntryPoint | None:
    """The `stiffbench.known_terms` entry point named `system_name` (None if none)."""
    if not isinstance(system_name, str):
        return None
    matches = [ep for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.name == system_name]
    if len(matches) > 1:
        raise ValueError(f"{len(matches)} entry points in {ENTRY_POINT_GROUP} declare known terms for {system_name!r}: "
                         f"{', '.join(ep.value for ep in matches)}")
    return matches[0] if matches else None


def known_terms_of(system: AbstractSystem) -> HybridStructure:
    """The system's `HybridStructure`: its own `known_terms()` method first, else its entry point's
    declaration. ValueError if it declares none."""
    own = getattr(system, "known_terms", None)
    if callable(own):
        return own()
    declaration = _declaration(system.name)
    if declaration is None:
        raise ValueError(f"system {system.name} declares no known terms")
    return declaration.load()(system)


def declaration_revision(system_cls: type) -> str:
    """The code revision of an entry-point declaration of the system's known terms ("" when the
    system declares them itself, whose revision then covers them): what a hybrid cell depends on
    besides the system's and the method's code."""
    if callable(getattr(system_cls, "known_terms", None)):
        return ""
    declaration = _declaration(getattr(system_cls, "name", None))
    return "" if declaration is None else code_revision(declaration.load())


@dataclass(frozen=True)
class StructuredTask(TrainingTask):
    """A training task with the system's known terms (for methods that require `KnownTerms`)."""

    structure: HybridStructure | None = None

    @classmethod
    def of(cls, task: TrainingTask, structure: HybridStructure) -> "StructuredTask":
        return cls(**{f.name: getattr(task, f.name) for f in fields(TrainingTask)}, structure=structure)


def require_structure(task: TrainingTask, method: str) -> HybridStructure:
    """The task's `HybridStructure`; ValueError if the runner did not provide one."""
    structure = getattr(task, "structure", None)
    if structure is None:
        raise ValueError(f"{method} needs the system's known terms (task.structure), which this task lacks")
    return structure

