"""fastnn.Network and the compiled drivers against fastnn.reference."""
import numpy as np
import pytest

from conftest import DTYPES, assert_close
import fastnn
import fastnn.engine.inputs  # noqa: F401
import fastnn.engine.training  # noqa: F401
from fastnn import reference as R
from fastnn.engine.registry import ACTIVATIONS, keeps_input
from fastnn.kernels import train as K
from fastnn.kernels.bundles import no_sparse

# The activations the reference oracle writes out (the others are held to
# their registry forms by test_registry.py).

pytestmark = pytest.mark.both_backends
ACTS = [a for a in ACTIVATIONS if a in R.ACTIVATIONS]
HEADS = ["softmax", "sigmoid", "identity"]
# Layer shapes with 1-wide layers, odd sizes and sizes past one column tile.
ARCHS = [[3, 1], [1, 1, 1], [5, 7, 3], [13, 65, 33, 4], [30, 129, 2], [9, 200, 3]]


def make_data(rng, net, n):
    x = rng.standard_normal((n, net.n_inputs))
    K_ = net.n_outputs
    if net.output == "softmax":
        y = rng.integers(0, K_, n)
    elif net.output == "sigmoid":
        y = rng.integers(0, 2, (n, K_)).astype(float)
    else:
        y = rng.standard_normal((n, K_))
    return x, y


def ref_params(net):
    return [(W.astype(np.float64), b.astype(np.float64))
            for W, b in zip(net.weights, net.biases)]


def kernel_gradients(net, x, y, sparse=False):
    """(loss, flat gradient) from the compiled forward_backward, with the
    first layer on the dense or the sparse (CSR/CSC) path."""
    from fastnn.engine import inputs, memory
    X = net._check_x(x)
    n = X.shape[0]
    labels, T = net._check_y(y, n)
    rows = np.arange(n, dtype=np.int64)
    if sparse:
        sp, _, _ = inputs.prepare(X, net.dtype, n, False, None, max_density=1.0)
        K.prepare_sparse_batches(sp, rows, n)
    else:
        sp = no_sparse(net.dtype)  # dense first layer
    grad = np.full_like(net.theta, np.nan)
    loss, _ = K.forward_backward(net._model(), net.head, X, rows, 0, labels, T,
                                 np.empty(0), sp,
                                 grad, memory.work_buffers(net.layout, n, net.dtype, sparse,
                                                           keep_input=keeps_input(net.acts)),
                                 np.empty(0), np.uint64(0))
    return loss, grad


def flatten(grads):
    return np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])


