"""Plugin registry over the entry-point groups stiffbench.systems / .methods / .metrics.

Modelled on xarray's backend registry: entry points are injectable (tests pass their own
`PluginSpec`s), listing names imports nothing, loading validates the class, a plugin that fails
to import becomes a warning plus a `LoadError` record, and two plugins with one name is an error
naming both distributions.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .api import AbstractMethod, AbstractMetric, AbstractPlugin, AbstractSystem, PluginParams

KINDS: dict[str, tuple[str, type[AbstractPlugin]]] = {
    "systems": ("stiffbench.systems", AbstractSystem),
    "methods": ("stiffbench.methods", AbstractMethod),
    "metrics": ("stiffbench.metrics", AbstractMetric),
}


class PluginError(Exception):
    """Base of registry errors."""


class DuplicatePluginError(PluginError):
    """Two distributions register the same name in one group."""


class UnknownPluginError(PluginError):
    """A name that no installed distribution registers."""


class PluginLoadError(PluginError):
    """A plugin that cannot be imported or is not a valid plugin class."""


@dataclass(frozen=True)
class PluginSpec:
    """One entry point: `value` is "module:attr"; distribution and version are its provider's."""

    kind: str
    name: str
    value: str
    distribution: str = "unknown"
    version: str = "unknown"

    @property
    def module(self) -> str:
        return self.value.split(":", 1)[0]

    @property
    def attr(self) -> str:
        return self.value.split(":", 1)[1] if ":" in self.value else ""


@dataclass(frozen=True)
class LoadError:
    """Record of a plugin that failed to load; the run carries on without it."""

    kind: str
    name: str
    distribution: str
    version: str
    reason: str


def specs_from_metadata() -> list[PluginSpec]:
    """PluginSpecs for every installed distribution's stiffbench entry points (imports nothing)."""
    specs = []
    for kind, (group, _) in KINDS.items():
        for ep in md.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            specs.append(
                PluginSpec(
                    kind=kind,
                    name=ep.name,
                    value=ep.value,
                    distribution=dist.metadata["Name"] if dist is not None else "unknown",
                    version=dist.version if dist is not None else "unknown",
                )
            )
    return specs


BUILTIN_DISTRIBUTION = "stiffbench"
AUTOLOAD_ENV = "STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD"


def select_plugins(specs: Iterable[PluginSpec], allowed: Iterable[str] | None) -> list[PluginSpec]:
    """Built-in specs plus the third-party ones named in `allowed` (by entry-point or distribution
    name). `allowed=None` keeps everything unless $STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD is set (to
    anything but "" or "0"), in which case only built-ins are kept."""
    specs = list(specs)
    if allowed is None:
        if os.environ.get(AUTOLOAD_ENV, "") in ("", "0"):
            return specs
        allowed = ()
    names = set(allowed)
    return [s for s in specs if s.distribution == BUILTIN_DISTRIBUTION or s.name in names or s.distribution in names]


