"""docs/plugin-tutorial.md works as written: its code blocks are the example packages' files, and its
commands, run in order in a fresh virtual environment that sees the installed stiffbench, install
each example, pass its tests, and put exactly its rows (the method) or its columns (the metric) in
the leaderboards."""

import importlib
import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from stiffbench.api import FitConfig
from stiffbench.registry import Registry
from stiffbench.runner import expand_cells
from stiffbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "plugin-tutorial.md"
EXAMPLES = ROOT / "examples"
METHOD, METRIC = EXAMPLES / "stiffbench-example-method", EXAMPLES / "stiffbench-example-metric"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)

# The files the tutorial shows whole; any other block it shows is an excerpt of an example file.
SHOWN_WHOLE = [
    METHOD / "stiffbench_example_method" / "linear_ode.py",
    METHOD / "pyproject.toml",
    METHOD / "linear-ode.toml",
    METHOD / "tests" / "test_benchmark.py",
    METRIC / "stiffbench_example_metric" / "max_abs_error.py",
    METRIC / "pyproject.toml",
    METRIC / "max-abs-error.toml",
]


def blocks(*languages: str) -> list[str]:
    return [code for lang, code in FENCE.findall(TUTORIAL.read_text(encoding="utf-8")) if lang in languages]


def test_the_tutorial_shows_the_example_files_as_they_are():
    shown = blocks("python", "toml")
    for path in SHOWN_WHOLE:
        assert path.read_text(encoding="utf-8") in shown, f"{path.relative_to(ROOT)} differs from its tutorial block"
    sources = [p.read_text(encoding="utf-8") for p in EXAMPLES.rglob("*") if p.suffix in (".py", ".toml")]
    for block in shown:
        assert any(block in source for source in sources), f"a tutorial block is in no example file:\n{block[:200]}"


@pytest.mark.slow
def test_the_metric_suite_cell_is_the_quick_suite_cell():
    """As the tutorial says: same system, method, parameters, seed and epochs give the same key."""
    registry = Registry()
    (cell,) = expand_cells(load_suite(str(METRIC / "max-abs-error.toml")), registry)
    quick = expand_cells(load_suite("quick"), registry)
    assert [c.key for c in quick if c.label == "vanilla_pinn" and c.seed == 0] == [cell.key]


# ----------------------------------------------------------------------------------------------
# The tutorial's commands, in a fresh virtual environment
# ----------------------------------------------------------------------------------------------

def fresh_venv(folder: Path) -> Path:
    """A virtual environment that sees this environment's packages (stiffbench, torch, pip,
    pytest) through a .pth file, with stiffbench's console script as pip writes it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # addsitedir, not a plain path line: the editable install of stiffbench is itself a .pth file.
    (Path(purelib) / "parent-environment.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    script = folder / "bin" / "stiffbench"
    script.write_text(f"#!{python}\nimport sys\nfrom stiffbench.cli import main\nsys.exit(main())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def builds_wheels_offline() -> bool:
    """Whether this environment's setuptools builds a wheel by itself: from 70.1 on it has
    bdist_wheel, before that it needs the wheel package."""
    try:
        version = tuple(int(part) for part in md.version("setuptools").split(".")[:2])
    except md.PackageNotFoundError:
        return False
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def activated(venv: Path) -> dict[str, str]:
    """The environment of an activated `venv`. pip builds the examples with this environment's
    setuptools, offline (pip reads PIP_NO_BUILD_ISOLATION=0 as build_isolation = False), where
    that setuptools can; otherwise in an isolated build whose setuptools comes from pip's
    configured package sources, those that installed this environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STIFFBENCH_DISABLE_PLUGIN_AUTOLOAD")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv), PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    if builds_wheels_offline():
        env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0")
    return env


def tables(markdown: str) -> list[dict[str, dict[str, str]]]:
    """Each leaderboard table as {row label: {column header: cell text}}."""
    out = []
    for table in re.findall(r"^(\| method .*?)\n\n", markdown + "\n\n", re.S | re.M):
        header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
        out.append({row[0]: dict(zip(header, row)) for row in rows})
    return out


@pytest.mark.slow
def test_the_tutorial_commands_as_written(tmp_path):
    work = tmp_path / "repo"  # a copy: pip builds in the package's folder, and results go to the working folder
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__")
    shutil.copytree(EXAMPLES, work / "examples", ignore=skip)
    env = activated(fresh_venv(tmp_path / "venv"))
    output = []
    for block in blocks("bash"):
        result = subprocess.run(["bash", "-e", "-c", block], cwd=work, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
        output.append(result.stdout + result.stderr)
    install, run, method_tests, metric_tests, metric_run, rescore = output

    assert re.search(r"linear_ode .* stiffbench-example-method 0\.1\.0", install)
    assert "cells: 2 total, 0 cached, 2 to run" in run
    assert re.search(r"\d+ passed", method_tests)
    assert "test_fit_and_forecast_20001_times" in method_tests and "Mean" in method_tests  # the timing table
    assert re.search(r"\d+ passed", metric_tests)
    assert "cells: 1 total, 0 cached, 1 to run" in metric_run
    assert "rescored 2 cell(s); 0 without a usable forecast" in rescore

    results = work / "tutorial-results"
    linear = tables((results / "linear-ode.md").read_text())
    assert len(linear) == 2 and all(list(t) == ["linear_ode", "linear_ode-stable"] for t in linear)
    extrapolation = linear[0]
    assert float(extrapolation["linear_ode"]["rmse_V (mV)"]) > 1e6
    stable = extrapolation["linear_ode-stable"]
    assert 50 < float(stable["rmse_V (mV)"]) < 500 and float(stable["spike_f1"]) == 0
    assert all("max_abs_V (mV)" in row and row["max_abs_n"] != "–" for t in linear for row in t.values())

    pinn = tables((results / "max-abs-error.md").read_text())
    assert len(pinn) == 2 and all(list(t) == ["vanilla_pinn"] for t in pinn)
    row = pinn[0]["vanilla_pinn"]
    max_abs_v = float(row["max_abs_V (mV)"])  # about a spike's height (-65 to +40 mV), several RMSEs
    assert float(row["spike_f1"]) == 0 and 70 < max_abs_v < 140 and max_abs_v > 3 * float(row["rmse_V (mV)"])


@pytest.fixture
def linear_ode(monkeypatch):
    """The example method's module, imported from its folder (it is not installed here)."""
    monkeypatch.syspath_prepend(str(METHOD))
    yield importlib.import_module("stiffbench_example_method.linear_ode")
    for name in [m for m in sys.modules if m.startswith("stiffbench_example_method")]:
        del sys.modules[name]


@pytest.mark.slow
def test_the_fitted_hh_model_grows_at_the_rate_the_tutorial_gives(linear_ode):
    task = Registry().load("systems", "hh")().training_task()
    model = linear_ode.LinearODE().fit(task, [0], FitConfig(epochs=1))
    assert np.max(np.linalg.eigvals(model.A).real) == pytest.approx(0.13, abs=0.005)  # per ms