@pytest.mark.kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", ACTS)
@pytest.mark.parametrize("output", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("sparse", [False, True])
def test_gradients_match_reference(rng, dtype, hidden, output, arch, sparse):
    net = fastnn.Network(arch, hidden=hidden, output=output, init="glorot", seed=3, dtype=dtype)
    x, y = make_data(rng, net, 11)
    if sparse:  # mostly zeros, like image pixels; some rows all zero
        x[rng.random(x.shape) < 0.7] = 0
        x[3] = 0
    loss, grad = kernel_gradients(net, x, y, sparse)
    xr = x.astype(dtype).astype(np.float64)
    ref_loss, ref_grads = R.gradients(ref_params(net), xr, y, hidden, output)
    assert_close(loss, ref_loss, dtype, what="loss")
    ref = flatten(ref_grads)
    assert_close(grad, ref, dtype, scale=np.maximum(np.abs(ref).max(), 1e-3), what="gradient")


@pytest.mark.kernels
@pytest.mark.parametrize("hidden", ACTS)
@pytest.mark.parametrize("output", HEADS)
def test_gradients_match_central_differences(rng, hidden, output):
    """float64: every analytic gradient equals (E(p+h) - E(p-h)) / 2h."""
    net = fastnn.Network([4, 6, 5, 3], hidden=hidden, output=output, init="glorot",
                         seed=5, dtype="float64")
    x, y = make_data(rng, net, 7)
    # Keep relu away from its kink, where the derivative is undefined.
    for b in net.biases:
        b[...] = 0.05 * rng.standard_normal(b.shape)
    _, grad = kernel_gradients(net, x, y)
    numeric = central_differences(net, x, y)
    assert np.abs(grad - numeric).max() < 1e-7 * max(1.0, np.abs(numeric).max()), \
        np.abs(grad - numeric).max()


def central_differences(net, x, y, h=1e-6):
    """(E(p+h) - E(p-h)) / 2h for every parameter p, E the backend's loss."""
    numeric = np.empty_like(net.theta)
    for i in range(net.theta.size):
        old = net.theta[i]
        net.theta[i] = old + h
        up = net.evaluate(x, y)["loss"]
        net.theta[i] = old - h
        down = net.evaluate(x, y)["loss"]
        net.theta[i] = old
        numeric[i] = (up - down) / (2 * h)
    return numeric


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.8, True)])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("hidden,output,arch", [
    ("relu", "softmax", [13, 65, 33, 4]),
    ("tanh", "identity", [6, 9, 2]),
    ("sigmoid", "sigmoid", [5, 70, 3]),
])
def test_training_trajectory_matches_reference(rng, monkeypatch, dtype, momentum, nesterov,
                                               shuffle, sparse, hidden, output, arch):
    """Several epochs of mini-batch updates (last batch short) match the
    reference step for step: losses per epoch and final parameters; with
    the first layer on the dense path and on the sparse (CSR/CSC) path."""
    net = fastnn.Network(arch, hidden=hidden, output=output, seed=11, dtype=dtype)
    x, y = make_data(rng, net, 53)
    x = x.astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.6] = 0
    monkeypatch.setattr(fastnn.engine.inputs, "SPARSE_MAX_DENSITY", 1.0 if sparse else 0.0)
    params = ref_params(net)
    velocity = [[np.zeros_like(W), np.zeros_like(b)] for W, b in params]
    state = net.engine.shuffle_state.copy()
    order = np.arange(53)
    ref_losses = []
    for epoch in range(3):
        if shuffle:
            order = np.arange(53)
            K.shuffle_inplace(order, state)
        ref_losses.append(R.train_epoch(params, x.astype(np.float64), y, 0.1, 8, hidden,
                                        output, velocity, momentum, nesterov, order.copy()))
    hist = net.fit(x, y, epochs=3, batch_size=8, lr=0.1, momentum=momentum,
                   nesterov=nesterov, shuffle=shuffle)
    assert_close(hist["loss"], ref_losses, dtype, what="epoch losses")
    assert_close(net.theta, flatten(params), dtype, what="parameters")


def test_one_hot_and_integer_labels_train_identically(rng):
    a = fastnn.Network([6, 8, 4], seed=2)
    b = fastnn.Network([6, 8, 4], seed=2)
    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 4, 40)
    a.fit(x, y, epochs=2, batch_size=7, lr=0.2)
    b.fit(x, np.eye(4)[y], epochs=2, batch_size=7, lr=0.2)
    assert np.array_equal(a.theta, b.theta)


def test_uniform_init_is_the_classic_scheme():
    net = fastnn.Network([784, 100, 50, 10], seed=8, dtype="float64")
    rng = np.random.RandomState(8)
    for W, b in zip(net.weights, net.biases):
        expected = rng.rand(*W.shape) * 0.2 - 0.1
        assert np.array_equal(W, expected)
        assert not b.any()