class Registry:
    """Read-only view of the available plugins; pass `specs` to inject entry points (tests).

    allowed : third-party plugins to admit (entry-point or distribution names); see
              `select_plugins` for the default and $STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD.
    """

    def __init__(self, specs: Iterable[PluginSpec] | None = None, allowed: Iterable[str] | None = None):
        self._specs = select_plugins(specs_from_metadata() if specs is None else specs, allowed)
        self._loaded: dict[tuple[str, str], type[AbstractPlugin]] = {}

    def specs(self, kind: str) -> dict[str, PluginSpec]:
        """Name -> spec for one kind, sorted by name. Imports nothing."""
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        found: dict[str, PluginSpec] = {}
        for spec in self._specs:
            if spec.kind != kind:
                continue
            other = found.get(spec.name)
            if other is not None and (other.distribution, other.value) != (spec.distribution, spec.value):
                raise DuplicatePluginError(
                    f"two {kind} plugins are named {spec.name!r}: one from {other.distribution} {other.version} "
                    f"({other.value}) and one from {spec.distribution} {spec.version} ({spec.value})"
                )
            found[spec.name] = spec
        return dict(sorted(found.items()))

    def spec(self, kind: str, name: str) -> PluginSpec:
        specs = self.specs(kind)
        if name not in specs:
            valid = ", ".join(specs) or "none installed"
            raise UnknownPluginError(f"unknown {kind[:-1]} {name!r}; available: {valid}")
        return specs[name]

    def load(self, kind: str, name: str) -> type[AbstractPlugin]:
        """Import and validate one plugin class; raises PluginLoadError with the cause."""
        spec = self.spec(kind, name)
        cached = self._loaded.get((kind, name))
        if cached is not None:
            return cached
        try:
            obj = importlib.import_module(spec.module)
            for part in filter(None, spec.attr.split(".")):
                obj = getattr(obj, part)
        except Exception as exc:  # any import-time failure of third-party code becomes a record
            raise PluginLoadError(f"{kind[:-1]} {name!r} ({spec.value}) failed to import: {type(exc).__name__}: {exc}") from exc
        _validate_plugin_class(spec, obj)
        self._loaded[(kind, name)] = obj
        return obj

    def load_all(self, kind: str) -> tuple[dict[str, type[AbstractPlugin]], list[LoadError]]:
        """Every loadable plugin of a kind (metrics ordered by their `rank`, others by name), plus
        a LoadError (and a warning) for each failure."""
        classes, errors = {}, []
        for name, spec in self.specs(kind).items():
            try:
                classes[name] = self.load(kind, name)
            except PluginLoadError as exc:
                warnings.warn(str(exc), stacklevel=2)
                errors.append(LoadError(kind, name, spec.distribution, spec.version, str(exc)))
        if kind == "metrics":
            classes = dict(sorted(classes.items(), key=lambda item: (item[1].rank, item[0])))
        return classes, errors


def _validate_plugin_class(spec: PluginSpec, obj: object) -> None:
    base = KINDS[spec.kind][1]
    where = f"{spec.kind[:-1]} {spec.name!r} ({spec.value})"
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginLoadError(f"{where} is not a subclass of {base.__name__}")
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise PluginLoadError(f"{where} does not implement: {missing}")
    if getattr(obj, "name", None) != spec.name:
        raise PluginLoadError(f"{where} has name {getattr(obj, 'name', None)!r}, expected {spec.name!r}")
    if not isinstance(getattr(obj, "description", None), str):
        raise PluginLoadError(f"{where} has no string `description`")
    if not (isinstance(obj.Params, type) and issubclass(obj.Params, PluginParams)):
        raise PluginLoadError(f"{where} has Params that is not a PluginParams subclass")


def static_description(spec: PluginSpec) -> str:
    """The plugin's one-line description read from its source without importing it: the class's
    literal `description`, else its docstring's first line; "" when the source cannot be read."""
    node = _class_node(spec)
    if node is None:
        return ""
    text = _literal(node, "description")
    if text is None:
        text = ast.get_docstring(node) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def static_citation(spec: PluginSpec) -> str:
    """The first source a plugin's literal `citation` names (up to its first ";"), read without
    importing it; "" when there is none."""
    node = _class_node(spec)
    text = _literal(node, "citation") if node is not None else None
    return " ".join(text.split(";")[0].split()) if text else ""


def _class_node(spec: PluginSpec) -> ast.ClassDef | None:
    """The plugin class's definition in its module's source, found through the top-level
    package's search path (which does not execute the package), or None."""
    path = _module_source(spec.module)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    cls_name = spec.attr.split(".")[-1]
    return next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls_name), None)


def _literal(node: ast.ClassDef, name: str) -> str | None:
    """The string assigned to `name` in the class body, if it is a literal."""
    for stmt in node.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        value = getattr(stmt, "value", None)
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(value, ast.Constant) \
                and isinstance(value.value, str):
            return value.value
    return None


def _module_source(module: str) -> Path | None:
    top, _, rest = module.partition(".")
    try:
        top_spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if top_spec is None:
        return None
    if not rest:
        return Path(top_spec.origin) if top_spec.origin and top_spec.origin.endswith(".py") else None
    parts = rest.split(".")
    for base in top_spec.submodule_search_locations or []:
        stem = Path(base).joinpath(*parts)
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None
