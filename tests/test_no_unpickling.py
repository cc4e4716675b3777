"""Nothing is unpickled from disk: a pickle payload placed where stiffbench reads a checkpoint, a
forecast or a cache entry is refused with one line naming the file, and never runs.

Each payload's `__reduce__` creates a marker file when unpickled; each test first shows that the
payload is live (an unpickling load does create its marker), then that stiffbench's load does not."""

import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch

from stiffbench.cache import cached_arrays
from stiffbench.checkpoint import Checkpointer
from stiffbench.hashing import config_hash, file_sha256
from stiffbench.store import Store
from test_store import record


class Touch:
    """Unpickling this creates `marker`."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class Plain:
    """A custom class without tricks: still not a tensor, so still refused."""


def pickle_payload(path, marker):
    path.write_bytes(pickle.dumps({"epoch": 1, "x": Touch(marker)}))


def torch_payload(path, marker):
    torch.save({"epoch": 1, "module": {"w": torch.zeros(2)}, "x": Touch(marker)}, path)


def one_warning(caught, path) -> str:
    """The message of the single warning in `caught`, checked to be one RuntimeWarning line naming path."""
    assert [w.category for w in caught] == [RuntimeWarning], [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "\n" not in message and str(path) in message and "refused" in message
    return message


def load_checkpoint(path, log=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = Checkpointer(path, log=log).load()
    return state, caught


@pytest.mark.parametrize(("write", "unpickle"), [
    (pickle_payload, lambda path: pickle.loads(path.read_bytes())),
    (torch_payload, lambda path: torch.load(path, weights_only=False)),
], ids=["pickle", "torch.save"])
def test_checkpoint_payload_is_refused_not_run(write, unpickle, tmp_path):
    write(tmp_path / "live.pt", tmp_path / "live")
    unpickle(tmp_path / "live.pt")
    assert (tmp_path / "live").exists()  # the payload runs when unpickled

    path, marker = tmp_path / "batch.pt", tmp_path / "marker"
    write(path, marker)
    state, caught = load_checkpoint(path)
    assert state is None and not marker.exists()
    one_warning(caught, path)


@pytest.mark.parametrize("content", [
    lambda path: torch.save({"epoch": 1, "x": Plain()}, path),
    lambda path: path.write_bytes(b"\x80\x04random bytes" * 10),
    lambda path: path.write_bytes(b""),
    lambda path: (Checkpointer(path).save({"epoch": 1, "w": torch.zeros(1000)}),
                  path.write_bytes(path.read_bytes()[:-100])),
    lambda path: torch.save([torch.zeros(2)], path),
], ids=["custom-class", "random-bytes", "empty", "truncated", "not-a-dict"])
def test_other_unloadable_checkpoints_are_refused(content, tmp_path):
    path = tmp_path / "batch.pt"
    content(path)
    state, caught = load_checkpoint(path)
    assert state is None
    one_warning(caught, path)


def test_refusal_goes_to_the_log_when_there_is_one(tmp_path):
    path, marker = tmp_path / "batch.pt", tmp_path / "marker"
    torch_payload(path, marker)
    lines = []
    state, caught = load_checkpoint(path, log=lines.append)
    assert state is None and not marker.exists() and not caught
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(f"refused training checkpoint {path}: not a tensor-only checkpoint (UnpicklingError: ")
    assert lines[0].endswith("); training starts over")


def store_with_forecast(tmp_path) -> Store:
    """A store holding cell k with its forecast file."""
    store = Store(tmp_path / "res")
    store.put(record("k"), (np.linspace(0, 1, 3), np.zeros((3, 1))))
    return store


def refuse_forecast(store, path):
    """load_forecast of cell k after `path` was replaced and the row given its digest: None, one warning."""
    rec = store.get("k")
    rec.forecast_sha256 = file_sha256(str(path))
    store.put(rec)  # the row now vouches for the replaced file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load_forecast(store.get("k")) is None
    one_warning(caught, path)


def test_forecast_pickle_payload_is_refused_not_run(tmp_path):
    live = tmp_path / "live.npz"
    live.write_bytes(pickle.dumps(Touch(tmp_path / "live")))
    np.load(live, allow_pickle=True)
    assert (tmp_path / "live").exists()  # the payload runs when numpy may unpickle

    marker = tmp_path / "marker"
    with store_with_forecast(tmp_path) as store:
        path = store.forecast_path("k")
        path.write_bytes(pickle.dumps({"t": Touch(marker)}))
        refuse_forecast(store, path)
    assert not marker.exists()


def test_forecast_with_object_arrays_is_refused(tmp_path):
    marker = tmp_path / "marker"
    with store_with_forecast(tmp_path) as store:
        path = store.forecast_path("k")
        with open(path, "wb") as fh:
            np.savez(fh, t=np.array([Touch(marker)], dtype=object), y=np.zeros((1, 1)))
        refuse_forecast(store, path)
    assert not marker.exists()


def test_cache_entry_with_pickle_payload_is_recomputed(tmp_path):
    config, marker = {"system": "x"}, tmp_path / "marker"
    cached_arrays(tmp_path, "ref", config, lambda: {"a": np.zeros(2)})
    path = tmp_path / f"ref-{config_hash(config)}.npz"
    path.write_bytes(pickle.dumps(Touch(marker)))
    path.with_suffix(".sha256").write_text(file_sha256(str(path)) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arrays = cached_arrays(tmp_path, "ref", config, lambda: {"a": np.ones(2)})
    np.testing.assert_array_equal(arrays["a"], np.ones(2))
    assert not marker.exists()
    one_warning(caught, path)