def test_weights_are_live_views(rng):
    net = fastnn.Network([3, 4, 2], seed=0)
    x = rng.standard_normal((5, 3))
    before = net.predict_proba(x)
    net.weights[1][...] = 0
    net.biases[1][...] = [0.0, np.log(3.0)]
    assert_close(net.predict_proba(x), np.tile([0.25, 0.75], (5, 1)), np.float32)
    assert not np.allclose(before, net.predict_proba(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", HEADS)
def test_predict_and_evaluate_match_reference(rng, dtype, output):
    net = fastnn.Network([9, 31, 5], hidden="tanh", output=output, init="he", seed=4,
                         dtype=dtype)
    x, y = make_data(rng, net, 5000)  # more rows than one evaluation chunk
    params = ref_params(net)
    xr = x.astype(dtype).astype(np.float64)
    z = R.forward(params, xr, "tanh")[-1]
    assert_close(net.predict_proba(x), R.output_probabilities(z, output), dtype)
    pred = net.predict(x)
    if output == "softmax":
        assert np.array_equal(pred, z.argmax(axis=1))
    elif output == "sigmoid":
        assert np.array_equal(pred, (z > 0).astype(int))
    else:
        assert_close(pred, z, dtype)
    r = net.evaluate(x, y)
    ref_loss, ref_acc = R.evaluate(params, xr, y, "tanh", output)
    assert_close(r["loss"], ref_loss, dtype)
    if output != "identity":
        assert r["accuracy"] == ref_acc
    else:
        assert "accuracy" not in r


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip_is_bit_exact(tmp_path, rng, dtype):
    net = fastnn.Network([7, 12, 3], hidden="sigmoid", output="sigmoid", seed=1, dtype=dtype)
    x, y = make_data(rng, net, 30)
    net.fit(x, y, epochs=2, batch_size=4, lr=0.3)
    path = tmp_path / "model.npz"
    net.save(path)
    net2 = fastnn.Network.load(path)
    assert (net2.layers, net2.hidden, net2.output, net2.dtype) == \
        (net.layers, net.hidden, net.output, net.dtype)
    assert net2.theta.tobytes() == net.theta.tobytes()
    assert np.array_equal(net2.predict_proba(x), net.predict_proba(x))
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left


def test_load_rejects_foreign_and_corrupted_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable fastnn model"):
        fastnn.Network.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastnn model"):
        fastnn.Network.load(other)
    net = fastnn.Network([2, 3], seed=0)
    good = tmp_path / "good.npz"
    net.save(good)
    data = dict(np.load(good))
    data["W0"] = np.zeros((3, 3), np.float32)
    np.savez(tmp_path / "shape.npz", **data)
    with pytest.raises(ValueError, match="W0"):
        fastnn.Network.load(tmp_path / "shape.npz")


def test_shuffled_runs_repeat_exactly_with_the_same_seed(rng):
    x = rng.standard_normal((64, 5))
    y = rng.integers(0, 3, 64)
    runs = []
    for _ in range(2):
        net = fastnn.Network([5, 16, 3], seed=42)
        net.fit(x, y, epochs=3, batch_size=10, lr=0.1, shuffle=True)
        runs.append(net.theta.copy())
    other = fastnn.Network([5, 16, 3], seed=42)
    other.fit(x, y, epochs=3, batch_size=10, lr=0.1, shuffle=False)
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], other.theta)


def test_history_and_verbose_output(rng, capsys):
    net = fastnn.Network([4, 5, 2], seed=0)
    x = rng.standard_normal((20, 4))
    y = rng.integers(0, 2, 20)
    hist = net.fit(x, y, epochs=3, batch_size=6, lr=0.1, validation_data=(x, y), verbose=True)
    assert set(hist) == {"loss", "accuracy", "lr", "val_loss", "val_accuracy", "seconds"}
    assert hist["lr"] == [0.1] * 3
    assert all(len(v) == 3 for v in hist.values())
    assert hist["val_loss"][-1] == pytest.approx(net.evaluate(x, y)["loss"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch   1")


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(layers=[3]), ValueError, "at least"),
    (dict(layers=[3, 0]), ValueError, r"layers\[1\]"),
    (dict(layers=[3, 2], hidden="swish"), ValueError, "hidden"),
    (dict(layers=[3, 2], output="softmin"), ValueError, "output"),
    (dict(layers=[3, 2], init="zeros"), ValueError, "init"),
    (dict(layers=[3, 2], dtype="float16"), ValueError, "dtype"),
])
def test_constructor_rejects_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        fastnn.Network(**kwargs)


@pytest.mark.parametrize("x,y,kw,err,match", [
    (np.zeros((4, 2)), [0, 1, 0, 1], {}, ValueError, "features"),
    (np.zeros((4, 3)), [0, 1, 0], {}, ValueError, "rows"),
    (np.full((4, 3), np.nan), [0, 1, 0, 1], {}, ValueError, "NaN"),
    (np.zeros((4, 3)), [0, 1, 0, 2], {}, ValueError, "labels"),
    (np.zeros((4, 3)), [0, 1, 0, 1], {"lr": 0}, ValueError, "lr"),
    (np.zeros((4, 3)), [0, 1, 0, 1], {"batch_size": 0}, ValueError, "batch_size"),
    (np.zeros((4, 3)), [0, 1, 0, 1], {"momentum": 1.0}, ValueError, "momentum"),
    (np.zeros((0, 3)), [], {}, ValueError, "empty"),
])
def test_fit_rejects_bad_input_without_touching_the_model(x, y, kw, err, match):
    net = fastnn.Network([3, 2], seed=0)
    before = net.theta.copy()
    with pytest.raises(err, match=match):
        net.fit(x, y, **kw)
    assert np.array_equal(before, net.theta)


