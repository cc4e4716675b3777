"""Malformed input never gives a traceback: exit code 2 and one line naming the problem.

Hypothesis mutates a valid suite in one way that makes it invalid (missing key, wrong type,
empty or duplicate seeds, negative budget, duplicate labels, unknown names or parameters, broken
TOML); hand-written cases cover the CLI's own arguments.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stiffbench.cli import main

VALID = {"seeds": [0], "epochs": 1, "systems": [{"name": "hh"}], "methods": [{"label": "a", "method": "vanilla_node"}]}
KNOWN_TOP = {"seeds", "epochs", "budget_s", "systems", "methods", "description"}
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
not_ints = st.one_of(st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)))


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def to_toml(suite: dict) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in suite.items() if k not in ("systems", "methods")]
    for table in ("systems", "methods"):
        for entry in suite.get(table, []):
            lines.append(f"[[{table}]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def copy():
    return json.loads(json.dumps(VALID))


@st.composite
def malformed_suites(draw):
    suite = copy()
    kind = draw(st.sampled_from([
        "drop_top", "drop_method_key", "seeds_empty", "seeds_dup", "seeds_type", "seeds_negative", "epochs_bad",
        "epochs_type", "budget_bad", "unknown_top", "unknown_system", "unknown_method", "unknown_param",
        "param_type", "dup_label", "broken_toml",
    ]))
    if kind == "drop_top":
        del suite[draw(st.sampled_from(["seeds", "epochs", "systems", "methods"]))]
    elif kind == "drop_method_key":
        del suite["methods"][0][draw(st.sampled_from(["label", "method"]))]
    elif kind == "seeds_empty":
        suite["seeds"] = []
    elif kind == "seeds_dup":
        seed = draw(st.integers(0, 100))
        suite["seeds"] = [seed, seed]
    elif kind == "seeds_type":
        suite["seeds"] = [draw(not_ints)]
    elif kind == "seeds_negative":
        suite["seeds"] = [draw(st.integers(max_value=-1))]
    elif kind == "epochs_bad":
        suite["epochs"] = draw(st.integers(max_value=0))
    elif kind == "epochs_type":
        suite["epochs"] = draw(not_ints)
    elif kind == "budget_bad":
        suite["budget_s"] = draw(st.one_of(st.floats(max_value=0, allow_nan=False, allow_infinity=False), st.text(max_size=4)))
    elif kind == "unknown_top":
        suite[draw(identifiers.filter(lambda k: k not in KNOWN_TOP))] = 1
    elif kind == "unknown_system":
        suite["systems"][0]["name"] = draw(identifiers.filter(lambda n: n != "hh"))
    elif kind == "unknown_method":
        suite["methods"][0]["method"] = draw(identifiers.filter(lambda n: n not in ("vanilla_node", "vanilla_pinn", "pinode_sr")))
    elif kind == "unknown_param":
        from stiffbench_methods.vanilla_node import VanillaNODE

        suite["methods"][0]["params"] = {draw(identifiers.filter(lambda k: k not in VanillaNODE.Params.model_fields)): 1}
    elif kind == "param_type":
        suite["methods"][0]["params"] = {"lr": draw(st.one_of(st.text(max_size=4), st.floats(max_value=0, allow_nan=False, allow_infinity=False)))}
    elif kind == "dup_label":
        suite["methods"].append({"label": "a", "method": "pinode_sr"})
    text = to_toml(suite)
    if kind == "broken_toml":
        text += draw(st.sampled_from(["[[methods]\n", "epochs = \n", "seeds = [0,\n", "= 3\n", "label = 'a\n"]))
    return kind, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=malformed_suites())
def test_malformed_suites_exit_2_with_one_line(tmp_path, capsys, case):
    kind, text = case
    path = tmp_path / "suite.toml"
    path.write_text(text)
    code = main(["run", "--suite", str(path), "--store", str(tmp_path / "res"), "--executor", "serial"])
    out, err = capsys.readouterr()
    assert code == 2, (kind, text, out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("stiffbench: error:"), (kind, err)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
        (["run", "--executor", "threads"], "invalid choice: 'threads'"),
        (["run", "--workers", "0"], "must be at least 1"),
        (["run", "--workers", "two"], "not an integer"),
        (["run", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --executor dask"),
        (["run", "--suite", "nonexistent_suite"], "unknown suite 'nonexistent_suite'"),
        (["run", "--suite", "missing.toml"], "suite file not found"),
        (["leaderboard", "--suite", "missing.toml"], "suite file not found"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required"),
    ],
)
def test_cli_argument_errors(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_store_that_is_not_a_database(tmp_path, capsys):
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"\x00junk" * 1000)
    code = main(["leaderboard", "--store", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "not a readable stiffbench store" in err and len(err.strip().splitlines()) == 1
