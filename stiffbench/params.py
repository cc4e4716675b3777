"""Plugin parameters: validated pydantic models, and the roles a field plays in cell keys and caches.

Every parameter of a plugin enters its cells' keys (the key identifies what computed a result).
Two roles refine that, declared where the field is defined with `param(...)`:

- `added=True`: a field added to a plugin after results were stored. While it has its default it
  is left out of cell keys, so the stored cells (computed before the field existed, i.e. with
  its default behaviour) stay valid; any other value enters the key.
- `protocol=True` (systems): the field shapes only the observation and evaluation protocol
  (noise, windows, sampling), not the trajectory, so it is left out of the reference cache key.
  Every other field of a system, including any the author forgets to mark, is part of that key:
  a new trajectory parameter can never reuse a stale reference, at worst a reference is
  recomputed that did not need to be.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined

ROLES_KEY = "stiffbench_roles"


class PluginParams(BaseModel):
    """Base of every plugin's parameter model: validated, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(PluginParams):
    """Parameter model of a plugin that takes none."""


def param(default: Any = PydanticUndefined, *, protocol: bool = False, added: bool = False, **kwargs: Any) -> Any:
    """A pydantic `Field` with stiffbench roles (see the module docstring); other keyword
    arguments (description, gt, ...) go to `Field`."""
    roles = [name for name, on in (("protocol", protocol), ("added", added)) if on]
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    if roles:
        extra[ROLES_KEY] = roles
    return Field(default, json_schema_extra=extra or None, **kwargs)


def field_roles(params: BaseModel | type[BaseModel], name: str) -> frozenset[str]:
    """The roles declared for field `name` of a parameter model (class or instance)."""
    info = type(params).model_fields[name] if isinstance(params, BaseModel) else params.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return frozenset(extra.get(ROLES_KEY, ()))


def key_params(params: BaseModel) -> dict:
    """The parameters as they enter a cell key: the JSON dump without `added` fields that still
    have their default."""
    dump = params.model_dump(mode="json")
    for name, info in type(params).model_fields.items():
        if "added" in field_roles(params, name) and getattr(params, name) == info.get_default(call_default_factory=True):
            dump.pop(name, None)
    return dump


def trajectory_params(params: BaseModel) -> dict:
    """The parameters that shape a system's trajectory: the JSON dump without `protocol` fields."""
    dump = params.model_dump(mode="json")
    return {k: v for k, v in dump.items() if "protocol" not in field_roles(params, k)}