@pytest.mark.parametrize("shuffle", [False, True])
def test_repeated_fits_equal_one_long_fit_on_the_sparse_path(rng, shuffle):
    """fit(epochs=1) twice reuses the cached sparse forms and trains exactly
    like fit(epochs=2)."""
    x = rng.random((90, 12))
    x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 3, 90)
    a = fastnn.Network([12, 50, 3], seed=4)
    b = fastnn.Network([12, 50, 3], seed=4)
    a.fit(x, y, epochs=2, batch_size=16, lr=0.2, shuffle=shuffle)
    b.fit(x, y, epochs=1, batch_size=16, lr=0.2, shuffle=shuffle)
    assert b.engine.input_cache is not None  # the sparse path was taken
    b.fit(x, y, epochs=1, batch_size=16, lr=0.2, shuffle=shuffle)
    assert np.array_equal(a.theta, b.theta)


def test_changed_data_between_fits_is_not_served_from_the_cache(rng):
    x = rng.random((60, 10))
    x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 3, 60)
    a = fastnn.Network([10, 20, 3], seed=1)
    a.fit(x, y, epochs=1, batch_size=10, lr=0.2, shuffle=False)
    x2 = x.copy()
    x2[5, np.flatnonzero(x2[5])[0]] *= 1.0000001  # one value, one ulp-ish
    x2[7, :] = x2[7, ::-1]                          # same values, other order
    a.fit(x2, y, epochs=1, batch_size=10, lr=0.2, shuffle=False)
    b = fastnn.Network([10, 20, 3], seed=1)
    b.fit(x, y, epochs=1, batch_size=10, lr=0.2, shuffle=False)
    b.engine.input_cache = None
    b.fit(x2, y, epochs=1, batch_size=10, lr=0.2, shuffle=False)
    assert np.array_equal(a.theta, b.theta)


def test_results_do_not_depend_on_the_thread_count(rng):
    """Every output cell is computed by one task in a fixed order, so one and
    two threads give bit-identical parameters (dense and sparse paths)."""
    x = rng.random((120, 30))
    x[rng.random(x.shape) < 0.8] = 0  # sparse path for the first layer
    y = rng.integers(0, 4, 120)
    xd = rng.standard_normal((120, 30))  # dense path
    results = []
    before = fastnn.get_num_threads()
    try:
        for threads in (1, min(2, before)):
            fastnn.set_num_threads(threads)
            a = fastnn.Network([30, 70, 50, 4], seed=3)
            a.fit(x, y, epochs=2, batch_size=16, lr=0.1, momentum=0.9, shuffle=True)
            b = fastnn.Network([30, 70, 50, 4], seed=3)
            b.fit(xd, y, epochs=2, batch_size=16, lr=0.1, shuffle=True)
            results.append((a.theta.copy(), b.theta.copy()))
    finally:
        fastnn.set_num_threads(before)
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_divergence_stops_with_a_clear_error_and_restores_parameters(rng, output):
    net = fastnn.Network([5, 40, 3], hidden="relu", output=output, seed=0)
    x, y = make_data(rng, net, 200)
    x = 1e3 * x
    net.fit(x[:20], y[:20], epochs=1, batch_size=10, lr=1e-9)  # one finite epoch
    before = net.theta.copy()
    with pytest.raises(fastnn.TrainingDivergedError, match=r"epoch 1 .*smaller learning rate"):
        net.fit(x, y, epochs=3, batch_size=10, lr=1e30)
    assert np.isfinite(net.theta).all()
    assert np.array_equal(net.theta, before)
    assert issubclass(fastnn.TrainingDivergedError, ValueError)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sparse", [False, True])
def test_wide_layers_on_the_packed_matmul_path_match_reference(rng, monkeypatch, dtype, sparse):
    """Layers >= PACK_MIN_N wide with batches large enough for the parallel
    drivers: forward, both backward products and the sparse first layer
    run on the packed-panel kernels; two epochs match the reference."""
    from fastnn.kernels.matmul import PACK_MIN_N
    net = fastnn.Network([40, 300, PACK_MIN_N + 14, 5], seed=2, dtype=dtype)
    x, y = make_data(rng, net, 150)
    x = x.astype(dtype)
    if sparse:
        x[rng.random(x.shape) < 0.7] = 0
    monkeypatch.setattr(fastnn.engine.inputs, "SPARSE_MAX_DENSITY", 1.0 if sparse else 0.0)
    params = ref_params(net)
    ref_losses = [R.train_epoch(params, x.astype(np.float64), y, 0.05, 64) for _ in range(2)]
    hist = net.fit(x, y, epochs=2, batch_size=64, lr=0.05, shuffle=False)
    assert_close(hist["loss"], ref_losses, dtype, what="epoch losses")
    assert_close(net.theta, flatten(params), dtype, what="parameters")


