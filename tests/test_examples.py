"""The examples run and show what they claim (short settings)."""
import importlib.util
import sys
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


def test_from_scratch_tutorial_checks_every_step(capsys):
    r = load("from_scratch").main(["--epochs", "1", "--rows", "3000"])
    assert r["gd_error"] < 1e-9 and r["neuron_error"] < 1e-8 and r["softmax_error"] < 1e-8
    assert r["backprop_error"] < 1e-7
    # fastnn's kernels compute the reference's network to float64 rounding.
    assert r["gap"] < 1e-9 and r["accuracy"] == pytest.approx(r["reference_accuracy"])
    assert abs(r["accuracy32"] - r["accuracy"]) < 0.01  # float32 learns as well
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    out = capsys.readouterr().out
    assert "7. The same network on fastnn's kernels" in out and "x the NumPy speed" in out


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


def test_readme_main_job_runs_in_a_fresh_process(tmp_path):
    """The README's first command: examples/train_mnist.py as a script (a
    fresh interpreter: nothing imported beforehand, as on a new machine)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(EXAMPLES / "train_mnist.py"), "--epochs", "1"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "epoch" in out.stdout


def test_submodules_are_attributes_of_the_lazy_package():
    import subprocess
    import sys

    code = ("import fastnn; print('relu' in fastnn.engine.network.HIDDEN, fastnn.integrations.plots.__name__); "
            "print(hasattr(fastnn, 'nosuchthing'), hasattr(fastnn, '_private'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "fastnn.integrations.plots", "False", "False"]


def test_dir_shows_the_public_names_only():
    import fastnn
    import fastnn.datasets

    assert dir(fastnn) == sorted(fastnn.__all__)
    assert "_LAZY" not in dir(fastnn) and "importlib" not in dir(fastnn)
    assert dir(fastnn.datasets) == sorted(fastnn.datasets.__all__)
    assert not {"np", "os", "gzip"} & set(dir(fastnn.datasets))
    for name in fastnn.__all__ + fastnn.datasets.__all__:
        assert getattr(fastnn, name, None) is not None or \
            getattr(fastnn.datasets, name, None) is not None, name


def test_beyond_sklearn_balances_the_minority_class():
    pytest.importorskip("sklearn")
    results = load("beyond_sklearn").main(["--rows", "4000", "--max-iter", "15"])
    plain, balanced = (results[k] for k in ("fastnn, same settings",
                                            "fastnn, class_weight='balanced', adamw"))
    assert balanced["minority_recall"] > plain["minority_recall"]
    assert balanced["balanced_accuracy"] > plain["balanced_accuracy"]
