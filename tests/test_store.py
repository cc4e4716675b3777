"""SQLite store: round trip, finality of statuses, forecast checksums, refusing non-stores."""

import numpy as np
import pytest

from stiffbench.store import CellRecord, Store, StoreError


def record(key, status="ok", **kw):
    return CellRecord(key=key, system="hh", method="m", label="m", seed=0, status=status,
                      metrics={"w": {"rmse_V": 1.5, "spike_f1": None}}, provenance={"seed": 0}, **kw)


def test_round_trip_with_forecast(tmp_path):
    t, y = np.linspace(0, 1, 11), np.arange(22.0).reshape(11, 2)
    with Store(tmp_path / "res") as store:
        store.put(record("k1", train_s=2.5), (t, y))
    with Store(tmp_path / "res") as store:
        rec = store.get("k1")
        assert rec.metrics == {"w": {"rmse_V": 1.5, "spike_f1": None}} and rec.train_s == 2.5
        t2, y2 = store.load_forecast(rec)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(t2, t)


def test_error_statuses_are_retried(tmp_path):
    with Store(tmp_path) as store:
        for key, status in [("a", "ok"), ("b", "error"), ("c", "diverged"), ("d", "load_error"), ("e", "n/a")]:
            store.put(record(key, status))
        assert store.final_keys("abcdef") == {"a", "c", "e"}


def test_corrupted_forecast_is_not_read(tmp_path):
    with Store(tmp_path) as store:
        store.put(record("k"), (np.zeros(3), np.zeros((3, 1))))
        path = store.forecast_path("k")
        path.write_bytes(path.read_bytes()[:-10])
        assert store.load_forecast(store.get("k")) is None


def test_non_store_file_is_refused(tmp_path):
    bad = tmp_path / "store.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a readable stiffbench store"):
        Store(tmp_path)


def test_unknown_status_rejected():
    with pytest.raises(ValueError):
        record("k", status="great")


def test_cell_with_corrupted_forecast_is_not_final(tmp_path):
    with Store(tmp_path) as store:
        store.put(record("k"), (np.zeros(3), np.zeros((3, 1))))
        assert store.final_keys(["k"]) == {"k"}
        store.forecast_path("k").write_bytes(b"garbage")
        assert store.final_keys(["k"]) == set()
        assert store.claim(["k"], "me") == {"k"}


def test_claims_exclude_other_live_runs_and_take_over_dead_ones(tmp_path):
    import os

    with Store(tmp_path) as store:
        assert store.claim(["a", "b"], "run-1") == {"a", "b"}
        assert store.claim(["a", "b", "c"], "run-2") == {"c"}  # run-1 (this live pid) holds a and b
        store.release(["a"], "run-1")
        assert store.claim(["a"], "run-2") == {"a"}
        store._conn.execute("UPDATE claims SET pid=? WHERE key='b'", (2**22 + 12345,))  # a pid that is not running
        assert not os.path.exists(f"/proc/{2**22 + 12345}")
        assert store.claim(["b"], "run-2") == {"b"}


def test_cell_without_its_forecast_file_stays_final(tmp_path):
    with Store(tmp_path) as store:
        store.put(record("k"), (np.zeros(3), np.zeros((3, 1))))
        store.forecast_path("k").unlink()
        assert store.final_keys(["k"]) == {"k"}
        assert store.load_forecast(store.get("k")) is None  # but it cannot be rescored


def test_claims_from_another_host_hold_unless_taken_over(tmp_path):
    with Store(tmp_path) as store:
        store._conn.execute("INSERT INTO claims VALUES ('a', 'elsewhere:1:x', 'elsewhere', 1, '2026-01-01T00:00:00+00:00')")
        assert store.claim(["a", "b"], "me") == {"b"}  # pid 1 on another host cannot be checked: respected
        assert store.claimants(["a"]) == [("elsewhere", "1", "2026-01-01T00:00:00+00:00")]
        assert len(store.claimants(["a", "b"])) == 2
        assert store.claim(["a", "b"], "me", take_over=True) == {"a", "b"}
        assert [h for h, _, _ in store.claimants(["a"])] != ["elsewhere"]