def test_fit_predict_and_evaluate_run_on_the_chosen_backend(rng, monkeypatch, fastnn_backend):
    """The switch works: on the NumPy backend every driver is NumPy's; on
    the compiled one none is."""
    from fastnn.engine import numpy_engine

    calls = []
    for name in ("train_batches", "evaluate_batches", "predict_batches"):
        def counted(*args, _name=name, _f=getattr(numpy_engine, name)):
            calls.append(_name)
            return _f(*args)
        monkeypatch.setattr(numpy_engine, name, counted)
    net = fastnn.Network([5, 8, 3], seed=0)
    x, y = make_data(rng, net, 50)
    net.fit(x, y, epochs=2, batch_size=10)
    net.evaluate(x, y)
    net.predict(x)
    expected = {"train_batches", "evaluate_batches", "predict_batches"}
    assert set(calls) == (expected if fastnn_backend == "numpy" else set())


# ------------------------------------------------- one activation per hidden layer
MIXED = ["relu", "tanh", "elu"]


def mixed_forward(net, x):
    from fastnn.engine.registry import ACTIVATIONS, HEADS

    h = x
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        h = h @ W + b
        h = (ACTIVATIONS[MIXED[l]].forward(h) if l < len(MIXED)
             else HEADS[net.output].output(h))
    return h


def test_a_list_gives_each_hidden_layer_its_activation(rng, tmp_path):
    x = rng.standard_normal((30, 6))
    y = rng.integers(0, 4, 30)
    net = fastnn.Network([6, 9, 8, 7, 4], hidden=MIXED, dtype="float64", seed=1)
    assert net.hidden == MIXED and net.hidden_acts == tuple(MIXED)
    net.fit(x, y, epochs=2, batch_size=10)
    np.testing.assert_allclose(net.predict_proba(x), mixed_forward(net, x), rtol=1e-10)
    net.save(tmp_path / "m.npz")
    back = fastnn.Network.load(tmp_path / "m.npz")
    assert back.hidden == MIXED
    np.testing.assert_array_equal(back.predict_proba(x), net.predict_proba(x))
    from fastnn.integrations.summary import network_summary
    text = network_summary(net)
    assert "tanh" in text and "elu" in text and "hidden=['relu'" in repr(net)
    uniform = fastnn.Network([6, 9, 4], hidden="tanh")
    assert uniform.hidden == "tanh" and uniform.hidden_acts == ("tanh",)


@pytest.mark.kernels
def test_per_layer_activations_train_alike_on_both_backends(rng):
    from fastnn.engine import numpy_engine as NE
    from fastnn.engine import training
    from fastnn.kernels import train as K

    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 4, 40)
    results = []
    for engine in (K, NE):
        net = fastnn.Network([6, 9, 8, 7, 4], hidden=MIXED, dtype="float64", seed=1)
        X = net._check_x(x)
        tr = net._trainer(X, *net._check_y(y, 40), 8, False)
        opt = training.optimizer("sgd", lr=0.1)
        state = training.fresh_state(opt.kind, net.theta)
        tr.no_plan.sums[0] = 0.0
        engine.train_batches(tr.data, tr.model, tr.head, tr.grad, state, opt, tr.sp, tr.work,
                             tr.bufs, 0, tr.n_batches, tr.no_plan)
        results.append(net.theta.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("hidden,words", [
    (["relu", "tanh"], "hidden has 2 activations, the network has 3 hidden layers"),
    (["relu", "swish", "tanh"], "hidden[1] must be one of"),
    (7, "hidden must be an activation name or a list"),
])
def test_bad_per_layer_activations_name_the_argument(hidden, words):
    with pytest.raises((ValueError, TypeError)) as e:
        fastnn.Network([6, 9, 8, 7, 4], hidden=hidden)
    assert words in str(e.value)


def test_per_layer_activations_reach_onnx_torch_the_estimators_and_the_cli(rng):
    from fastnn.cli import app

    x = rng.standard_normal((30, 6))
    net = fastnn.Network([6, 9, 8, 7, 4], hidden=MIXED, dtype="float64", seed=1)
    assert app.build_parser().parse_args(["train", "--activation", "relu,tanh,elu"]
                                         ).activation == MIXED
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        seq = net.to_torch()
        with torch.no_grad():
            np.testing.assert_allclose(seq(torch.from_numpy(x)).numpy(), net.predict_proba(x),
                                       rtol=1e-12)
        assert fastnn.Network.from_torch(seq).hidden == MIXED
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        model = net.to_onnx()
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"input": x})[0], net.predict_proba(x),
                                   rtol=1e-10)
    pytest.importorskip("sklearn")
    y = (x[:, 0] > 0).astype(int)
    est = fastnn.MLPClassifier((9, 8, 7), activation=["relu", "tanh", "elu"], max_iter=3,
                               random_state=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x, y)
    assert est.network_.hidden_acts == tuple(MIXED)
    with pytest.raises(ValueError, match="hidden has 1 activations"):
        fastnn.MLPClassifier((9, 8), activation=["relu"]).fit(x, y)


