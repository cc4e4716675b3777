"""freezing_survivors: freezes after the 1st, 2nd, 4th, 8th, ... epoch, never freezes garbage, and
unfreezes on exit."""

import gc
import weakref

import pytest

import stiffbench.gc_freeze as gc_freeze
from stiffbench.gc_freeze import freezing_survivors


@pytest.mark.slow
def test_freezes_after_power_of_two_epochs(monkeypatch):
    calls = []
    monkeypatch.setattr(gc_freeze.gc, "freeze", lambda: calls.append(len(calls)))
    frozen_after = []
    with freezing_survivors() as epoch_done:
        for epoch in range(1, 11):
            before = len(calls)
            epoch_done()
            if len(calls) > before:
                frozen_after.append(epoch)
    assert frozen_after == [1, 2, 4, 8]


class _Node:
    pass


def test_garbage_cycles_are_collected_not_frozen_and_exit_unfreezes():
    node = _Node()
    node.self = node  # a reference cycle: only the cyclic collector frees it
    dead = weakref.ref(node)
    del node
    survivor = [_Node() for _ in range(1000)]
    with freezing_survivors() as epoch_done:
        epoch_done()
        assert dead() is None
        assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_freeze_count() == 0


def test_unfreezes_when_the_loop_raises():
    with pytest.raises(RuntimeError):
        with freezing_survivors() as epoch_done:
            epoch_done()
            raise RuntimeError("training failed")
    assert gc.get_freeze_count() == 0
