"""`stiffbench bench training` at toy size: the result's keys, and that the plain torchdiffeq path and
stiffbench's batched path compute the same gradient."""

import argparse
import json

import pytest
import torch

from stiffbench import bench

pytestmark = pytest.mark.slow  # the developer loop's fast selection: pytest -m 'not slow'

KEYS = {"baseline_ms_per_model_epoch", "ms_per_model_epoch", "models_batched", "ratio", "max_rel_grad_diff"}


@pytest.fixture(scope="module")
def result(hh_reference):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bench.training_benchmark(models=6, epochs=1, compile=False, steps=30, baseline_epochs=1)
    torch.set_num_threads(previous)


def test_result_keys_and_values(result):
    assert KEYS <= set(result) and result["models_batched"] == 6 and result["steps"] == 30
    assert result["ms_per_model_epoch"] > 0 and result["baseline_ms_per_model_epoch"] > 0
    assert result["ratio"] == pytest.approx(result["baseline_ms_per_model_epoch"] / result["ms_per_model_epoch"])


def test_same_gradient_as_plain_torchdiffeq(result):
    assert result["max_rel_grad_diff"] < 1e-10
    assert result["max_rel_grad_diff_float32"] < 1e-4


def test_paper_batch_cycles_variants_then_seeds(hh_reference):
    members = bench.paper_members(7, "float32", False, 10)
    assert [m.seed for m in members] == [0, 0, 0, 0, 0, 1, 1]
    assert [m.params.lam for m in members] == [1.5, 0.0, 1.5, 0.5, 2.5, 1.5, 0.0]
    clean, noisy = members[2].task.observations.y, members[0].task.observations.y
    assert clean.shape == (11, 4) and (clean != noisy).any()


def test_main_prints_table_and_writes_json(result, monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(bench, "training_benchmark", lambda **kwargs: calls.append(kwargs) or result)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    path = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(parser.parse_args(["--json", str(path), "--models", "6", "--no-compile"])) == 0
    finally:
        torch.set_num_threads(threads)
    assert "ratio" in capsys.readouterr().out
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    kwargs = calls[0]
    assert callable(kwargs.pop("log")) and kwargs == {"models": 6, "epochs": 3, "device": "cpu", "compile": False}
    with pytest.raises(SystemExit):
        parser.parse_args(["--models", "0"])