# ------------------------------------------------------------------- dropout
def _epoch_on(engine, net, x, y, batch_size, dropout, shuffle=True):
    from fastnn.engine import training

    X = net._check_x(x)
    tr = net._trainer(X, *net._check_y(y, X.shape[0]), batch_size, shuffle)
    opt = training.optimizer("sgd", lr=0.1, momentum=0.9, **net._dropout_settings(dropout))
    state = training.fresh_state(opt.kind, net.theta)
    tr.no_plan.sums[0] = 0.0
    engine.epoch_begin(tr.data.order, net.engine.shuffle_state, shuffle, tr.sp, False,
                       batch_size)
    engine.train_batches(tr.data, tr.model, tr.head, tr.grad, state, opt, tr.sp, tr.work,
                         tr.bufs, 0, tr.n_batches, tr.no_plan)
    return tr.no_plan.sums[0].copy(), net.theta.copy(), tr


@pytest.mark.kernels
@pytest.mark.parametrize("case", ["whole batches", "row-split batches", "sparse first layer"])
def test_dropout_trains_alike_on_both_backends(rng, case):
    """The compiled epoch (whole batches, the two-thread row split, a
    sparse first layer) and the NumPy one draw the same masks and agree."""
    from fastnn.engine import numpy_engine as NE

    x = rng.standard_normal((300, 12))
    if case == "sparse first layer":
        x[rng.random(x.shape) < 0.9] = 0
    y = rng.integers(0, 4, 300)
    batch = 150 if case == "row-split batches" else 25
    runs = []
    for engine in (K, NE):
        net = fastnn.Network([12, 20, 16, 4], hidden=["tanh", "relu"], dtype="float64", seed=3)
        runs.append(_epoch_on(engine, net, x, y, batch, [0.3, 0.2]))
    if case == "row-split batches":
        assert runs[0][2].work.gs.shape[0] > 0  # the split path ran
    assert runs[0][2].sparse == (case == "sparse first layer")
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-9, atol=1e-12)
    plain = fastnn.Network([12, 20, 16, 4], hidden=["tanh", "relu"], dtype="float64", seed=3)
    assert not np.allclose(_epoch_on(K, plain, x, y, batch, None)[1], runs[0][1])


@pytest.mark.kernels
def test_dropout_gradient_is_the_derivative_with_those_masks(rng):
    """With the masks fixed (a batch key), the kernels' gradient equals
    central differences of the loss of the NumPy forward with them."""
    from fastnn.engine import memory
    from fastnn.engine import numpy_engine as NE

    x = rng.standard_normal((10, 5))
    y = rng.integers(0, 3, 10)
    net = fastnn.Network([5, 7, 6, 3], hidden=["sigmoid", "elu"], dtype="float64", seed=2)
    X = net._check_x(x)
    labels, T = net._check_y(y, 10)
    drop = np.array([0.4, 0.25, 0.0])
    key = np.uint64(12345)
    grad = np.zeros_like(net.theta)
    K.forward_backward(net._model(), net.head, X, np.arange(10), 0, labels, T, np.empty(0),
                       no_sparse(net.dtype),
                       grad, memory.work_buffers(net.layout, 10, net.dtype, False, masks=True),
                       drop, key)

    def loss(theta):
        model = net.layout.model(theta, net.acts)
        z = NE.forward(model, X, drop, key)[-1]
        return NE.head_loss(net.head, z, labels, T, np.empty(0))[0]

    theta = net.theta.copy()
    for i in rng.choice(theta.size, 25, replace=False):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        numeric = (loss(theta + e) - loss(theta - e)) / 2e-6
        assert abs(numeric - grad[i]) < 1e-6 * max(1.0, abs(numeric)), i


