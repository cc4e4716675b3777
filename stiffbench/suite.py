"""Suite files: which systems, which method variants, which seeds, how many epochs.

A suite is a TOML file validated by pydantic (unknown keys are errors):

    seeds = [0, 1, 2]
    epochs = 50
    budget_s = 900              # optional wall-clock budget per cell, seconds
    max_solver_steps = 100000   # optional step budget of each adaptive solve
    [[systems]]
    name = "hh"
    label = "hh-I15"            # optional section name (default: name); one system may appear
    params = { I_ext = 15 }     # several times under different labels and parameters
    epochs = 2000               # optional: this entry's epochs and budget_s instead of the suite's
    [[methods]]
    label = "pinode_sr"         # the leaderboard row name
    method = "pinode_sr"        # the registered method
    params = { lam = 1.5 }      # optional
    system_params = { hh = { noise_preset = "none" } }   # optional per-variant system overrides,
                                # keyed by system label, or by name for every entry of that system
    systems = ["hh-I15"]        # optional: only these system entries (labels or names)
    epochs = 500                # optional: this variant's epochs and budget_s instead of its
                                # system entry's (or the suite's)
    [metrics.spike_f1]          # optional metric parameters for this suite
    params = { tolerance = 1.0 }
    [leaderboard]
    qualitative_summary = true  # the paper's Table 1 summary under each spiking system
    verdict = { window = "extrapolation" }  # which methods hold on each system (stiffbench.verdict)
    rank_by = "rmse_V"          # optional: the key ranking each table's rows (stiffbench.ranking)
    spread = "bootstrap95"      # "std" (default) or the 95 % bootstrap interval of the mean
    [paper]                     # optional published values shown beside ours
    source = "..."
    [paper.values.hh.extrapolation]          # system label, window
    pinode_sr = { rmse_V = 3.12 }            # method label: {key: value}

Built-in suites live in stiffbench/suites/<name>.toml; `load_suite` takes a name or a path.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator,
                      model_validator)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN_SUITES = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """A suite that cannot be read or does not validate; the message is one line."""


def _number_not_text(value: Any) -> Any:
    if isinstance(value, (str, bool)):
        raise ValueError(f"expected a number, got {value!r}")
    return value


# Seconds as a TOML number: 300 or 300.0, never "300" or true.
Seconds = Annotated[float, BeforeValidator(_number_not_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemEntry(_Strict):
    name: str = Field(min_length=1, description="registered system name")
    label: str = Field("", description="leaderboard section name, unique in the suite (default: name)")
    params: dict[str, Any] = Field(default_factory=dict, description="system parameters")
    epochs: StrictInt | None = Field(None, gt=0, description="training epochs of this entry's cells (default: the suite's)")
    budget_s: Seconds | None = Field(None, gt=0, description="wall-clock budget per cell of this entry (default: the suite's)")

    @model_validator(mode="after")
    def _default_label(self) -> "SystemEntry":
        if not self.label:
            object.__setattr__(self, "label", self.name)
        return self


PaperValues = dict[str, dict[str, dict[str, dict[str, float]]]]


class PaperReference(_Strict):
    """Where a suite's published reference values come from, and the values."""

    source: str = Field(min_length=1, description="citation of the published table(s)")
    values: PaperValues = Field(
        default_factory=dict,
        description="system label -> window -> method label -> {metric key: published value}; each "
        "(system, window) table shows a '<key> (paper)' column beside ours for every key given there, "
        "with '–' for a row the publication gives no value (its dash: a failure)",
    )
    keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description="deprecated (use values): metric key -> windows showing the methods' `paper` values",
    )
    note: str = Field("", description="caveats shown under the tables (ambiguities of the source)")


class MetricEntry(_Strict):
    params: dict[str, Any] = Field(default_factory=dict, description="the metric's parameters in this suite")


class VerdictOptions(_Strict):
    """The ladder's verdict (stiffbench.verdict): on which systems each method holds."""

    window: str = Field("extrapolation", min_length=1, description="the evaluation window judged")
    holds: float = Field(0.9, gt=0, le=1, description="median valid fraction at or above which a method holds")
    fails: float = Field(0.1, ge=0, lt=1, description="median valid fraction below which a method fails")

    @model_validator(mode="after")
    def _ordered(self) -> "VerdictOptions":
        if self.fails > self.holds:
            raise ValueError(f"fails ({self.fails:g}) must not exceed holds ({self.holds:g})")
        return self


class LeaderboardOptions(_Strict):
    qualitative_summary: bool = Field(
        False,
        description="render the paper's Table 1 summary (spike F1, limit cycle kept, states in bounds, stable) "
        "under each spiking system",
    )
    verdict: VerdictOptions | None = Field(
        None, description="a paragraph per system on which methods hold, and where each method breaks"
    )
    rank_by: StrictStr | None = Field(
        None, min_length=1,
        description="metric key ranking each table's rows (default: spike_f1, else valid_time, else the first "
        "key; stiffbench.ranking); a system without this key is ranked by its default, with a line saying so",
    )
    spread: Literal["std", "bootstrap95"] = Field(
        "std", description="spread shown after each mean: the sample std, or the 95 % percentile bootstrap "
        "interval of the mean over seeds"
    )


