"""docs/adding-a-system.md works as written: its system module passes the conformance kit, its
entry point and suite run through the runner with the built-in methods and metrics."""

import importlib
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from stiffbench import leaderboard
from stiffbench.executors import SerialExecutor
from stiffbench.registry import PluginSpec, Registry, specs_from_metadata
from stiffbench.runner import Runner, metric_instances
from stiffbench.store import Store
from stiffbench.suite import Suite
from stiffbench.testing.conformance import SystemConformance, check_system

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding-a-system.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(GUIDE.read_text(encoding="utf-8")) if lang == language]


@pytest.fixture
def guide_module(tmp_path, monkeypatch):
    """The guide's system module, written to a folder on sys.path and imported."""
    module_code = blocks("python")[0]
    name = re.search(r"py-modules = \[\"(\w+)\"\]", blocks("toml")[0]).group(1)
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / f"{name}.py").write_text(module_code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def test_guide_has_its_blocks():
    assert len(blocks("python")) == 2 and len(blocks("toml")) == 2
    assert "stiffbench run --suite my.toml" in "".join(blocks("bash"))


def test_guide_system_passes_the_conformance_kit(guide_module, tmp_path, monkeypatch):
    pyproject = tomllib.loads(blocks("toml")[0])
    entry_points = pyproject["project"]["entry-points"]["stiffbench.systems"]
    (name, value), = entry_points.items()
    module, attr = value.split(":")
    assert module == guide_module.__name__
    cls = getattr(guide_module, attr)
    assert cls.name == name and cls.citation
    check_system(cls, cache_dir=tmp_path / "cache")

    # The guide's pytest class, as a user's test file would run it.
    namespace = {}
    exec(compile(blocks("python")[1], "test_my_systems.py", "exec"), namespace)
    (test_cls,) = [v for v in namespace.values()
                   if isinstance(v, type) and issubclass(v, SystemConformance) and v is not SystemConformance]
    assert test_cls.system_cls is cls
    test_cls().test_system_conformance(tmp_path / "cache")

    # Partial observation as the guide describes it.
    partial = cls({"observe": ["X"]})
    task = partial.training_task(tmp_path / "cache")
    assert task.observations.state_names == ("X",) and not task.fully_observed and task.y0.shape == (2,)


@pytest.mark.slow
def test_guide_suite_runs_with_the_builtin_methods(guide_module, tmp_path):
    pyproject = tomllib.loads(blocks("toml")[0])
    (name, value), = pyproject["project"]["entry-points"]["stiffbench.systems"].items()
    spec = PluginSpec("systems", name, value, pyproject["project"]["name"], pyproject["project"]["version"])
    registry = Registry([*specs_from_metadata(), spec], allowed=[spec.distribution])
    assert registry.load("systems", name) is getattr(guide_module, value.split(":")[1])

    data = tomllib.loads(blocks("toml")[1])
    suite = Suite(name="my", **{**data, "epochs": 2})
    with Store(tmp_path / "results") as store:
        runner = Runner(registry, store, cache_dir=str(tmp_path / "cache"), executor=SerialExecutor(),
                        checkpoint_every_s=None)
        report = runner.run(suite)
        board = leaderboard.build(suite, report.cells, store, metric_instances(registry, suite))
    statuses = {(r.provenance["system_label"], r.label, r.seed): (r.status, r.reason) for r in report.records}
    assert len(report.records) == report.total == len(suite.systems) * len(suite.methods) * len(suite.seeds)
    assert all(status in ("ok", "diverged") for status, _ in statuses.values()), statuses
    ok = [r for r in report.records if r.status == "ok"]
    assert ok and all(f"rmse_{s}" in r.metrics["extrapolation"] for r in ok for s in ("X", "Y"))
    assert all("bound_violation" in r.metrics["long"] for r in ok)
    # Units and time unit in the leaderboard, as the guide says.
    assert "rmse_X (mM)" in board and "extrapolation window [10, 30] s" in board