def test_dropout_keeps_the_rate_and_scales_what_it_keeps():
    from fastnn.kernels import dropout as D

    Y = np.ones((400, 250), np.float32)
    M = np.empty(Y.shape, np.uint8)
    D.dropout_forward(Y, M, 0, 0.2, D.layer_key(D.batch_key(np.uint64(7), 3), 0))
    np.testing.assert_array_equal(M == 0, Y == 0)
    assert abs((Y == 0).mean() - 0.2) < 0.005
    assert set(np.unique(Y)) == {0.0, np.float32(1.25)}
    assert abs(Y.mean() - 1.0) < 0.01  # the expected output is unchanged


def test_dropout_repeats_exactly_whatever_the_threads_and_is_off_in_predict(rng):
    x = rng.random((400, 30)).astype(np.float32)
    y = rng.integers(0, 5, 400)
    before = fastnn.get_num_threads()
    runs = []
    try:
        for threads in (1, before):
            fastnn.set_num_threads(threads)
            net = fastnn.Network([30, 64, 32, 5], seed=4)
            net.fit(x, y, epochs=2, batch_size=200, dropout=0.3)
            runs.append(net)
    finally:
        fastnn.set_num_threads(before)
    np.testing.assert_array_equal(runs[0].theta, runs[1].theta)
    net = runs[0]
    h = x
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        h = h @ W + b
        h = np.maximum(h, 0) if l < 2 else h
    np.testing.assert_array_equal(net.predict(x), h.argmax(axis=1))
    assert net.evaluate(x, y) == net.evaluate(x, y)


@pytest.mark.parametrize("dropout,words", [
    (1.0, "dropout must be < 1"),
    (-0.1, "dropout must be >= 0"),
    ([0.2], "dropout has 1 rates, the network has 2 hidden layers"),
    ([0.2, "a"], "dropout[1] must be a real number"),
    ("0.2", "dropout must be a rate or a list"),
])
def test_bad_dropout_names_the_argument(rng, dropout, words):
    net = fastnn.Network([4, 5, 5, 2], seed=0)
    before = net.theta.copy()
    with pytest.raises((ValueError, TypeError)) as e:
        net.fit(rng.random((10, 4)), np.arange(10) % 2, dropout=dropout)
    assert words in str(e.value)
    np.testing.assert_array_equal(net.theta, before)


# Activations and loss settings beyond the reference oracle's, each with
# what it reads: the kernels' gradient against central differences of the
# backend's loss (evaluate).
NEW_ACTS = [a for a in ACTIVATIONS if a not in R.ACTIVATIONS]
LOSS_CASES = [("softmax", {"label_smoothing": 0.15}), ("sigmoid", {"label_smoothing": 0.3}),
              ("huber", {"delta": 0.3}), ("absolute_error", {}), ("poisson", {})]


@pytest.mark.kernels
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("hidden", NEW_ACTS)
@pytest.mark.parametrize("output,settings", LOSS_CASES, ids=[o for o, _ in LOSS_CASES])
def test_new_activations_and_losses_match_central_differences(rng, hidden, output, settings,
                                                               sparse):
    net = fastnn.Network([4, 6, 5, 3], hidden=[hidden, "gelu"], output=output, init="glorot",
                         seed=5, dtype="float64", **settings)
    x, y = make_data(rng, net, 7)
    if output == "poisson":
        y = np.abs(y)
    if sparse:
        x[rng.random(x.shape) < 0.5] = 0
    for b in net.biases:
        b[...] = 0.05 * rng.standard_normal(b.shape)
    loss, grad = kernel_gradients(net, x, y, sparse)
    assert abs(loss - net.evaluate(x, y)["loss"]) < 1e-12 * max(1.0, abs(loss))
    numeric = central_differences(net, x, y)
    assert np.abs(grad - numeric).max() < 1e-7 * max(1.0, np.abs(numeric).max()), \
        np.abs(grad - numeric).max()


def _train_both(rng, sparse, monkeypatch, **fit):
    """Two epochs of batch-200 training (row-split batches, on two threads)
    through the compiled and the NumPy drivers: their parameters."""
    from fastnn.engine import numpy_engine as NE
    from fastnn.engine import training

    x = rng.standard_normal((450, 40))
    if sparse:
        x[rng.random(x.shape) < 0.8] = 0
    y = rng.integers(0, 4, 450)
    monkeypatch.setattr(fastnn.engine.inputs, "SPARSE_MAX_DENSITY", 1.0 if sparse else 0.0)
    results = []
    for engine in (K, NE):
        net = fastnn.Network([40, 48, 24, 4], hidden=["gelu", "silu"], dtype="float64", seed=1,
                             label_smoothing=0.1)
        X = net._check_x(x)
        tr = net._trainer(X, *net._check_y(y, 450), 200, True)
        opt = training.optimizer(**fit)
        state = training.fresh_state(opt.kind, net.theta)
        for _ in range(2):
            engine.epoch_begin(tr.data.order, net.engine.shuffle_state, True, tr.sp, False, 200)
            tr.no_plan.sums[0] = 0.0
            engine.train_batches(tr.data, tr.model, tr.head, tr.grad, state, opt, tr.sp,
                                 tr.work, tr.bufs, 0, tr.n_batches, tr.no_plan)
        results.append(net.theta.copy())
    return results


