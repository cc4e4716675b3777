"""The code revision of a plugin: what computed a cell, so that a cell computed by code that has
changed since can be found (stale) and recomputed (`stiffbench run --rerun-stale`).

A plugin's revision is a SHA-256 over the source of every module its class's module imports,
directly or through other imports, within the plugin's own top-level package and within
stiffbench (third-party libraries are identified by their versions in provenance instead). Each
module enters as its syntax tree without docstrings, so editing a comment, a docstring or the
layout changes no revision, while any change to code does, including to a shared module (the
solvers a method uses, the protocol layer a system uses). Imports are read statically, from
anywhere in a module (a function's lazy import counts); reading more than is executed can only
mark a cell stale that did not need it, never miss a change.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

_LAZY_API = "stiffbench.api"  # re-exports the protocol layer by name (`api._LAYER`)


def code_revision(cls: type) -> str:
    """The revision of the code behind plugin class `cls` (16 hex digits), "" when its source
    cannot be read."""
    module = cls.__module__
    roots = {module.partition(".")[0], "stiffbench"}
    files = _closure(module, frozenset(roots))
    if not files:
        return ""
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode())
        digest.update(_normalised(path).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _closure(module: str, roots: frozenset[str]) -> dict[str, str]:
    """{module name: source path} of `module` and every first-party module it imports, transitively."""
    found: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _source(name)
        if path is None:
            continue
        found[name] = path
        todo += [m for m in _imports(name, path) if m.partition(".")[0] in roots and m not in found]
    return found


@functools.lru_cache(maxsize=None)
def _source(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    return origin if origin and origin.endswith(".py") else None


def _imports(module: str, path: str) -> list[str]:
    """Modules imported anywhere in `module`'s source: `import a.b`, `from a import b` (a, and a.b
    when it is a module), relative imports resolved against the package."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            out.append(base)
            out += [f"{base}.{alias.name}" for alias in node.names if _source(f"{base}.{alias.name}") is not None]
            if base == _LAZY_API:
                out += _lazy_api_modules([alias.name for alias in node.names])
    return [m for m in out if m]


def _lazy_api_modules(names: list[str]) -> list[str]:
    from . import api

    return [f"stiffbench.{module}" for module, exported in api._LAYER.items() if set(names) & set(exported)]


@functools.lru_cache(maxsize=None)
def _normalised(path: str) -> str:
    """The module's syntax tree without docstrings, as text: comments and layout do not count."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)
