"""ONNX export: onnxruntime's outputs equal predict_proba for every
activation and head, float32 and float64, MNIST and a regression model."""
import numpy as np
import pytest

import fastnn
from fastnn.engine.registry import ACTIVATIONS

pytestmark = pytest.mark.both_backends

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["output"], {"input": x})[0]


@pytest.mark.parametrize("hidden", list(ACTIVATIONS))
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity", "poisson"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnxruntime_equals_predict_proba(rng, hidden, output, dtype):
    net = fastnn.Network([7, 9, 5, 3], hidden=hidden, output=output, seed=1, dtype=dtype,
                         init="glorot")
    x = rng.standard_normal((23, 7)).astype(dtype)
    model = net.to_onnx()
    assert model.opset_import[0].version >= 17
    inp = model.graph.input[0]
    assert inp.name == "input" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    got = run(model, x)
    assert got.dtype == np.dtype(dtype)
    # (float64 GELU: onnxruntime's erf is float32's; see the registry)
    single = dtype == "float32" or hidden == "gelu"
    np.testing.assert_allclose(got, net.predict_proba(x), rtol=1e-5 if single else 1e-12,
                               atol=1e-6 if single else 1e-14)
    assert run(model, x[:1]).shape == (1, 3)  # any batch size


def test_mnist_model_and_file_and_estimators(tmp_path):
    (x, y), (xt, yt) = fastnn.load_mnist()
    net = fastnn.Network([784, 100, 50, 10], seed=8)
    net.fit(x[:5000], y[:5000], epochs=1, lr=0.5)
    path = tmp_path / "m.onnx"
    net.to_onnx(path)
    model = onnx.load(path)
    np.testing.assert_allclose(run(model, xt[:2000]), net.predict_proba(xt[:2000]), atol=1e-5)
    from fastnn import MLPRegressor
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5).fit(X, X[:, 0] * 2)
    np.testing.assert_allclose(run(reg.to_onnx(), X).ravel(), reg.predict(X), rtol=1e-5,
                               atol=1e-6)


def test_command_line_export(tmp_path, capsys):
    from fastnn.cli import app as cli
    net = fastnn.Network([5, 4, 3], seed=0)
    net.save(tmp_path / "m.npz")
    assert cli.main(["export", str(tmp_path / "m.npz"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    x = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    np.testing.assert_allclose(run(onnx.load(tmp_path / "m.onnx"), x), net.predict_proba(x),
                               rtol=1e-5)
    assert cli.main(["export", str(tmp_path / "none.npz"), "--onnx", "x.onnx"]) == 1
    assert "does not exist" in capsys.readouterr().err
