"""Every operation declared in fastnn.engine.registry is complete: a kernel
branch that computes what its NumPy form computes, a derivative that is
the derivative, the names users type accepted everywhere, an export."""
import numpy as np
import pytest

import fastnn
from conftest import DTYPES, assert_close
from fastnn.engine import numpy_engine as NE
from fastnn.engine import registry, training, validation
from fastnn.kernels import activations as A
from fastnn.kernels import losses as L
from fastnn.kernels import train as K

ACTS = list(registry.ACTIVATIONS)
HEADS = list(registry.HEADS)
OPTS = list(registry.OPTIMIZERS)
# Values on both sides of 0 (away from relu's kink) and far into the tails.
GRID = np.concatenate([-np.logspace(-3, 2, 40), np.logspace(-3, 2, 40)])

def test_the_option_tables_are_the_registry():
    assert validation.HIDDEN == tuple(ACTS)
    assert validation.OUTPUTS == tuple(HEADS)
    assert validation.OPTIMIZERS == tuple(OPTS)
    assert len({int(a.code) for a in registry.ACTIVATIONS.values()}) == len(ACTS)
    assert len({h.code for h in registry.HEADS.values()}) == len(HEADS)
    assert len({o.kind for o in registry.OPTIMIZERS.values()}) == len(OPTS)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTS)
def test_each_activation_has_its_kernel_branch(name, dtype):
    """act_forward/act_grad of the activation's code equal its NumPy form
    (a missing branch falls through to identity, which fails this)."""
    spec = registry.ACTIVATIONS[name]
    x = GRID.astype(dtype)
    y = spec.forward(x)
    ky = np.array([A.act_forward(v, spec.code) for v in x], dtype)
    assert_close(ky, y, dtype, what=f"{name} forward")
    assert A.uses_input(spec.code) == spec.from_input
    if spec.from_input:
        kd = np.array([A.act_grad_input(v, spec.code) for v in x], dtype)
        assert_close(kd, spec.derivative(x), dtype, what=f"{name} derivative")
    else:
        kd = np.array([A.act_grad(v, spec.code) for v in y], dtype)
        assert_close(kd, spec.derivative(y), dtype, what=f"{name} derivative")

@pytest.mark.parametrize("name", ACTS)
def test_each_derivative_is_the_derivative(name):
    spec = registry.ACTIVATIONS[name]
    x = GRID
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    numeric = (spec.forward(x + h) - spec.forward(x - h)) / (2 * h)
    at = x if spec.from_input else spec.forward(x)
    np.testing.assert_allclose(spec.derivative(at), numeric, rtol=1e-5, atol=1e-8)

def _targets(rng, head, n, k):
    if head == "softmax":
        return rng.integers(0, k, n), np.zeros((0, k))
    if head == "sigmoid":
        return np.zeros(0, np.int64), (rng.random((n, k)) < 0.5).astype(float)
    if head == "poisson":
        return np.zeros(0, np.int64), rng.poisson(1.0, (n, k)).astype(float)
    return np.zeros(0, np.int64), rng.standard_normal((n, k))

# Each head with its default settings, and with the settings it reads.
HEAD_CASES = [(h, {}) for h in HEADS] + [
    ("softmax", {"label_smoothing": 0.2}), ("sigmoid", {"label_smoothing": 0.3}),
    ("huber", {"delta": 0.4}), ("huber", {"delta": 2.5})]
HEAD_IDS = [h + "".join(f"-{k}={v}" for k, v in kw.items()) for h, kw in HEAD_CASES]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, settings", HEAD_CASES, ids=HEAD_IDS)
def test_each_head_has_its_kernel_branch(rng, name, settings, dtype, weighted):
    """loss_forward_backward and head_output of the head's code equal its
    NumPy forms (loss, dE/dZ, rows right, predict_proba)."""
    spec = registry.HEADS[name]
    head = registry.loss_of(name, **settings)
    n, k = 9, 3
    Z = rng.standard_normal((n, k)).astype(dtype)
    labels, T = _targets(rng, name, n, k)
    T = T.astype(dtype)
    w = rng.random(n) if weighted else np.zeros(0)
    dZ = np.empty_like(Z)
    loss, correct = L.loss_forward_backward(head, Z, labels, T, w, dZ)
    nloss, ncorrect, ndZ = NE.head_loss(head, Z, labels, T, w)
    assert_close(loss, nloss, dtype, what="loss")
    assert correct == ncorrect
    assert_close(dZ, ndZ, dtype, what="dZ")
    P = np.empty_like(Z)
    L.head_output(spec.code, Z, P)
    assert_close(P, spec.output(Z.astype(np.float64)), dtype, what="output")

