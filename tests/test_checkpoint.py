"""Training checkpoints: an interrupted fit resumes from its last checkpoint and ends with exactly
the result of an uninterrupted fit; unreadable checkpoints are ignored; the runner removes a
batch's checkpoint once its results are stored; `stiffbench run` resumes a killed batch."""

import signal
import time

import numpy as np
import pytest

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
    with pytest.warns(RuntimeWarning, match="unreadable training checkpoint"):
        model = VanillaNODE(SMALL).fit(task, [0], FitConfig(epochs=3, checkpoint=Checkpointer(path, every_s=0.0)))
    assert model.loss_history.shape == (3, 1)


def test_checkpoint_names_depend_on_the_cells_only():
    assert checkpoint_path("d", ["b", "a"]) == checkpoint_path("d", ["a", "b"]) != checkpoint_path("d", ["a"])


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
