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
    sess = ort.InferenceSession(reg.to_onnx().SerializeToString(),
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["variable"], {"input": X})[0].ravel(), reg.predict(X),
                               rtol=1e-5, atol=1e-6)


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


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("kind", ["strings", "binary", "multilabel"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_estimator_graph_has_skl2onnx_label_and_probabilities(rng, kind, dtype):
    pytest.importorskip("sklearn")
    import warnings

    X = rng.standard_normal((120, 5)).astype(dtype)
    if kind == "strings":
        y = np.array(["ant", "bee", "cat"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    elif kind == "binary":
        y = np.where(X[:, 0] > 0, 7, 3)
    else:
        y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0], axis=1).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(X, y)
    sess = _session(est.to_onnx())
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    label, proba = sess.run(None, {"input": X})
    np.testing.assert_array_equal(label, est.predict(X))
    expected = est.predict_proba(X)
    if kind == "binary":
        assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba, expected, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-7)


@pytest.mark.parametrize("zipmap", [False, True])
def test_skl2onnx_converts_a_pipeline_holding_a_fastnn_estimator(rng, zipmap):
    skl2onnx = pytest.importorskip("skl2onnx")
    pytest.importorskip("sklearn")
    import warnings

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X = rng.standard_normal((150, 4)) * [1, 10, 100, 0.1] + 3
    y = np.array(["no", "maybe", "yes"])[(X[:, 0] > 3).astype(int) + (X[:, 1] > 10)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Pipeline([("scale", StandardScaler()),
                         ("mlp", fastnn.MLPClassifier(hidden_layer_sizes=(16,), max_iter=50,
                                                      random_state=0))]).fit(X, y)
    model = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32), options={"zipmap": zipmap})
    sess = _session(model)
    label, proba = sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})
    np.testing.assert_array_equal(label, pipe.predict(X))
    if zipmap:  # skl2onnx's default: one {class: probability} per row
        assert [o.name for o in sess.get_outputs()] == ["output_label", "output_probability"]
        proba = np.array([[row[c] for c in pipe.classes_] for row in proba])
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-5)
    # A regressor in a pipeline: skl2onnx's "variable".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = Pipeline([("scale", StandardScaler()),
                        ("mlp", fastnn.MLPRegressor(hidden_layer_sizes=(8,), max_iter=50,
                                                    random_state=0))]).fit(X, X[:, 0] * 2)
    sess = _session(skl2onnx.to_onnx(reg, X[:1].astype(np.float32)))
    assert [o.name for o in sess.get_outputs()] == ["variable"]
    got = sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})[0]
    np.testing.assert_allclose(got.ravel(), reg.predict(X), rtol=1e-4, atol=1e-4)
