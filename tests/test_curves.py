"""Training curves: thinned per cell from a model's loss history, stored with the cell."""

import math
from types import SimpleNamespace

import numpy as np

from stiffbench.curves import MAX_POINTS, kept_epochs, training_curves
from stiffbench.store import CellRecord, Store


def test_kept_epochs_all_or_evenly_spaced_with_both_ends():
    assert kept_epochs(4).tolist() == [0, 1, 2, 3]
    # 11 epochs into 6 points: linspace(0, 10, 6) = 0, 2, 4, 6, 8, 10
    assert kept_epochs(11, max_points=6).tolist() == [0, 2, 4, 6, 8, 10]
    keep = kept_epochs(5000)
    assert len(keep) == MAX_POINTS and keep[0] == 0 and keep[-1] == 4999


def test_training_curves_per_model_with_terms_and_nan_as_none():
    history = np.array([[4.0, 8.0], [2.0, math.nan], [1.0, math.inf]])
    model = SimpleNamespace(loss_history=history, loss_terms={"data": history / 2, "bad_length": history[:2]})
    first, second = training_curves(model, 2)
    assert first == {"epoch": [1, 2, 3], "loss": [4.0, 2.0, 1.0], "data": [2.0, 1.0, 0.5]}
    assert second == {"epoch": [1, 2, 3], "loss": [8.0, None, None], "data": [4.0, None, None]}


def test_no_curve_without_a_usable_history():
    assert training_curves(SimpleNamespace(), 2) == [None, None]
    assert training_curves(SimpleNamespace(loss_history=np.zeros((3, 1))), 2) == [None, None]  # wrong width
    assert training_curves(SimpleNamespace(loss_history=[1.0, 0.5]), 1) == [{"epoch": [1, 2], "loss": [1.0, 0.5]}]


def _record(key, curve=None):
    return CellRecord(key=key, system="s", method="m", label="m", seed=0, status="ok", metrics={}, curve=curve)


def test_store_round_trips_curves_and_a_rerun_without_one_drops_it(tmp_path):
    curve = {"epoch": [1, 2], "loss": [1.0, None]}
    with Store(tmp_path) as store:
        store.put(_record("a", curve))
        store.put(_record("b"))
        assert store.get("a").curve == curve
        assert store.get("b").curve is None
        assert [r.curve for r in store.records()] == [curve, None]
        store.rekey("a", "c", {})
        assert store.get("c").curve == curve
        store.put(_record("c"))  # recomputed by a method that reports no history
        assert store.get("c").curve is None
