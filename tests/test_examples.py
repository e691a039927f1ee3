"""The examples run and show what they claim (short settings)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_linear_regression_converges_to_the_pinv_solution(capsys):
    learned, exact = load("linear_regression").main([])
    np.testing.assert_allclose(learned, exact, rtol=1e-9, atol=1e-9)
    assert "max |difference|" in capsys.readouterr().out


def test_regression_example_fits_well():
    pytest.importorskip("sklearn")
    results = load("regression").main(["--epochs", "30"])
    assert results["Network"] > 0.95 and results["MLPRegressor"] > 0.9


def test_sklearn_swap_runs_both():
    pytest.importorskip("sklearn")
    results = load("sklearn_swap").main(["--max-iter", "1", "--train-rows", "3000"])
    assert set(results) == {"scikit-learn", "fastnn"}


def test_learning_curves_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = load("learning_curves").main(["--epochs", "1", "--out", str(tmp_path / "c.png")])
    assert Path(out).read_bytes()[:4] == b"\x89PNG"


def test_train_mnist_example_classic_log(capsys):
    load("train_mnist").main(["--epochs", "1"])
    assert "92.38%" in capsys.readouterr().out
