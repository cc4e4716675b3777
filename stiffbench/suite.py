"""Suite files: which systems, which method variants, which seeds, how many epochs.

A suite is a TOML file validated by pydantic (unknown keys are errors):

    seeds = [0, 1, 2]
    epochs = 50
    budget_s = 900              # optional wall-clock budget per cell, seconds
    max_solver_steps = 100000   # optional step budget of each adaptive solve
    [[systems]]
    name = "hh"
    params = { noise_preset = "paper_literal" }   # optional
    [[methods]]
    label = "pinode_sr"         # the leaderboard row name
    method = "pinode_sr"        # the registered method
    params = { lam = 1.5 }      # optional
    system_params = { hh = { noise_preset = "none" } }   # optional per-variant system overrides

Built-in suites live in stiffbench/suites/<name>.toml; `load_suite` takes a name or a path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN_SUITES = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """A suite that cannot be read or does not validate; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemEntry(_Strict):
    name: str = Field(min_length=1, description="registered system name")
    params: dict[str, Any] = Field(default_factory=dict, description="system parameters")


class PaperReference(_Strict):
    """Where a suite's published reference values come from and where they are shown."""

    source: str = Field(min_length=1, description="citation of the published table(s)")
    keys: dict[str, list[str]] = Field(
        min_length=1,
        description="metric key -> evaluation windows whose leaderboard table shows the published value "
        "in a '<key> (paper)' column beside ours",
    )
    note: str = Field("", description="caveats shown under the tables (ambiguities of the source)")


class MethodEntry(_Strict):
    label: str = Field(min_length=1, description="leaderboard row name, unique in the suite")
    method: str = Field(min_length=1, description="registered method name")
    params: dict[str, Any] = Field(default_factory=dict, description="method parameters")
    system_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-system parameter overrides for this variant's cells, keyed by system name "
        "(e.g. { hh = { noise_preset = 'none' } } for a variant trained without noise)",
    )
    paper: dict[str, float] = Field(
        default_factory=dict,
        description="the published value of each metric key for this variant; a key of the suite's "
        "[paper] keys missing here is the publication's dash (failure, no value)",
    )


class Suite(_Strict):
    name: str = Field(description="suite name (the file stem); names the leaderboard file")
    description: str = ""
    seeds: list[int] = Field(min_length=1, description="training seeds; one cell per seed")
    epochs: int = Field(gt=0, description="training epochs per cell")
    budget_s: float | None = Field(default=None, gt=0, description="wall-clock budget per cell, seconds")
    max_solver_steps: int | None = Field(
        default=None, gt=0, description="step budget of each adaptive solve in training and forecasting"
    )
    systems: list[SystemEntry] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    paper: PaperReference | None = Field(None, description="published values to show beside ours")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be unique")
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be non-negative")
        return seeds

    @model_validator(mode="after")
    def _unique_names(self) -> "Suite":
        labels = [m.label for m in self.methods]
        dups = sorted({x for x in labels if labels.count(x) > 1})
        if dups:
            raise ValueError(f"duplicate method labels: {', '.join(dups)}")
        systems = [s.name for s in self.systems]
        dups = sorted({x for x in systems if systems.count(x) > 1})
        if dups:
            raise ValueError(f"duplicate systems: {', '.join(dups)}")
        for m in self.methods:
            unknown = sorted(set(m.system_params) - set(systems))
            if unknown:
                raise ValueError(f"method {m.label}: system_params names systems not in the suite: {', '.join(unknown)}")
            if m.paper:
                known = set(self.paper.keys) if self.paper else set()
                extra = sorted(set(m.paper) - known)
                if extra:
                    raise ValueError(f"method {m.label}: paper values for keys not declared in [paper] keys: "
                                     f"{', '.join(extra)}")
        return self


def validation_message(exc: ValidationError, where: str) -> str:
    """One line naming the first failing field and the problem."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {loc}: {err['msg']}{more}"


def resolve_suite_path(name_or_path: str) -> Path:
    """A path to an existing file, or the built-in suite of that name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SuiteError(f"suite file not found: {name_or_path}")
        return path
    builtin = BUILTIN_SUITES / f"{name_or_path}.toml"
    if not builtin.is_file():
        names = ", ".join(sorted(p.stem for p in BUILTIN_SUITES.glob("*.toml")))
        raise SuiteError(f"unknown suite {name_or_path!r}: not a file and not a built-in suite ({names})")
    return builtin


def load_suite(name_or_path: str) -> Suite:
    """Read and validate a suite; raises SuiteError with a one-line message."""
    path = resolve_suite_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: invalid TOML: {str(exc).splitlines()[0]}") from None
    if "name" in data:
        raise SuiteError(f"{path}: name: the suite name is the file name, remove the 'name' key")
    try:
        return Suite(name=path.stem, **data)
    except ValidationError as exc:
        raise SuiteError(validation_message(exc, str(path))) from None