@pytest.mark.parametrize("name, settings", HEAD_CASES, ids=HEAD_IDS)
def test_each_head_gradient_is_the_derivative_of_its_loss(rng, name, settings):
    spec = registry.HEADS[name]
    head = registry.loss_of(name, **settings)
    n, k = 5, 3
    Z = rng.standard_normal((n, k))
    labels, T = _targets(rng, name, n, k)
    _, dZ = spec.rows(Z, labels, T, head)
    h = 1e-6
    for i in range(n):
        for j in range(k):
            up, down = Z.copy(), Z.copy()
            up[i, j] += h
            down[i, j] -= h
            if name in ("huber", "absolute_error") and np.any(
                    np.abs(np.abs(up - T) - (head.delta if name == "huber" else 0)) < 2 * h):
                continue  # (a kink of the loss within the step)
            numeric = (spec.rows(up, labels, T, head)[0].sum()
                       - spec.rows(down, labels, T, head)[0].sum()) / (2 * h)
            assert abs(numeric - dZ[i, j]) < 1e-6 * max(1.0, abs(numeric))

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTS)
def test_each_optimizer_has_its_kernel_branch(rng, name, dtype):
    """Five steps of kernels.train.apply_update equal the NumPy rule's."""
    net = fastnn.Network([6, 5, 3], seed=3, dtype=dtype)
    settings = dict(momentum=0.9, nesterov=True) if name == "sgd" else {}
    opt = training.optimizer(name, lr=0.05, l2=0.01, **settings)
    runs = []
    for step in (K.apply_update, NE.apply_update):
        model = net.layout.model(net.theta.copy(), net.acts)
        state = training.fresh_state(opt.kind, model.theta)
        g = np.random.default_rng(5)
        for _ in range(5):
            grad = g.standard_normal(model.theta.size).astype(dtype)
            step(model, grad, state, opt, 10.0)
        runs.append((model.theta, state.vel, state.sq))
    for a, b in zip(*runs):
        assert_close(a, b, dtype, what=name)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", ACTS)
def test_each_activation_trains_alike_on_both_backends(rng, hidden, dtype):
    """An epoch of every driver path (fused epilogues, derivative epilogues)
    with this hidden activation: compiled and NumPy agree."""
    x = rng.standard_normal((40, 7))
    y = rng.integers(0, 3, 40)
    results = []
    for engine in (K, NE):
        net = fastnn.Network([7, 20, 9, 3], hidden=hidden, seed=1, dtype=dtype)
        X = net._check_x(x)
        labels, T = net._check_y(y, 40)
        tr = net._trainer(X, labels, T, 8, False)
        opt = training.optimizer("sgd", lr=0.1)
        state = training.fresh_state(opt.kind, net.theta)
        tr.no_plan.sums[0] = 0.0
        engine.train_batches(tr.data, tr.model, tr.head, tr.grad, state, opt, tr.sp, tr.work,
                             tr.bufs, 0, tr.n_batches, tr.no_plan)
        results.append((tr.no_plan.sums[0].copy(), net.theta.copy()))
    assert_close(results[1][0], results[0][0], dtype, what="sums")
    assert_close(results[1][1], results[0][1], dtype, what="parameters")

@pytest.mark.parametrize("name", ACTS)
def test_each_activation_is_exported(name):
    spec = registry.ACTIVATIONS[name]
    steps = [spec.onnx] if isinstance(spec.onnx, tuple) else spec.onnx or []
    assert spec.onnx is None or steps
    for op, attributes, inputs in steps:
        assert isinstance(op, str) and isinstance(attributes, dict) and isinstance(inputs, tuple)
    assert isinstance(spec.torch[0], str) and isinstance(spec.torch[1], dict)
    assert spec.sklearn in registry.SKLEARN_ACTIVATIONS

@pytest.mark.parametrize("name", ACTS)
def test_each_activation_reaches_the_estimators_and_the_cli(name):
    from fastnn.cli import app
    pytest.importorskip("sklearn")
    from fastnn.integrations.estimators import ACTIVATIONS

    assert ACTIVATIONS[registry.ACTIVATIONS[name].sklearn] == name
    parser = app.build_parser()
    args = parser.parse_args(["train", "--activation", name])
    assert args.activation == name

@pytest.mark.parametrize("name", ACTS)
def test_each_activation_fits_in_the_estimators(rng, name):
    """MLPClassifier(activation=<its estimator name>) trains and predicts
    what the registry's NumPy forms compute from its weights."""
    pytest.importorskip("sklearn")
    x = rng.standard_normal((60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    est = fastnn.MLPClassifier((6, 5), activation=registry.ACTIVATIONS[name].sklearn,
                               max_iter=5, random_state=0).fit(x, y)
    h = x
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        h = registry.ACTIVATIONS[name].forward(h @ W + b)
    expected = registry.HEADS["softmax"].output(h @ est.coefs_[-1] + est.intercepts_[-1])
    assert_close(est.predict_proba(x), expected, np.float64, what=name)

@pytest.mark.parametrize("name", OPTS)
def test_each_optimizer_reaches_the_estimators_and_the_cli(rng, name):
    from fastnn.cli import app
    pytest.importorskip("sklearn")
    from fastnn.integrations.estimators import SOLVERS

    assert name in SOLVERS
    assert app.build_parser().parse_args(["train", "--optimizer", name]).optimizer == name
    x = rng.standard_normal((60, 4))
    y = (x[:, 0] > 0).astype(int)
    est = fastnn.MLPClassifier((5,), solver=name, max_iter=3, random_state=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(x, y)
    assert np.isfinite(est.predict_proba(x)).all() and est.n_iter_ == 3
