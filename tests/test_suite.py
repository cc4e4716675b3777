"""Suite files: valid ones load, malformed ones give one-line SuiteErrors naming the field."""

import pytest

from stiffbench.suite import SuiteError, load_suite

VALID = """
seeds = [0, 1]
epochs = 3
[[systems]]
name = "hh"
[[methods]]
label = "a"
method = "vanilla_node"
params = { lr = 0.01 }
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_builtin_quick_suite_loads():
    suite = load_suite("quick")
    assert suite.name == "quick"
    assert [m.method for m in suite.methods] == ["pinode_sr", "vanilla_node", "vanilla_pinn"]
    assert [s.name for s in suite.systems] == ["hh"]


def test_valid_suite_from_path(tmp_path):
    suite = load_suite(write(tmp_path, VALID, "mine.toml"))
    assert suite.name == "mine" and suite.seeds == [0, 1] and suite.methods[0].params == {"lr": 0.01}
    assert suite.budget_s is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        (VALID.replace("seeds = [0, 1]", "seeds = []"), "seeds"),
        (VALID.replace("seeds = [0, 1]", "seeds = [1, 1]"), "seeds must be unique"),
        (VALID.replace("epochs = 3", "epochs = -1"), "epochs"),
        (VALID.replace("epochs = 3", "epochs = 'ten'"), "epochs"),
        (VALID + "budget_s = -5\n", "budget_s"),
        (VALID + "colour = 'red'\n", "colour"),
        (VALID + '[[methods]]\nlabel = "a"\nmethod = "pinode_sr"\n', "duplicate method labels: a"),
        (VALID.replace('label = "a"\n', ""), "methods.0.label"),
        ("seeds = [0\n", "invalid TOML"),
    ],
)
def test_malformed_suites_are_one_line_errors(tmp_path, text, fragment):
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_unknown_suite_name_lists_builtins():
    with pytest.raises(SuiteError, match="not a built-in suite.*quick"):
        load_suite("no_such_suite")


def test_missing_suite_file(tmp_path):
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(str(tmp_path / "absent.toml"))


def test_paper_values_must_use_declared_keys(tmp_path):
    """The deprecated form of published values: [paper] keys and each method's `paper`."""
    good = VALID.replace('params = { lr = 0.01 }', 'params = { lr = 0.01 }\npaper = { rmse_V = 3.12 }')
    good += '[paper]\nsource = "Table 2"\nkeys = { rmse_V = ["extrapolation"] }\n'
    with pytest.warns(DeprecationWarning, match="paper.values"):
        suite = load_suite(write(tmp_path, good))
    assert suite.methods[0].paper == {"rmse_V": 3.12} and suite.paper.keys == {"rmse_V": ["extrapolation"]}
    bad = good.replace("paper = { rmse_V = 3.12 }", "paper = { spike_f1 = 0.9 }")
    with pytest.raises(SuiteError, match="not declared in \\[paper\\] keys: spike_f1"):
        load_suite(write(tmp_path, bad))


@pytest.mark.parametrize(("name", "n_variants", "n_pairs"), [
    ("quick", 3, 3), ("smoke", 3, 12), ("paper", 23, 23), ("paper-ablations", 9, 9),
    # 14 system entries x 8 learning methods (hybrid_ude n/a where no known terms are declared),
    # physics_fit on the 10 fhn, vdp, ML, HR and HH entries,
    # its stiff variant on the 6 stiff ones, sindy-neuron on morris_lecar and hh
    ("ladder", 11, 14 * 8 + 10 + 6 + 2),
])
def test_builtin_suites_expand_into_valid_cells(name, n_variants, n_pairs):
    """Every variant of every built-in suite validates against its plugins' parameters."""
    from stiffbench.registry import Registry
    from stiffbench.runner import expand_cells

    suite = load_suite(name)
    cells = expand_cells(suite, Registry())
    assert len({c.label for c in cells}) == n_variants
    assert len(cells) == n_pairs * len(suite.seeds) and len({c.key for c in cells}) == len(cells)


@pytest.mark.parametrize("params, fragment", [
    ('{ lr = "0.01" }', "lr: expected a number or boolean, got the string '0.01'"),
    ('{ hidden = ["8"] }', "hidden[0]: expected a number or boolean"),
    ('{ layer_norm = "true" }', "layer_norm: expected a number or boolean"),
])
def test_numbers_are_never_read_from_strings(tmp_path, params, fragment):
    from stiffbench.registry import Registry
    from stiffbench.runner import expand_cells

    suite = load_suite(write(tmp_path, VALID.replace("params = { lr = 0.01 }", f"params = {params}")))
    with pytest.raises(SuiteError) as info:
        expand_cells(suite, Registry())
    assert fragment in str(info.value) and "\n" not in str(info.value)
