"""Plugin parameters: validated pydantic models, and the roles a field plays in cell keys and caches.

Every parameter of a plugin enters its cells' keys (the key identifies what computed a result).
Three roles refine that, declared where the field is defined with `param(...)`:

- `added=True`: a field added to a plugin after results were stored. While it has its default it
  is left out of cell keys, so the stored cells (computed before the field existed, i.e. with
  its default behaviour) stay valid; any other value enters the key.
- `performance=True`: a setting of speed or memory only (compilation, chunk sizes), whose results
  agree with its alternatives' to rounding. It is never part of a cell key, so toggling it reruns
  nothing.
- `protocol=True` (systems): the field shapes only the observation and evaluation protocol
  (noise, windows, sampling), not the trajectory, so it is left out of the reference cache key.
  Every other field of a system, including any the author forgets to mark, is part of that key:
  a new trajectory parameter can never reuse a stale reference, at worst a reference is
  recomputed that did not need to be.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticUndefined

ROLES_KEY = "stiffbench_roles"
FIT_KEY = "stiffbench_fit"


class PluginParams(BaseModel):
    """Base of every plugin's parameter model: validated, immutable, unknown keys rejected, and no
    number or boolean taken from a string (pydantic would read lr = "1" as 1.0: in a suite that is
    a mistake to report, not to guess)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _no_numbers_from_strings(cls, data: Any, handler):
        result = handler(data)
        if isinstance(data, dict):
            for name, value in data.items():
                where = _string_read_as_number(value, getattr(result, name, None))
                if where is not None:
                    raise ValueError(f"{name}{where}: expected a number or boolean, got the string {value!r}"
                                     if not where else f"{name}{where}: expected a number or boolean, got a string")
        return result


class NoParams(PluginParams):
    """Parameter model of a plugin that takes none."""


def _string_read_as_number(raw: Any, value: Any) -> str | None:
    """Where in `raw` a string became a number or boolean in `value` ("" at the top, "[i]" inside
    a list), or None."""
    if isinstance(raw, str):
        return "" if isinstance(value, (bool, int, float)) else None
    if isinstance(raw, (list, tuple)) and isinstance(value, (list, tuple)) and len(raw) == len(value):
        for i, (r, v) in enumerate(zip(raw, value)):
            if _string_read_as_number(r, v) is not None:
                return f"[{i}]"
    return None


def param(
    default: Any = PydanticUndefined, *, protocol: bool = False, added: bool = False, performance: bool = False,
    fit: tuple[float, float] | None = None, **kwargs: Any,
) -> Any:
    """A pydantic `Field` with stiffbench roles (see the module docstring); other keyword
    arguments (description, gt, ...) go to `Field`. `fit=(lower, upper)` marks a system's physical
    parameter that a method may identify from data, with its plausible range (`PhysicsModel`)."""
    roles = [name for name, on in (("protocol", protocol), ("added", added), ("performance", performance)) if on]
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    if roles:
        extra[ROLES_KEY] = roles
    if fit is not None:
        lower, upper = fit
        if not lower < upper:
            raise ValueError(f"a fit range needs lower < upper, got {fit}")
        extra[FIT_KEY] = [float(lower), float(upper)]
    return Field(default, json_schema_extra=extra or None, **kwargs)


def fit_ranges(params: BaseModel | type[BaseModel]) -> dict[str, tuple[float, float]]:
    """{name: (lower, upper)} of the fields declared with `param(..., fit=...)`."""
    fields = (type(params) if isinstance(params, BaseModel) else params).model_fields
    extras = {name: info.json_schema_extra for name, info in fields.items() if isinstance(info.json_schema_extra, dict)}
    return {name: tuple(extra[FIT_KEY]) for name, extra in extras.items() if FIT_KEY in extra}


def field_roles(params: BaseModel | type[BaseModel], name: str) -> frozenset[str]:
    """The roles declared for field `name` of a parameter model (class or instance)."""
    info = type(params).model_fields[name] if isinstance(params, BaseModel) else params.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return frozenset(extra.get(ROLES_KEY, ()))


def key_params(params: BaseModel, performance: bool = False) -> dict:
    """The parameters as they enter a cell key: the JSON dump without `performance` fields (kept
    with `performance=True`, the rule of the first key format) and without `added` fields that
    still have their default."""
    dump = params.model_dump(mode="json")
    for name, info in type(params).model_fields.items():
        roles = field_roles(params, name)
        at_default = getattr(params, name) == info.get_default(call_default_factory=True)
        if ("performance" in roles and not performance) or ("added" in roles and at_default):
            dump.pop(name, None)
    return dump


def trajectory_params(params: BaseModel) -> dict:
    """The parameters that shape a system's trajectory: the JSON dump without `protocol` fields."""
    dump = params.model_dump(mode="json")
    return {k: v for k, v in dump.items() if "protocol" not in field_roles(params, k)}