@pytest.mark.kernels
@pytest.mark.parametrize("sparse", [False, True])
def test_clipping_gelu_silu_and_smoothing_train_alike_on_both_drivers(rng, sparse, monkeypatch):
    """Row-split batches (dense and sparse first layers) with clipping,
    dropout, GELU/SiLU and label smoothing: the compiled drivers agree with
    the NumPy ones, and clipping changes the result."""
    clipped = _train_both(rng, sparse, monkeypatch, name="sgd", lr=0.5, momentum=0.5,
                          clip_norm=0.2, dropout=np.array([0.2, 0.1, 0.0]), drop_seed=3,
                          l2=1e-3)
    np.testing.assert_allclose(clipped[0], clipped[1], rtol=1e-9, atol=1e-12)
    free = _train_both(np.random.default_rng(0), sparse, monkeypatch, name="sgd", lr=0.5,
                       momentum=0.5, dropout=np.array([0.2, 0.1, 0.0]), drop_seed=3, l2=1e-3)
    assert not np.allclose(free[0], clipped[0])


def test_clipping_bounds_each_step(rng):
    """One SGD step with clip_norm moves the parameters by at most lr *
    clip_norm, in the gradient's direction (a step without it is longer)."""
    x = rng.standard_normal((50, 6)) * 10
    y = rng.integers(0, 3, 50)
    steps = {}
    for clip in (None, 0.5):
        net = fastnn.Network([6, 16, 3], seed=2, dtype="float64")
        before = net.theta.copy()
        net.fit(x, y, epochs=1, batch_size=50, lr=0.1, clip_norm=clip, shuffle=False)
        steps[clip] = net.theta - before
    assert np.linalg.norm(steps[None]) > 0.1 * 0.5 * 1.01
    assert abs(np.linalg.norm(steps[0.5]) - 0.1 * 0.5) < 1e-6
    cos = steps[0.5] @ steps[None] / np.linalg.norm(steps[0.5]) / np.linalg.norm(steps[None])
    assert cos > 1 - 1e-9


@pytest.mark.parametrize("kw,err,words", [
    (dict(output="huber", delta=0), ValueError, "delta"),
    (dict(output="huber", delta=-1.0), ValueError, "delta"),
    (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    (dict(output="identity", label_smoothing=0.1), ValueError, "label_smoothing"),
    (dict(output="hubber"), ValueError, "output must be one of"),
    (dict(delta="1"), TypeError, "delta"),
])
def test_bad_loss_settings_name_the_argument(kw, err, words):
    with pytest.raises(err, match=words):
        fastnn.Network([3, 4, 2], **kw)


@pytest.mark.parametrize("clip", [0, -1.0, float("nan"), "1"])
def test_a_bad_clip_norm_names_the_argument(rng, clip):
    net = fastnn.Network([3, 4, 2], seed=0)
    before = net.theta.copy()
    with pytest.raises((ValueError, TypeError), match="clip_norm"):
        net.fit(rng.standard_normal((10, 3)), rng.integers(0, 2, 10), clip_norm=clip)
    np.testing.assert_array_equal(net.theta, before)


def test_loss_settings_survive_save_load_and_pickle(tmp_path, rng):
    import pickle

    for kw in (dict(output="huber", delta=0.25), dict(label_smoothing=0.2),
               dict(output="absolute_error")):
        net = fastnn.Network([3, 5, 2], seed=1, **kw)
        path = tmp_path / "m.npz"
        net.save(path)
        for back in (fastnn.Network.load(path), pickle.loads(pickle.dumps(net))):
            assert (back.output, back.delta, back.label_smoothing) == \
                (net.output, net.delta, net.label_smoothing)
            assert back.head == net.head
        x = rng.standard_normal((9, 3))
        y = rng.integers(0, 2, 9) if net.output == "softmax" else rng.standard_normal((9, 2))
        assert back.evaluate(x, y)["loss"] == net.evaluate(x, y)["loss"]
