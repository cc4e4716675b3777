"""Training checkpoints: an interrupted fit resumes from its last checkpoint and ends with exactly
the result of an uninterrupted fit; the saved state round-trips bitwise through the tensor-only
format, which refuses what it could not load; unreadable checkpoints are refused (more in
test_no_unpickling.py); the runner removes a batch's checkpoint once its results are stored;
`stiffbench run` resumes a killed batch."""

import re
import signal
import time

import numpy as np
import pytest
import torch

from stiffbench.api import FitConfig
from stiffbench.checkpoint import Checkpointer, checkpoint_path
from stiffbench.store import Store
from stiffbench_methods.pinode_sr import PINODESR
from stiffbench_methods.vanilla_node import VanillaNODE
from stiffbench_methods.vanilla_pinn import VanillaPINN
from test_methods import SMALL, task  # noqa: F401  (fixture)

EPOCHS = 7


class Interrupted(Exception):
    pass


def interrupt_after(epoch_to_stop: int):
    def progress(epoch, loss):
        if epoch == epoch_to_stop:
            raise Interrupted

    return progress


@pytest.mark.slow
@pytest.mark.parametrize(("method_cls", "params"), [(VanillaNODE, {"solver": "tsit5"}), (PINODESR, {}),
                                                    (VanillaPINN, {})], ids=["node-tsit5", "pinode_sr", "pinn"])
def test_resumed_fit_equals_uninterrupted_fit(method_cls, params, task, tmp_path):  # noqa: F811
    method = method_cls({**SMALL, **params})
    straight = method.fit(task, [0, 1], FitConfig(epochs=EPOCHS))
    ckpt = Checkpointer(tmp_path / "batch.pt", every_s=0.0)
    with pytest.raises(Interrupted):
        method.fit(task, [0, 1], FitConfig(epochs=EPOCHS, checkpoint=ckpt, progress=interrupt_after(4)))
    assert ckpt.path.exists()
    # the checkpoint is saved after each epoch's check: epoch 3 is the last one saved before the interrupt
    seen = []
    resumer = Checkpointer(ckpt.path, every_s=0.0)
    resumed = method.fit(task, [0, 1], FitConfig(epochs=EPOCHS, checkpoint=resumer,
                                                 progress=lambda epoch, loss: seen.append(epoch)))
    assert seen == list(range(4, EPOCHS + 1))
    assert resumer.resumed_train_s > 0  # the seconds spent before the interruption, for the cell's timing
    np.testing.assert_array_equal(resumed.loss_history, straight.loss_history)
    np.testing.assert_array_equal(resumed.forecast(task.forecast_t), straight.forecast(task.forecast_t))


def test_unreadable_checkpoint_starts_over(task, tmp_path):  # noqa: F811
    path = tmp_path / "batch.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="refused training checkpoint .*; training starts over"):
        model = VanillaNODE(SMALL).fit(task, [0], FitConfig(epochs=3, checkpoint=Checkpointer(path, every_s=0.0)))
    assert model.loss_history.shape == (3, 1)


def test_state_round_trips_bitwise_with_its_types(tmp_path):
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    module(torch.randn(4, 2)).sum().backward()
    opt.step()
    history = [np.array([1.5, np.nan, -0.0]), np.array([np.inf, 2.0, 1e-300])]
    state = {"epoch": 3, "module": module.state_dict(), "optimizer": opt.state_dict(), "history": history,
             "alive": np.array([True, False, True]), "train_s": 1.25, "extra": (np.arange(4, dtype=np.int32), None)}
    ckpt = Checkpointer(tmp_path / "batch.pt")
    ckpt.save(state)
    loaded = ckpt.load()
    assert ckpt.resumed_train_s == 1.25
    assert loaded["module"]._metadata == state["module"]._metadata  # versions that load_state_dict reads
    assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    torch.optim.Adam(module.parameters()).load_state_dict(loaded["optimizer"])
    for saved, back in [*zip(history, loaded["history"]), (state["alive"], loaded["alive"]),
                        (state["extra"][0], loaded["extra"][0])]:
        assert type(back) is np.ndarray and back.dtype == saved.dtype and back.tobytes() == saved.tobytes()
    assert type(loaded["history"]) is list and type(loaded["extra"]) is tuple and loaded["extra"][1] is None
    loaded["alive"] &= np.array([False, True, True])  # the training loop updates it in place
    assert loaded["alive"].tolist() == [False, False, True]


@pytest.mark.parametrize(("state", "where"), [({"train_s": np.float64(1.0)}, "state['train_s']"),
                                              ({"history": [np.zeros(2), object()]}, "state['history'][1]"),
                                              ({np.int64(0): 1}, "state")])
def test_save_refuses_what_would_not_load(state, where, tmp_path):
    with pytest.raises(TypeError, match=f"checkpoint {re.escape(where)} has"):
        Checkpointer(tmp_path / "batch.pt").save(state)
    assert not (tmp_path / "batch.pt").exists()


def test_checkpoint_names_depend_on_the_cells_only():
    assert checkpoint_path("d", ["b", "a"]) == checkpoint_path("d", ["a", "b"]) != checkpoint_path("d", ["a"])


@pytest.mark.slow
def test_runner_removes_checkpoints_and_cli_resumes_a_killed_batch(tmp_path):
    import fake_plugins
    from test_executors import cli, count_cells

    site = tmp_path / "site"
    fake_plugins.fake_distribution(site)
    suite = tmp_path / "long.toml"
    suite.write_text(
        'seeds = [0, 1]\nepochs = 1000\n[[systems]]\nname = "damped_oscillator"\n'
        '[[methods]]\nlabel = "node"\nmethod = "vanilla_node"\nparams = { hidden = [8], compile = false }\n'
    )
    store = tmp_path / "stiffbench-results"
    args = ("run", "--suite", str(suite), "--executor", "serial", "--checkpoint-every", "0.1")
    proc = cli(tmp_path, site, *args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((store / "checkpoints").glob("*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoints = list((store / "checkpoints").glob("*.pt"))
    assert checkpoints, "no checkpoint was written before the kill"
    spent_before = Checkpointer(checkpoints[0]).load()["train_s"]
    rerun = cli(tmp_path, site, *args)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resuming from epoch" in err
    assert count_cells(store) == 2 and not list((store / "checkpoints").glob("*"))
    with Store(store) as results:
        train_s = results._conn.execute("SELECT train_s FROM cells").fetchall()
    assert all(t >= spent_before / 2 for (t,) in train_s)  # batch time / 2 cells, including the time before the kill
