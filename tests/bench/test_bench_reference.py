"""Reference-data generation: the HH LSODA reference (integrated to the 1000 ms horizon) uncached."""

import itertools

import numpy as np
import pytest

from stiffbench_systems.hh import HodgkinHuxley

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'


@pytest.mark.benchmark(group="reference")
def test_hh_reference_uncached(benchmark, tmp_path):
    fresh = (tmp_path / f"cache{i}" for i in itertools.count())  # a new, empty cache for every round
    ref = benchmark.pedantic(lambda: HodgkinHuxley().reference(100.0, cache_dir=next(fresh)), rounds=3)
    assert ref.y.shape == (10001, 4) and np.isfinite(ref.y).all()
    np.testing.assert_allclose(ref.y[0], HodgkinHuxley().params.y0, rtol=1e-12)
    assert ref.y[:, 0].max() > 20 and ref.y[:, 0].min() < -70  # spikes and after-hyperpolarisation
