"""Human-readable descriptions of plugins for `stiffbench list --verbose`: a system's states,
protocol, reference solver and source; every plugin's parameters with defaults and meanings."""

from __future__ import annotations

from .api import AbstractPlugin, State
from .ode_system import ODESystem


def describe_plugin(cls: type[AbstractPlugin]) -> list[str]:
    """Lines describing a plugin class (its defaults): source, protocol (ODE systems), parameters."""
    lines = []
    if issubclass(cls, ODESystem):
        lines += describe_protocol(cls())
    elif getattr(cls, "citation", ""):
        lines.append(f"source: {cls.citation}")
    fields = cls.Params.model_fields
    if fields:
        lines.append("parameters:")
        for name, info in fields.items():
            default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
            lines.append(f"  {name} = {default}" + (f": {info.description}" if info.description else ""))
    return lines


def describe_protocol(system: ODESystem) -> list[str]:
    """A system's states, protocol and reference solver, and its source."""
    p = system.protocol()
    unit = f" {system.time_unit}" if system.time_unit else ""
    lines = [
        f"states: {', '.join(describe_state(s) for s in system.states)}; time unit: {system.time_unit or 'none'}",
        f"grid: {p.grid.describe()}; training window [{p.train[0]:g}, {p.train[1]:g}]{unit}, "
        f"observations: {(p.observe or p.grid).describe()} ({len(p.observation_times())} samples) of "
        f"{', '.join(p.observed or system.state_names)}; noise: {p.noise.describe()}",
        "evaluation windows: " + ", ".join(f"{w.name} [{w.t0:g}, {w.t1:g}]{unit}" for w in p.windows),
        f"reference: {system.reference_solver().describe()}"
        + (", analytic Jacobian" if type(system).jac is not ODESystem.jac else ""),
    ]
    if system.citation:
        lines.append(f"source: {system.citation}")
    return lines


def describe_state(state: State) -> str:
    text = state.name + (f" ({state.unit})" if state.unit else "")
    if state.bounds is not None:
        lo, hi = state.bounds
        text += f" in [{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
    return text
