"""The fastnn command line, driven in-process (and once as a subprocess)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn.cli import app as cli

pytestmark = pytest.mark.both_backends


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def data_npz(tmp_path, rng):
    x = rng.standard_normal((300, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    return path, x, y


def test_train_writes_model_history_and_plot(capsys, tmp_path, data_npz):
    path, x, y = data_npz
    model, hist, png = tmp_path / "m.npz", tmp_path / "h.json", tmp_path / "c.png"
    rc, out, err = run(capsys, "train", "--data", str(path), "--layers", "16,8", "--epochs", "4",
                       "--lr", "0.3", "--optimizer", "sgd", "--momentum", "0.5", "--seed", "1",
                       "--save", str(model), "--json", str(hist), "--plot", str(png))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("fastnn ") and "6-16-8-3" in lines[0]
    assert lines[1].startswith("task: classification, 3 classes (a multiclass target")
    assert lines[2].split() == ["epoch", "loss", "acc", "test_loss", "test_acc", "lr", "time"]
    assert [ln.split()[0] for ln in lines[3:7]] == ["1", "2", "3", "4"]
    record = json.loads(hist.read_text())
    assert record["layers"] == [6, 16, 8, 3] and len(record["history"]["loss"]) == 4
    assert len(record["history"]["test_accuracy"]) == 4
    net = fastnn.Network.load(model)
    final = net.evaluate(x[240:], y[240:])
    assert record["history"]["test_loss"][-1] == pytest.approx(final["loss"])
    assert f"test accuracy {100 * final['accuracy']:.2f}%" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_is_reproducible_and_matches_the_api(capsys, tmp_path, data_npz):
    path, x, y = data_npz
    m1 = tmp_path / "a.npz"
    rc, out, _ = run(capsys, "train", "--data", str(path), "--layers", "5", "--epochs", "2",
                     "--lr", "0.2", "--seed", "3", "--quiet", "--save", str(m1))
    assert rc == 0 and out == ""
    net = fastnn.Network([6, 5, 3], seed=3)
    net.fit(x[:240], y[:240], epochs=2, lr=0.2, batch_size=100)
    assert np.array_equal(fastnn.Network.load(m1).theta, net.theta)


def test_train_with_new_losses_activations_and_clipping_matches_the_api(capsys, tmp_path,
                                                                        data_npz, rng):
    path, x, y = data_npz
    m = tmp_path / "a.npz"
    rc, out, err = run(capsys, "train", "--data", str(path), "--layers", "5", "--epochs", "2",
                       "--lr", "0.2", "--seed", "3", "--quiet", "--save", str(m),
                       "--activation", "gelu", "--label-smoothing", "0.1", "--clip-norm", "0.5")
    assert rc == 0, err
    net = fastnn.Network([6, 5, 3], hidden="gelu", seed=3, label_smoothing=0.1)
    net.fit(x[:240], y[:240], epochs=2, lr=0.2, batch_size=100, clip_norm=0.5)
    back = fastnn.Network.load(m)
    assert np.array_equal(back.theta, net.theta) and back.label_smoothing == 0.1
    t = (x[:, :2] @ np.array([1.0, -1.0])).astype(np.float32)
    reg = tmp_path / "r.npz"
    np.savez(reg, x_train=x, y_train=t)
    rc, out, err = run(capsys, "train", "--data", str(reg), "--layers", "4", "--epochs", "2",
                       "--output", "huber", "--delta", "0.3", "--activation", "silu",
                       "--save", str(m), "--quiet")
    assert rc == 0, err
    back = fastnn.Network.load(m)
    assert (back.output, back.delta, back.hidden) == ("huber", 0.3, "silu")
    for bad, words in ((["--delta", "0", "--output", "huber"], "delta"),
                       (["--label-smoothing", "1"], "label_smoothing"),
                       (["--clip-norm", "-2"], "clip_norm")):
        rc, out, err = run(capsys, "train", "--data", str(path), "--epochs", "1", *bad)
        assert rc != 0 and words in err, (bad, err)


def test_train_csv_regression_with_validation_and_early_stopping(capsys, tmp_path, rng):
    x = rng.standard_normal((200, 3))
    t = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    csv = tmp_path / "r.csv"
    csv.write_text("a,b,c,target\n" + "\n".join(",".join(f"{v:.6f}" for v in row)
                                                 for row in np.column_stack([x, t])))
    rc, out, err = run(capsys, "train", "--data", str(csv), "--layers", "8", "--lr", "0.05",
                       "--epochs", "200", "--validation-split", "0.2", "--early-stopping",
                       "--patience", "3", "--activation", "tanh")
    assert rc == 0, err
    assert "identity" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("task: regression (a continuous target")
    assert out.splitlines()[2].split() == ["epoch", "loss", "val_loss", "lr", "time"]
    assert "restored the best epoch" in out


def test_evaluate_prints_the_confusion_matrix(capsys, tmp_path, data_npz):
    path, x, y = data_npz
    model = tmp_path / "m.npz"
    assert run(capsys, "train", "--data", str(path), "--epochs", "3", "--quiet", "--save",
               str(model))[0] == 0
    rc, out, _ = run(capsys, "evaluate", str(model), "--data", str(path))
    assert rc == 0
    net = fastnn.Network.load(model)
    pred = net.predict(x[240:])
    m = np.zeros((3, 3), int)
    np.add.at(m, (y[240:], pred), 1)
    rows = out.splitlines()[-3:]
    assert [list(map(int, r.split()[1:])) for r in rows] == m.tolist()
    assert f"accuracy {100 * (pred == y[240:]).mean():.2f}%" in out


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_predict_writes_labels_and_probabilities(capsys, tmp_path, data_npz, suffix):
    path, x, y = data_npz
    model = tmp_path / "m.npz"
    run(capsys, "train", "--data", str(path), "--epochs", "2", "--quiet", "--save", str(model))
    np.save(tmp_path / "x.npy", x[:7])
    net = fastnn.Network.load(model)
    out_file = tmp_path / ("p" + suffix)
    rc, _, err = run(capsys, "predict", str(model), "--input", str(tmp_path / "x.npy"),
                     "--output", str(out_file))
    assert rc == 0 and "wrote 7 predictions" in err
    got = np.load(out_file) if suffix == ".npy" else np.loadtxt(out_file, dtype=int)
    assert np.array_equal(got, net.predict(x[:7]))
    rc, out, _ = run(capsys, "predict", str(model), "--input", str(tmp_path / "x.npy"),
                     "--proba")
    assert np.allclose(np.loadtxt(out.splitlines(), delimiter=","), net.predict_proba(x[:7]),
                       rtol=1e-6)


def test_train_on_bundled_mnist_reproduces_the_classic_log(capsys, fastnn_backend):
    rc, out, _ = run(capsys, "train", "--epochs", "1", "--no-shuffle")
    assert rc == 0
    # The kernels' log says 92.38%; NumPy's rounding (and the float64
    # reference's) gives 92.37% for these parameters.
    line = out.splitlines()[3]
    assert "92.38%" in line or (fastnn_backend == "numpy" and "92.37%" in line), line


@pytest.mark.parametrize("argv,match", [
    (["train", "--data", "/no/such/dir"], "does not exist"),
    (["train", "--lr", "-1", "--epochs", "1"], "lr must be > 0"),
    (["train", "--epochs", "-2"], "--epochs must be >= 0"),
    (["train", "--early-stopping"], "needs --validation-split"),
    (["train", "--save", "/no/such/dir/m.npz"], "directory /no/such/dir does not exist"),
    (["evaluate", "/no/model.npz"], "does not exist"),
    (["predict", "__MODEL__", "--input", "/no/x.npy"], "does not exist"),
    (["predict", "__MODEL__", "--input", "__BADX__"], "features"),
])
def test_errors_are_one_line_with_status_1(capsys, tmp_path, argv, match):
    net = fastnn.Network([784, 3, 10], seed=0)
    net.save(tmp_path / "m.npz")
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    argv = [a.replace("__MODEL__", str(tmp_path / "m.npz")).replace(
        "__BADX__", str(tmp_path / "bad.npy")) for a in argv]
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and match in err
    assert "Traceback" not in err


def test_a_corrupt_model_file_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "m.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    rc, _, err = run(capsys, "evaluate", str(bad))
    assert rc == 1 and "not a readable fastnn model" in err


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"],
                                  ["predict", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    assert "usage: fastnn" in capsys.readouterr().out


def test_bad_flag_and_bad_choice_exit_2(capsys):
    for argv in (["train", "--bogus"], ["train", "--optimizer", "lbfgs"], ["frobnicate"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_module_entry_point_and_bench_help():
    r = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "usage: fastnn bench" in r.stdout
    r = subprocess.run([sys.executable, "-m", "fastnn", "predict"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--input" in r.stderr and "Traceback" not in r.stderr


def test_predict_with_stdout_closed_says_so_and_writes_files(capsys, tmp_path, data_npz):
    import os

    model = tmp_path / "m.npz"
    fastnn.Network([6, 3], seed=0).save(model)
    np.save(tmp_path / "x.npy", data_npz[1][:5])
    argv = [sys.executable, "-m", "fastnn", "predict", str(model), "--input",
            str(tmp_path / "x.npy")]
    r = subprocess.run(argv, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1))
    assert r.returncode == 1 and "standard output is closed: give --output" in r.stderr
    r = subprocess.run(argv + ["--output", str(tmp_path / "p.csv")], stderr=subprocess.PIPE,
                       text=True, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and np.loadtxt(tmp_path / "p.csv").shape == (5,)


def test_predict_csv_rules_on_the_command_line(capsys, tmp_path, data_npz):
    model = tmp_path / "m.npz"
    rc, _, err = run(capsys, "train", "--data", str(data_npz[0]), "--layers", "8", "--epochs",
                     "1", "--save", str(model), "--quiet")
    assert rc == 0, err
    width = data_npz[1].shape[1]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    rc, out, err = run(capsys, "predict", str(model), "--input", str(empty))
    assert rc == 1 and f"{empty}: no data rows" in err and "Warning" not in err
    named = tmp_path / "named.csv"
    named.write_bytes((",".join(f"colonne{i}é" for i in range(width)) + "\n"
                       + ",".join(["0.5"] * width) + "\n").encode("latin-1"))
    rc, out, err = run(capsys, "predict", str(model), "--input", str(named))
    assert rc == 0 and len(out.split()) == 1, err
    plain = tmp_path / "plain.csv"
    plain.write_text(",".join(["0.5"] * width) + "\n" + ",".join(["0.25"] * width) + "\n")
    rc, out, err = run(capsys, "predict", str(model), "--input", str(plain), "--csv-header",
                       "yes")
    assert rc == 0 and len(out.split()) == 1, err  # the first row was taken as a header


# ------------------------------------------------------------ target types
def _csv(path, x, y, fmt="%.6g"):
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt=fmt)
    return str(path)


def test_target_type_follows_scikit_learn(rng):
    multiclass = pytest.importorskip("sklearn.utils.multiclass")
    cases = [np.array([0, 1, 1, 0]), np.array([1.0, 2.0, 3.0]), np.array([151.0, 75.0, 141.0]),
             np.array([0.5, 1.0, 2.0]), np.array([-1, 1, -1]), np.array([[0, 1], [1, 0]]),
             np.array([[0, 2], [1, 0]]), np.array([[0.5, 1.0], [1.0, 2.0]]),
             rng.integers(0, 10, 50).astype(np.float32), rng.standard_normal(40),
             np.array([[1.0], [2.0], [3.0]]), np.array(["a", "b", "c"])]
    for y in cases:
        assert fastnn.datasets.target_type(y) == multiclass.type_of_target(y), y


def test_whole_number_quantities_ask_for_the_task(capsys, tmp_path, rng):
    """A regression target of whole numbers (scikit-learn's diabetes: 214
    distinct values 25-346 in 442 rows, written 151.0) is class labels by
    scikit-learn's rule; more classes than a fifth of the rows stops with a
    hint instead of building a 347-way softmax."""
    x = rng.standard_normal((442, 10))
    y = np.round(150 + 70 * x[:, 0] + 20 * rng.standard_normal(442)).clip(25, 346)
    path = _csv(tmp_path / "diabetes.csv", x, y, fmt="%.1f")
    rc, _, err = run(capsys, "train", "--data", path, "--epochs", "1")
    assert rc != 0 and "--task regress" in err and "distinct whole numbers in 442 rows" in err
    model = tmp_path / "m.npz"
    rc, out, err = run(capsys, "train", "--data", path, "--epochs", "3", "--task", "regress",
                       "--lr", "0.001", "--save", str(model))
    assert rc == 0, err
    assert "10-100-50-1 relu/identity" in out and "task: regression (--task regress)" in out
    rc, out, err = run(capsys, "evaluate", str(model), "--data", path)
    assert rc == 0 and "RMSE " in out and "MAE " in out and "R\u00b2 " in out
    assert "confusion" not in out


def test_labels_are_classified_and_the_header_says_so(capsys, tmp_path, rng):
    x = rng.standard_normal((150, 4))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    path = _csv(tmp_path / "iris.csv", x, y, fmt="%g")
    rc, out, err = run(capsys, "train", "--data", path, "--epochs", "2")
    assert rc == 0, err
    assert "4-100-50-3 relu/softmax" in out
    assert "task: classification, 3 classes (a multiclass target" in out
    rc, out, err = run(capsys, "train", "--data", path, "--epochs", "1", "--task", "regress")
    assert rc == 0 and "relu/identity" in out
    # Fractions cannot be classes, even when asked.
    path = _csv(tmp_path / "q.csv", x, x[:, 0] * 1.5)
    rc, _, err = run(capsys, "train", "--data", path, "--epochs", "1", "--task", "classify")
    assert rc != 0 and "fractions" in err


def test_a_loss_that_explodes_is_named_and_the_table_stays_aligned(capsys, tmp_path, rng):
    # scikit-learn's diabetes data in shape: features ~0.05, targets 25-346.
    x = rng.standard_normal((442, 10)) * 0.05
    y = 150 + 1400 * x[:, 0] + 0.5
    path = _csv(tmp_path / "big.csv", x, y)
    rc, out, err = run(capsys, "train", "--data", path, "--epochs", "3", "--lr", "0.5")
    assert rc == 0, err
    assert "--lr 0.5 is too large" in err and "-fold over the first epoch" in err
    table = [ln for ln in out.splitlines() if ln[:5].strip().isdigit() or ln.startswith("epoch")]
    assert len(table) >= 2
    # Every column ends at the same place on every line.
    ends = [[i for i in range(1, len(ln)) if ln[i] == " " and ln[i - 1] != " "] + [len(ln)]
            for ln in table]
    assert all(e == ends[0] for e in ends), table
