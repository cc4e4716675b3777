"""Every registered plugin passes the conformance kit (stiffbench.testing.conformance)."""

import pytest

from stiffbench.registry import Registry
from stiffbench.testing.conformance import check_method, check_metric, check_system

REGISTRY = Registry()


@pytest.mark.parametrize("name", list(REGISTRY.specs("systems")))
def test_system_conformance(name, session_cache):
    check_system(REGISTRY.load("systems", name), cache_dir=session_cache)


@pytest.mark.parametrize("name", list(REGISTRY.specs("methods")))
def test_method_conformance(name):
    check_method(REGISTRY.load("methods", name))


@pytest.mark.parametrize("name", list(REGISTRY.specs("metrics")))
def test_metric_conformance(name, hh_reference):
    system, reference = hh_reference
    window = system.evaluation_windows()[0]
    check_metric(REGISTRY.load("metrics", name), system, reference.window(window.t0, window.t1))