class MethodEntry(_Strict):
    label: str = Field(min_length=1, description="leaderboard row name, unique in the suite")
    method: str = Field(min_length=1, description="registered method name")
    params: dict[str, Any] = Field(default_factory=dict, description="method parameters")
    system_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-system parameter overrides for this variant's cells, keyed by system name "
        "(e.g. { hh = { noise_preset = 'none' } } for a variant trained without noise)",
    )
    systems: list[str] = Field(
        default_factory=list,
        description="run this variant only on these system entries (labels, or names for every entry of a "
        "system); empty: on every system of the suite",
    )
    epochs: StrictInt | None = Field(
        None, gt=0, description="training epochs of this variant's cells (default: its system entry's, else the "
        "suite's): a method's own budget, e.g. one whose epochs cost far more than the others'")
    budget_s: Seconds | None = Field(
        None, gt=0, description="wall-clock budget per cell of this variant (default: its system entry's, else the "
        "suite's)")
    paper: dict[str, float] = Field(
        default_factory=dict,
        description="deprecated (use [paper.values]): the published value of each key of the suite's "
        "[paper] keys for this variant",
    )


class Suite(_Strict):
    name: str = Field(description="suite name (the file stem); names the leaderboard file")
    description: str = ""
    seeds: list[StrictInt] = Field(min_length=1, description="training seeds; one cell per seed")
    epochs: StrictInt = Field(gt=0, description="training epochs per cell")
    budget_s: Seconds | None = Field(default=None, gt=0, description="wall-clock budget per cell, seconds")
    max_solver_steps: StrictInt | None = Field(
        default=None, gt=0, description="step budget of each adaptive solve in training and forecasting"
    )
    systems: list[SystemEntry] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    metrics: dict[str, MetricEntry] = Field(default_factory=dict, description="metric name -> its parameters")
    leaderboard: LeaderboardOptions = Field(default_factory=LeaderboardOptions)
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
        systems = [s.label for s in self.systems]
        dups = sorted({x for x in systems if systems.count(x) > 1})
        if dups:
            raise ValueError(f"duplicate system labels: {', '.join(dups)} (give each entry its own label)")
        names = {s.name for s in self.systems}
        for m in self.methods:
            unknown = sorted(set(m.system_params) - set(systems) - names)
            if unknown:
                raise ValueError(f"method {m.label}: system_params names systems not in the suite: {', '.join(unknown)}")
            unknown = sorted(set(m.systems) - set(systems) - names)
            if unknown:
                raise ValueError(f"method {m.label}: systems names systems not in the suite: {', '.join(unknown)}")
            if m.paper:
                known = set(self.paper.keys) if self.paper else set()
                extra = sorted(set(m.paper) - known)
                if extra:
                    raise ValueError(f"method {m.label}: paper values for keys not declared in [paper] keys: "
                                     f"{', '.join(extra)}")
        if self.paper:
            for system, windows in self.paper.values.items():
                if system not in systems:
                    raise ValueError(f"paper.values: {system!r} is not a system label of the suite")
                for window, rows in windows.items():
                    unknown = sorted(set(rows) - set(labels))
                    if unknown:
                        raise ValueError(f"paper.values.{system}.{window}: {', '.join(unknown)} not method labels")
        return self

    def epochs_for(self, system: SystemEntry, method: MethodEntry | None = None) -> int:
        """Training epochs of a system entry's cells (of one variant's, given `method`): the variant's
        own, else the system entry's, else the suite's."""
        return (method.epochs if method is not None else None) or system.epochs or self.epochs

    def budget_for(self, system: SystemEntry, method: MethodEntry | None = None) -> float | None:
        """Wall-clock budget per cell of a system entry (of one variant's, given `method`): the
        variant's own, else the system entry's, else the suite's."""
        return (method.budget_s if method is not None else None) or system.budget_s or self.budget_s

    def runs_on(self, method: MethodEntry, system: SystemEntry) -> bool:
        """Whether a variant has cells on a system entry (its `systems`, by label or name; all when empty)."""
        return not method.systems or system.label in method.systems or system.name in method.systems

    def system_params_for(self, method: MethodEntry, system: SystemEntry) -> dict[str, Any]:
        """A variant's overrides for one system entry: those keyed by its label, else by its name."""
        return method.system_params.get(system.label, method.system_params.get(system.name, {}))

    def paper_table(self, system: str, window: str) -> tuple[list[str], dict[str, dict[str, float]]]:
        """The published values for one system label and window: (keys with a paper column,
        {method label: {key: value}})."""
        if self.paper is None:
            return [], {}
        rows = self.paper.values.get(system, {}).get(window, {})
        keys = list(dict.fromkeys(k for values in rows.values() for k in values))
        legacy = [k for k, windows in self.paper.keys.items() if window in windows]
        if legacy:  # the deprecated per-method form applies to every system of the suite
            keys += [k for k in legacy if k not in keys]
            rows = {m.label: {**{k: v for k, v in m.paper.items() if k in legacy}, **rows.get(m.label, {})}
                    for m in self.methods}
        return keys, rows


def validation_message(exc: ValidationError, where: str) -> str:
    """One line naming the first failing field and the problem."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {loc + ': ' if loc else ''}{message}{more}"


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
        suite = Suite(name=path.stem, **data)
    except ValidationError as exc:
        raise SuiteError(validation_message(exc, str(path))) from None
    if suite.paper is not None and suite.paper.keys:
        warnings.warn(f"{path}: [paper] keys and the methods' `paper` values are deprecated; give the values as "
                      "[paper.values.<system>.<window>] <label> = {...}", DeprecationWarning, stacklevel=2)
    return suite
