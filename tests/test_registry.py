"""Registry: injected entry points, lazy listing, validation, load errors, duplicates."""

import subprocess
import sys
import textwrap

import pytest

from stiffbench.registry import (
    DuplicatePluginError,
    PluginLoadError,
    PluginSpec,
    Registry,
    UnknownPluginError,
    static_description,
)


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A throw-away importable package `sbtest_plugins` with a good, a broken and an invalid plugin."""
    pkg = tmp_path / "sbtest_plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(textwrap.dedent('''
        from stiffbench.api import AbstractMetric

        class Good(AbstractMetric):
            """Docstring line that is not used because description is set."""
            name = "good"
            description = "A good metric for tests."
            keys = ("good",)

            def compute(self, pred, true, system):
                return {"good": 1.0}

        class Misnamed(Good):
            name = "something_else"

        class NotAPlugin:
            description = "no base class"
    '''))
    (pkg / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "sbtest_plugins"


def spec(name, value, kind="metrics", dist="sbtest", version="1.0"):
    return PluginSpec(kind, name, value, dist, version)


def test_listing_imports_nothing(plugin_module):
    registry = Registry([spec("good", f"{plugin_module}.good:Good"), spec("broken", f"{plugin_module}.broken:X")])
    assert list(registry.specs("metrics")) == ["broken", "good"]
    assert f"{plugin_module}.good" not in sys.modules
    assert f"{plugin_module}.broken" not in sys.modules


def test_static_description_reads_source_without_import(plugin_module):
    assert static_description(spec("good", f"{plugin_module}.good:Good")) == "A good metric for tests."
    assert static_description(spec("broken", f"{plugin_module}.broken:X")) == ""
    assert f"{plugin_module}.good" not in sys.modules and f"{plugin_module}.broken" not in sys.modules


def test_load_validates_and_caches(plugin_module):
    registry = Registry([spec("good", f"{plugin_module}.good:Good")])
    cls = registry.load("metrics", "good")
    assert cls.name == "good" and registry.load("metrics", "good") is cls


@pytest.mark.parametrize(
    "attr, message",
    [("Misnamed", "has name 'something_else', expected 'good'"), ("NotAPlugin", "is not a subclass of AbstractMetric")],
)
def test_invalid_plugin_classes_are_load_errors(plugin_module, attr, message):
    registry = Registry([spec("good", f"{plugin_module}.good:{attr}")])
    with pytest.raises(PluginLoadError, match=message):
        registry.load("metrics", "good")


def test_import_failure_becomes_warning_and_record(plugin_module):
    registry = Registry([spec("good", f"{plugin_module}.good:Good"), spec("broken", f"{plugin_module}.broken:X")])
    with pytest.warns(UserWarning, match="boom at import"):
        classes, errors = registry.load_all("metrics")
    assert list(classes) == ["good"]
    assert [(e.name, e.distribution, e.version) for e in errors] == [("broken", "sbtest", "1.0")]
    assert "RuntimeError: boom at import" in errors[0].reason


def test_duplicate_name_names_both_distributions(plugin_module):
    registry = Registry([
        spec("good", f"{plugin_module}.good:Good", dist="dist-a", version="1.0"),
        spec("good", "other.module:Good", dist="dist-b", version="2.0"),
    ])
    with pytest.raises(DuplicatePluginError) as info:
        registry.specs("metrics")
    assert "dist-a 1.0" in str(info.value) and "dist-b 2.0" in str(info.value)


def test_unknown_name_lists_available(plugin_module):
    registry = Registry([spec("good", f"{plugin_module}.good:Good")])
    with pytest.raises(UnknownPluginError, match="unknown metric 'nope'; available: good"):
        registry.load("metrics", "nope")


def test_builtins_are_registered_through_entry_points():
    registry = Registry()
    assert {"hh"} <= set(registry.specs("systems"))
    assert {"vanilla_node", "vanilla_pinn", "pinode_sr"} <= set(registry.specs("methods"))
    assert {"rmse", "spike_f1", "phase_drift", "isi_error", "amp_dev", "amp_pres"} <= set(registry.specs("metrics"))
    assert registry.specs("methods")["pinode_sr"].distribution == "stiffbench"


@pytest.mark.slow
def test_core_never_imports_builtins():
    """Importing every core module (and running the registry's listing) loads no built-in plugin."""
    code = textwrap.dedent("""
        import sys, pkgutil, importlib, stiffbench
        for m in pkgutil.walk_packages(stiffbench.__path__, "stiffbench."):
            if not m.name.startswith("stiffbench.metrics"):
                importlib.import_module(m.name)
        from stiffbench.registry import Registry
        Registry().specs("methods")
        bad = [m for m in sys.modules if m.startswith(("stiffbench_methods", "stiffbench_systems", "stiffbench.metrics."))]
        print(bad)
        sys.exit(1 if bad else 0)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_autoload_disabled_keeps_builtins_and_named_plugins(monkeypatch):
    from stiffbench.registry import select_plugins

    specs = [spec("rmse", "a:B", dist="stiffbench"), spec("third", "c:D", dist="other-dist"),
             spec("fourth", "e:F", dist="fourth-dist")]
    monkeypatch.delenv("STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    assert [s.name for s in select_plugins(specs, None)] == ["rmse", "third", "fourth"]
    assert [s.name for s in select_plugins(specs, ["third"])] == ["rmse", "third"]
    monkeypatch.setenv("STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert [s.name for s in select_plugins(specs, None)] == ["rmse"]
    assert [s.name for s in select_plugins(specs, ["fourth-dist"])] == ["rmse", "fourth"]
