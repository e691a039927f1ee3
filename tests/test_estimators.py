"""fastnn.MLPClassifier / MLPRegressor: scikit-learn's estimator checks,
parity with scikit-learn's own MLP, and use inside its tooling."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.both_backends

sklearn = pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402

# Every check of scikit-learn's suite runs; none is expected to fail. (The
# pandas and array-API checks skip themselves when those are not installed.)
EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks([MLPClassifier(), MLPRegressor()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_import_fastnn_does_not_import_sklearn():
    code = "import sys, fastnn; assert 'sklearn' not in sys.modules; fastnn.Network([2, 1])"
    subprocess.run([sys.executable, "-c", code], check=True)


def classification(rng, n, d, kind):
    X = rng.standard_normal((n, d))
    w = rng.standard_normal((d, 3))
    s = X @ w
    if kind == "multiclass":
        return X, np.array(["cat", "dog", "emu"])[s.argmax(axis=1)]
    if kind == "binary":
        return X, np.where(s[:, 0] > 0, 7, -1)
    return X, (s > 0).astype(int)  # multilabel indicator


SOLVERS = [
    dict(solver="adam"),
    dict(solver="adam", alpha=0.01, beta_1=0.8, learning_rate_init=0.01),
    dict(solver="sgd", learning_rate_init=0.1),
    dict(solver="sgd", learning_rate_init=0.1, nesterovs_momentum=False, alpha=0.1),
    dict(solver="sgd", learning_rate_init=0.2, momentum=0.0, learning_rate="invscaling",
         power_t=0.25),
    dict(solver="sgd", learning_rate_init=0.2, learning_rate="adaptive", n_iter_no_change=2,
         tol=0.05),
]


@pytest.mark.parametrize("params", SOLVERS)
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_classifier_matches_sklearn_step_for_step(rng, params, kind, activation):
    """One batch per epoch makes the shuffling irrelevant; then, with the
    same random_state (so the same initial parameters), fastnn in float64
    follows scikit-learn's trajectory to rounding."""
    X, y = classification(rng, 60, 5, kind)
    kw = dict(hidden_layer_sizes=(7, 4), activation=activation, max_iter=40,
              random_state=3, batch_size=60, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(dtype="float64", **kw).fit(X, y)
        theirs = SkClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    if params.get("learning_rate") == "adaptive":
        assert ours._rule.lr < params["learning_rate_init"]  # the rate was divided
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7,
                               atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.out_activation_ == theirs.out_activation_
    assert (ours.n_layers_, ours.n_outputs_, ours.t_) == (theirs.n_layers_, theirs.n_outputs_,
                                                          theirs.t_)


@pytest.mark.parametrize("params", SOLVERS[:4])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_matches_sklearn_step_for_step(rng, params, n_targets):
    X = rng.standard_normal((50, 4))
    y = X @ rng.standard_normal((4, n_targets)) + 0.1 * rng.standard_normal((50, n_targets))
    y = y.ravel() if n_targets == 1 else y
    kw = dict(hidden_layer_sizes=(9,), activation="tanh", max_iter=30, random_state=0,
              batch_size=50, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(dtype="float64", **kw).fit(X, y)
        theirs = SkRegressor(**kw).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7, atol=1e-10)
    assert ours.predict(X).shape == theirs.predict(X).shape
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_early_stopping_attributes_and_restored_best(rng):
    X, y = classification(rng, 300, 6, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(20,), early_stopping=True, random_state=0,
                        n_iter_no_change=3, max_iter=300, learning_rate_init=0.05)
    clf.fit(X, y)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    ref = SkClassifier(hidden_layer_sizes=(20,), early_stopping=True, random_state=0)
    ref.fit(X, y)
    assert ref.best_loss_ is None and ref.best_validation_score_ == max(ref.validation_scores_)


def test_partial_fit_streams_and_needs_classes_first(rng):
    X, y = classification(rng, 200, 5, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(10,), random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:50], y[:50])
    for s in range(0, 200, 50):
        clf.partial_fit(X[s:s + 50], y[s:s + 50], classes=["cat", "dog", "emu"])
    # As scikit-learn: n_iter_ counts the call's epochs, t_ and the curve all.
    assert clf.n_iter_ == 1 and clf.t_ == 200 and len(clf.loss_curve_) == 4
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:3], ["cat", "dog", "yak"])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=["cat", "dog", "emu"])
    reg = MLPRegressor(hidden_layer_sizes=(5,), random_state=0)
    reg.partial_fit(X, X[:, 0])
    reg.partial_fit(X, X[:, 0])
    assert reg.n_iter_ == 1 and reg.t_ == 400


def test_warm_start_continues_from_the_fitted_weights(rng):
    X, y = classification(rng, 80, 4, "binary")
    a = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=1, warm_start=True,
                      batch_size=80, solver="sgd", momentum=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(X, y)
        a.fit(X, y)
        b = MLPClassifier(hidden_layer_sizes=(6,), max_iter=10, random_state=1, batch_size=80,
                          solver="sgd", momentum=0.0).fit(X, y)
    assert a.n_iter_ == 5 and a.t_ == b.t_ == 800  # n_iter_: this call's (as scikit-learn)
    for p, q in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(p, q)


def test_sklearn_tooling(rng):
    X, y = classification(rng, 150, 4, "multiclass")
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,),
                                                         random_state=0, max_iter=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.8
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                               "mlpclassifier__hidden_layer_sizes": [(8,), (16, 8)]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.8
    assert set(grid.best_params_) == {"mlpclassifier__alpha",
                                      "mlpclassifier__hidden_layer_sizes"}


def test_coefs_are_live_views_and_survive_pickling(rng):
    import pickle
    X, y = classification(rng, 40, 3, "multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    twin = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    twin.coefs_[0][...] = 0
    twin.intercepts_[0][...] = 0
    assert np.array_equal(twin.network_.weights[0], np.zeros((3, 5)))
    assert not np.array_equal(twin.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("params,err,match", [
    (dict(activation="mish"), ValueError, "activation"),
    (dict(solver="lion"), ValueError, "solver"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(early_stopping_metric="auc"), ValueError, "early_stopping_metric"),
    (dict(callbacks=print), TypeError, "callbacks"),
    (dict(learning_rate="cyclic"), ValueError, "learning_rate"),
    (dict(hidden_layer_sizes=(10, 0)), ValueError, "hidden_layer_sizes"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size="big"), TypeError, "batch_size"),
    (dict(momentum=1.5), ValueError, "momentum"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(early_stopping="yes"), TypeError, "early_stopping"),
])
def test_unsupported_or_bad_parameters_raise_clearly(rng, params, err, match):
    X, y = classification(rng, 20, 3, "multiclass")
    with pytest.raises(err, match=match):
        MLPClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="quantile").fit(X, np.abs(X[:, 0]))
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(X, X[:, 0])


def test_feature_names_from_a_dataframe(rng):
    pd = pytest.importorskip("pandas")
    X, y = classification(rng, 40, 3, "binary")
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(df, y.astype(float))
    assert list(reg.feature_names_in_) == ["a", "b", "c"]
    assert reg.n_features_in_ == 3


@pytest.mark.slow
def test_mnist_accuracy_within_half_a_point_of_sklearn():
    (x, y), (xt, yt) = fastnn.load_mnist()
    x, y = x[:20000], y[:20000]
    kw = dict(hidden_layer_sizes=(100,), solver="sgd", learning_rate_init=0.1, momentum=0.9,
              batch_size=100, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(x, y).score(xt, yt)
        theirs = SkClassifier(**kw).fit(x, y).score(xt, yt)
    assert ours >= theirs - 0.005, (ours, theirs)
    assert ours > 0.95


# ------------------------------------------------------------------ lbfgs
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic"])
def test_lbfgs_objective_equals_sklearn(rng, kind, activation):
    """The full-batch loss and gradient (compiled kernels) equal
    scikit-learn's _loss_grad_lbfgs at the same point."""
    from fastnn.engine import training

    X, y = classification(rng, 70, 5, kind)
    kw = dict(hidden_layer_sizes=(7, 4), activation=activation, solver="lbfgs", max_iter=1,
              random_state=2, alpha=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(dtype="float64", **kw).fit(X, y)
        theirs = SkClassifier(**kw).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        a[...] = b  # the same point
    net = ours.network_
    labels, T = net._check_y(ours._targets(y, False)[0] if kind == "multiclass" else
                            ours._label_binarizer.transform(y), len(y))
    f = training.full_batch_objective(net, X, labels, T, l2=0.1)
    loss, grad = f(net.theta.copy())
    Y = theirs._label_binarizer.transform(y).astype(float)
    units = [X.shape[1], 7, 4, theirs.n_outputs_]
    acts = [X] + [None] * 3
    deltas = [None] * 3
    cg = [np.empty((a, b)) for a, b in zip(units[:-1], units[1:])]
    ig = [np.empty(b) for b in units[1:]]
    sk_loss, sk_grad = theirs._loss_grad_lbfgs(
        np.concatenate([c.ravel() for c in theirs.coefs_] + list(theirs.intercepts_)), X, Y,
        None, acts, deltas, cg, ig)
    assert loss == pytest.approx(sk_loss, rel=1e-10)
    ours_grad = np.concatenate([grad[net.layout.poff[l]:net.layout.poff[l] + c.size]
                                for l, c in enumerate(theirs.coefs_)] +
                               [grad[net.layout.poff[l] + c.size:net.layout.poff[l + 1]]
                                for l, c in enumerate(theirs.coefs_)])
    np.testing.assert_allclose(ours_grad, sk_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lbfgs_classifier_matches_sklearn(rng, kind, activation):
    """Full-batch L-BFGS on the compiled loss and gradient follows
    scikit-learn's lbfgs run: same iterations, coefficients to ~1e-6."""
    X, y = classification(rng, 80, 5, kind)
    # 25 iterations, alpha 1e-2: L-BFGS amplifies rounding differences (our
    # sigmoid vs scipy's expit differ in the last bit) on long runs over
    # near-separable data.
    kw = dict(hidden_layer_sizes=(7, 4), activation=activation, solver="lbfgs", max_iter=25,
              random_state=2, alpha=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(dtype="float64", **kw).fit(X, y)
        theirs = SkClassifier(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    # (abs: scikit-learn clips probabilities at eps in the log-loss, fastnn does not)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-5, abs=1e-7)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")


@pytest.mark.parametrize("n_targets", [1, 3])
def test_lbfgs_regressor_matches_sklearn(rng, n_targets):
    X = rng.standard_normal((60, 4))
    y = np.tanh(X @ rng.standard_normal((4, n_targets)))
    y = y.ravel() if n_targets == 1 else y
    kw = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=80, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(dtype="float64", **kw).fit(X, y)
        theirs = SkRegressor(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-7)


def test_lbfgs_has_no_partial_fit_warns_like_sklearn_and_warm_starts(rng):
    X, y = classification(rng, 60, 4, "multiclass")
    clf = MLPClassifier(solver="lbfgs", max_iter=3, random_state=0, dtype="float64")
    assert not hasattr(clf, "partial_fit")
    assert hasattr(MLPClassifier(solver="adam"), "partial_fit")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clf.fit(X, y)
    sk = SkClassifier(solver="lbfgs", max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning):
        sk.fit(X, y)
    assert clf.n_iter_ == sk.n_iter_ == 3
    clf.set_params(warm_start=True, max_iter=200)
    before = clf.loss_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.loss_ < before  # continued from the fitted coefficients


# ------------------------------------------------------- drop-in fidelity
def test_n_iter_counts_each_fit_call_as_sklearn(rng):
    X, y = classification(rng, 60, 4, "multiclass")
    kw = dict(hidden_layer_sizes=(5,), max_iter=4, random_state=0, warm_start=True,
              batch_size=60)
    ours, theirs = MLPClassifier(dtype="float64", **kw), SkClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ours, theirs):
            est.fit(X, y)
            est.fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 4
    assert ours.t_ == theirs.t_ == 8 * 60
    for est in (ours, theirs):
        est.partial_fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 1
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_convergence_warning_exactly_when_sklearn_warns(rng):
    X, y = classification(rng, 60, 4, "binary")
    for max_iter in (3, 500):
        kw = dict(hidden_layer_sizes=(5,), max_iter=max_iter, random_state=0, batch_size=60,
                  learning_rate_init=0.05)
        with warnings.catch_warnings(record=True) as ours_w:
            warnings.simplefilter("always")
            MLPClassifier(dtype="float64", **kw).fit(X, y)
        with warnings.catch_warnings(record=True) as theirs_w:
            warnings.simplefilter("always")
            SkClassifier(**kw).fit(X, y)
        count = [sum(issubclass(w.category, ConvergenceWarning) for w in ws)
                 for ws in (ours_w, theirs_w)]
        assert count[0] == count[1], (max_iter, count)


def test_n_iter_no_change_inf_is_accepted(rng):
    X, y = classification(rng, 40, 3, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(n_iter_no_change=np.inf, max_iter=7, random_state=0).fit(X, y)
        theirs = SkClassifier(n_iter_no_change=np.inf, max_iter=7, random_state=0).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 7


def test_assigned_coefs_are_the_model(rng):
    X, y = classification(rng, 50, 4, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0,
                          dtype="float64").fit(X, y)
        b = MLPClassifier(hidden_layer_sizes=(6,), max_iter=50, random_state=1,
                          dtype="float64").fit(X, y)
    assert not np.array_equal(a.predict_proba(X), b.predict_proba(X))
    a.coefs_ = [c.copy() for c in b.coefs_]          # replace the lists
    a.intercepts_[0] = b.intercepts_[0].copy()       # or items
    a.intercepts_[1] = b.intercepts_[1].copy()
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    a.partial_fit(X, y)                              # continues from them
    b.partial_fit(X, y)
    assert a.n_iter_ == 1
    with pytest.raises(ValueError, match=r"coefs_\[0\] has shape"):
        a.coefs_[0] = np.zeros((2, 2))
        a.predict(X)


@pytest.mark.parametrize("copy_with", ["pickle", "deepcopy"])
def test_assigned_coefs_survive_a_copy_made_before_any_predict(rng, copy_with):
    import copy
    import pickle

    X, y = classification(rng, 50, 4, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0).fit(X, y)
        b = MLPClassifier(hidden_layer_sizes=(6,), max_iter=50, random_state=1).fit(X, y)
    a.coefs_ = [c.copy() for c in b.coefs_]
    a.intercepts_ = [i.copy() for i in b.intercepts_]
    c = pickle.loads(pickle.dumps(a)) if copy_with == "pickle" else copy.deepcopy(a)
    np.testing.assert_array_equal(c.predict_proba(X), b.predict_proba(X))


def test_single_class_y_is_accepted_as_sklearn_does(rng):
    X = rng.standard_normal((30, 3))
    y = np.full(30, "only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(max_iter=5, random_state=0).fit(X, y)
        theirs = SkClassifier(max_iter=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.predict_proba(X).shape == theirs.predict_proba(X).shape


@pytest.mark.parametrize("x_dtype,expected", [(np.float32, np.float32),
                                              (np.float64, np.float64),
                                              (np.int64, np.float64)])
def test_dtype_follows_the_input_by_default(rng, x_dtype, expected):
    X = (rng.standard_normal((40, 3)) * 3).astype(x_dtype)
    y = rng.standard_normal(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert reg.coefs_[0].dtype == expected and reg.predict(X).dtype == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fast = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0,
                            dtype="float32").fit(X, y)
    assert fast.coefs_[0].dtype == np.float32


def test_float64_values_beyond_float32_are_named_as_such(rng):
    X = rng.standard_normal((20, 3))
    X[3, 1] = 3e39
    y = rng.integers(0, 2, 20)
    with pytest.raises(ValueError, match="beyond the range of float32"):
        MLPClassifier(dtype="float32", max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="beyond the range of float32"):
        fastnn.Network([3, 2], dtype="float32").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(max_iter=2).fit(X, y)  # float64 by default: fine


# ------------------------------------------------------------ model exchange
def exchange_problem(rng, kind):
    """60 rows of 4 features for ``kind``, and (fastnn's, scikit-learn's) class."""
    if kind == "regression":
        X = rng.standard_normal((60, 4))
        return X, X @ rng.standard_normal((4, 2)), MLPRegressor, SkRegressor
    X, y = classification(rng, 60, 4, kind)
    return X, y, MLPClassifier, SkClassifier


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
def test_round_trip_with_sklearn(rng, kind):
    X, y, ours_cls, sk_cls = exchange_problem(rng, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_cls(hidden_layer_sizes=(6,), max_iter=20, random_state=0).fit(X, y)
        sk = ours.to_sklearn()
        assert type(sk) is sk_cls
        proba = "predict_proba" if kind != "regression" else "predict"
        np.testing.assert_allclose(getattr(sk, proba)(X), getattr(ours, proba)(X), rtol=1e-12)
        # (Labels agree exactly; regression's predict is the line above: to
        # rounding, as the products' summation order is the kernels' own.)
        if kind != "regression":
            np.testing.assert_array_equal(sk.predict(X), ours.predict(X))
        theirs = sk_cls(hidden_layer_sizes=(5, 3), max_iter=30, random_state=1).fit(X, y)
        back = ours_cls.from_sklearn(theirs)
        np.testing.assert_allclose(getattr(back, proba)(X), getattr(theirs, proba)(X),
                                   rtol=1e-12, atol=1e-15)
        if kind != "regression":
            np.testing.assert_array_equal(back.predict(X), theirs.predict(X))
        if kind != "multilabel":
            back.partial_fit(X, y)  # and trains on
        assert back.score(X, y) > 0 or kind == "regression"


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_model_sent_to_sklearn_trains_on_there(rng, solver, early_stopping):
    X, y = classification(rng, 200, 4, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(hidden_layer_sizes=(6,), solver=solver, max_iter=3,
                             early_stopping=early_stopping, random_state=0).fit(X, y)
        sk = ours.to_sklearn().set_params(warm_start=True, max_iter=5)
        sk.fit(X, y)
        if not early_stopping:
            sk.partial_fit(X, y)
    assert np.isfinite(sk.predict_proba(X)).all()


def test_non_finite_weights_are_reported_in_sklearns_words_first(rng):
    big = np.finfo(np.float64).max
    X, y = np.full((20, 3), big), np.full(20, big)
    for solver in ("adam", "sgd"):  # lbfgs stops at once with finite weights, as scikit-learn
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError) as e:
                MLPRegressor(solver=solver, max_iter=5).fit(X, y)
        assert str(e.value).startswith("Solver produced non-finite parameter weights. The input "
                                       "data may contain large values and need to be "
                                       "preprocessed."), solver


def test_random_state_out_of_range_is_named(rng):
    X, y = classification(rng, 20, 3, "binary")
    with pytest.raises(ValueError, match="random_state: .*2\\*\\*32"):
        MLPClassifier(random_state=2**64, max_iter=2).fit(X, y)


def test_network_summary_lists_layers_and_parameters(capsys, rng):
    net = fastnn.Network([784, 100, 50, 10], dtype="float64")
    assert net.summary() is None  # printed: a notebook shows it once, unescaped
    text = capsys.readouterr().out
    assert "784 -> 100" in text and "78,500" in text and "84,060 parameters" in text
    assert "float64" in text and "not trained" in text and len(repr(net).splitlines()) == 1
    page = net._repr_html_()
    assert "<table>" in page and "<td style='text-align:left'>784 -&gt; 100</td>" in page
    assert "84,060 parameters" in page and "not trained" in page
    x = rng.standard_normal((50, 784))
    net.fit(x, rng.integers(0, 10, 50), epochs=2, batch_size=25)
    assert "trained: 2 epochs, last loss" in net._repr_html_()


def test_estimator_html_shows_the_diagram_and_the_fitted_network(rng):
    X, y = classification(rng, 60, 4, "multiclass")
    est = MLPClassifier(hidden_layer_sizes=(7,), max_iter=3)
    page = est._repr_mimebundle_()["text/html"]
    assert "MLPClassifier" in page and "fastnn-network" not in page
    est.fit(X, y)
    page = est._repr_mimebundle_()["text/html"]
    assert "MLPClassifier" in page and "fastnn-network" in page and "4 -&gt; 7" in page


# ----------------------------------------------------------- sample_weight
@pytest.mark.parametrize("params", [dict(solver="adam"), dict(solver="sgd", alpha=0.1),
                                    dict(solver="lbfgs", alpha=0.01)])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_sample_weight_follows_sklearn(rng, params, kind):
    X, y, ours_cls, sk_cls = exchange_problem(rng, kind)
    sw = rng.random(60) * 3
    sw[:5] = 0
    kw = dict(hidden_layer_sizes=(6,), activation="tanh", max_iter=15, random_state=0,
              batch_size=60, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_cls(dtype="float64", **kw).fit(X, y, sample_weight=sw)
        theirs = sk_cls(**kw).fit(X, y, sample_weight=sw)
        plain = ours_cls(dtype="float64", **kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    if params["solver"] != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert not np.allclose(ours.coefs_[0], plain.coefs_[0])  # the weights mattered


def test_sample_weight_in_partial_fit_and_early_stopping_and_errors(rng):
    X, y = classification(rng, 120, 4, "multiclass")
    sw = rng.random(120) + 0.5
    kw = dict(hidden_layer_sizes=(6,), random_state=0, batch_size=120)
    ours = MLPClassifier(dtype="float64", **kw)
    theirs = SkClassifier(**kw)
    for est in (ours, theirs):
        est.partial_fit(X, y, sw, classes=np.unique(y))
        est.partial_fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        es = MLPClassifier(early_stopping=True, max_iter=30, random_state=0, **{
            k: v for k, v in kw.items() if k != "random_state"}).fit(X, y, sample_weight=sw)
    assert len(es.validation_scores_) == es.n_iter_
    for bad, err in [(np.ones(5), ValueError), (-sw, ValueError), (np.zeros(120), ValueError),
                     (np.full(120, np.nan), ValueError)]:
        with pytest.raises(err, match="sample_weight"):
            MLPClassifier(max_iter=2).fit(X, y, sample_weight=bad)


def test_dataframe_with_early_stopping_warns_nothing_per_epoch(rng):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(rng.standard_normal((100, 3)), columns=list("abc"))
    y = (X.a > 0).astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(early_stopping=True, max_iter=5, random_state=0).fit(X, y)
        MLPRegressor(early_stopping=True, max_iter=5, random_state=0).fit(X, X.b)
    assert [w for w in caught if not issubclass(w.category, ConvergenceWarning)] == []



@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_poisson_regression_follows_sklearn(rng, solver):
    X = rng.standard_normal((80, 4))
    y = rng.poisson(np.exp(0.5 * X[:, :2] @ np.array([[1.0, 0.2], [-0.5, 0.8]])))
    kw = dict(hidden_layer_sizes=(6,), activation="tanh", max_iter=20, random_state=0,
              batch_size=80, loss="poisson", solver=solver, learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(dtype="float64", **kw).fit(X, y)
        theirs = SkRegressor(**kw).fit(X, y)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert ours.n_iter_ == theirs.n_iter_
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)
    back = MLPRegressor.from_sklearn(theirs)
    np.testing.assert_allclose(back.predict(X), theirs.predict(X), rtol=1e-12)


def test_divergence_with_early_stopping_keeps_the_best_model_as_sklearn(rng, monkeypatch):
    """A NaN loss in epoch 4 (simulated: the engine reports the divergence
    after restoring the epoch's start): with early stopping the best
    validation model is kept and fit returns, as scikit-learn does; without
    it TrainingDivergedError is raised."""
    from fastnn.engine import training
    X, y = classification(rng, 200, 4, "multiclass")
    real = training.Trainer.guarded_epoch
    calls = []

    def guarded_epoch(self, opt, state, progress):
        calls.append(1)
        return None if len(calls) == 4 else real(self, opt, state, progress)

    monkeypatch.setattr(training.Trainer, "guarded_epoch", guarded_epoch)
    # Epoch by epoch (short epochs otherwise run several per call, not
    # through guarded_epoch: tests/test_run_ahead.py diverges those).
    monkeypatch.setattr(training.Trainer, "RUN_AHEAD_EPOCH_SECONDS", 0.0)
    kw = dict(hidden_layer_sizes=(20,), early_stopping=True, max_iter=30, random_state=0,
              n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPClassifier(dtype="float64", **kw).fit(X, y)
    assert ours.n_iter_ == 3 and len(ours.validation_scores_) == 3
    assert ours.best_validation_score_ == max(ours.validation_scores_)
    assert np.isfinite(ours.predict_proba(X)).all()
    calls.clear()
    with pytest.raises(fastnn.TrainingDivergedError):
        MLPClassifier(dtype="float64", **dict(kw, early_stopping=False)).fit(X, y)


# ----------------------------------------------------- beyond scikit-learn's MLP
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_class_weight_is_a_sample_weight_per_class(rng, kind):
    """class_weight (a dict, "balanced", or for multi-label a list of
    dicts) trains exactly as the sample_weight scikit-learn's
    compute_sample_weight gives, and multiplies a given sample_weight."""
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = classification(rng, 120, 4, kind)
    weights = {"multiclass": [{"cat": 2.0, "emu": 0.5}, "balanced"],
               "binary": [{7: 3.0}, "balanced"],
               "multilabel": [[{0: 1.0, 1: 2.0}, {0: 1.0, 1: 0.5}, {0: 2.0, 1: 1.0}]]}[kind]
    sw = rng.random(120) + 0.5
    kw = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cw in weights:
            a = MLPClassifier(class_weight=cw, **kw).fit(X, y, sample_weight=sw)
            b = MLPClassifier(**kw).fit(X, y, sample_weight=sw * compute_sample_weight(cw, y))
            for ca, cb in zip(a.coefs_, b.coefs_):
                np.testing.assert_array_equal(ca, cb)


def test_class_weight_errors_name_it(rng):
    X, y = classification(rng, 60, 3, "multiclass")
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="balance", max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight={"cat": -1.0}, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=np.unique(y))


def test_network_class_weight_equals_its_sample_weight(rng):
    x = rng.standard_normal((90, 4))
    y = rng.integers(0, 3, 90)
    counts = np.bincount(y)
    runs = []
    for kw in (dict(class_weight="balanced"), dict(sample_weight=90 / (3 * counts[y])),
               dict(class_weight={0: 2.0}), dict(sample_weight=np.where(y == 0, 2.0, 1.0))):
        net = fastnn.Network([4, 5, 3], seed=0, dtype="float64")
        runs.append(net.fit(x, y, epochs=2, batch_size=30, **kw)["loss"] + [net.theta.copy()])
    for a, b in (runs[:2], runs[2:]):
        np.testing.assert_allclose(a[-1], b[-1], rtol=1e-12)
    with pytest.raises(ValueError, match="class_weight: 5 is not a class"):
        fastnn.Network([4, 3]).fit(x, y, class_weight={5: 1.0})
    with pytest.raises(ValueError, match="class_weight needs class labels"):
        fastnn.Network([4, 1], output="identity").fit(x, rng.random(90), class_weight="balanced")


def test_validation_loss_curve_and_early_stopping_on_the_loss(rng):
    X, y = classification(rng, 300, 4, "multiclass")
    kw = dict(hidden_layer_sizes=(8,), early_stopping=True, max_iter=40, random_state=0,
              n_iter_no_change=3, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_score = MLPClassifier(**kw).fit(X, y)
        by_loss = MLPClassifier(early_stopping_metric="loss", **kw).fit(X, y)
        plain = MLPClassifier(**dict(kw, early_stopping=False)).fit(X, y)
    for est in (by_score, by_loss):
        curve = est.validation_loss_curve_
        assert len(curve) == est.n_iter_ == len(est.validation_scores_)
        assert all(np.isfinite(curve))
    assert plain.validation_loss_curve_ is None
    # Stopping on the loss: it ends n_iter_no_change + 1 epochs after the
    # lowest validation loss, whose model it keeps.
    curve = by_loss.validation_loss_curve_
    best = int(np.argmin(curve))
    assert by_loss.n_iter_ == 40 or by_loss.n_iter_ == best + 1 + kw["n_iter_no_change"] + 1
    assert by_loss.best_validation_score_ == by_loss.validation_scores_[best]


def test_estimator_callbacks_see_each_epoch_and_can_stop(rng):
    X, y = classification(rng, 100, 4, "binary")
    seen = []

    def watch(est, history):
        seen.append((est, len(history["loss"])))
        return len(history["loss"]) == 3

    est = MLPClassifier((5,), max_iter=20, random_state=0, callbacks=[watch]).fit(X, y)
    assert [n for _, n in seen] == [1, 2, 3] and seen[0][0] is est and est.n_iter_ == 3
    with pytest.raises(TypeError, match="callbacks\\[0\\] is not callable"):
        MLPClassifier(callbacks=[3]).fit(X, y)
    from sklearn.base import clone
    assert clone(est).get_params()["callbacks"] == [watch]


@pytest.mark.parametrize("solver", ["rmsprop", "adagrad", "adamw"])
def test_fastnn_solvers_fit_and_cannot_go_to_sklearn(rng, solver):
    X, y = classification(rng, 100, 4, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((6,), solver=solver, max_iter=30, learning_rate_init=0.01,
                            random_state=0).fit(X, y)
    assert est.score(X, y) > 0.6
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    with pytest.raises(ValueError, match="cannot hold this model"):
        est.to_sklearn()


def test_estimator_dropout_trains_and_refuses_lbfgs(rng):
    from sklearn.base import clone

    X, y = classification(rng, 200, 4, "multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier((16,), dropout=0.2, max_iter=60, learning_rate_init=0.02,
                          random_state=0).fit(X, y)
        b = clone(a).fit(X, y)
        c = MLPClassifier((16,), max_iter=60, learning_rate_init=0.02, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])  # the masks follow random_state
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    assert a.score(X, y) > 0.8, (a.score(X, y), c.score(X, y))
    with pytest.raises(ValueError, match="dropout needs a stochastic solver"):
        MLPClassifier((5,), solver="lbfgs", dropout=0.1).fit(X, y)
    with pytest.raises(ValueError, match="dropout must be < 1"):
        MLPRegressor((5,), dropout=1.0).fit(X, X[:, 0])


def test_estimator_losses_smoothing_and_clipping(rng):
    """loss="huber"/"absolute_error" (delta), label_smoothing and clip_norm
    reach the network; defaults leave scikit-learn's behaviour alone."""
    from sklearn.base import clone

    X, y = classification(rng, 200, 4, "multiclass")
    t = X @ rng.standard_normal(X.shape[1]) + 0.1 * rng.standard_normal(200)
    t[:10] += 50  # outliers: the robust losses shrug them off
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = {loss: MLPRegressor((16,), loss=loss, delta=0.5, max_iter=80,
                                   learning_rate_init=0.01, random_state=0).fit(X, t)
                for loss in ("squared_error", "huber", "absolute_error")}
        smooth = MLPClassifier((16,), label_smoothing=0.2, clip_norm=1.0, max_iter=60,
                               learning_rate_init=0.02, random_state=0).fit(X, y)
        binary = MLPClassifier((8,), label_smoothing=0.2, max_iter=40, learning_rate_init=0.02,
                               random_state=0).fit(X, y == y[0])
        plain = MLPClassifier((16,), max_iter=60, learning_rate_init=0.02,
                              random_state=0).fit(X, y)
    clean = slice(10, None)
    err = {k: np.median(np.abs(f.predict(X[clean]) - t[clean])) for k, f in fits.items()}
    assert err["huber"] < err["squared_error"] and err["absolute_error"] < err["squared_error"]
    assert fits["huber"].network_.output == "huber" and fits["huber"].network_.delta == 0.5
    assert fits["huber"].out_activation_ == "identity"
    assert smooth.network_.label_smoothing == 0.2 and binary.network_.output == "sigmoid"
    assert smooth.score(X, y) > 0.8 and binary.score(X, y == y[0]) > 0.7
    # Smoothed targets keep the probabilities off 0 and 1.
    assert smooth.predict_proba(X).max() < plain.predict_proba(X).max()
    assert clone(smooth).get_params()["clip_norm"] == 1.0
    smooth.set_params(label_smoothing=0.0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        smooth.fit(X, y)
    assert smooth.network_.label_smoothing == 0.0
    for bad, words in ((MLPRegressor(loss="huber", delta=0), "delta"),
                       (MLPRegressor(loss="hubber"), "loss must be one of"),
                       (MLPClassifier(label_smoothing=1.5), "label_smoothing"),
                       (MLPClassifier(clip_norm=-1), "clip_norm"),
                       (MLPClassifier(solver="lbfgs", clip_norm=1.0), "clip_norm needs")):
        with pytest.raises(ValueError, match=words):
            bad.fit(X, y if isinstance(bad, MLPClassifier) else t)
    with pytest.raises(ValueError, match="cannot hold this model"):
        fits["huber"].to_sklearn()


def test_progress_reports_batches_and_checks_its_value(rng):
    X, y = classification(rng, 200, 4, "multiclass")
    seen = []
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, batch_size=50, random_state=0,
                        progress=lambda done, total: seen.append((done, total)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert seen and seen[-1] == (4, 4) and len(est.loss_curve_) == 3
    from sklearn.base import clone
    assert "progress" in est.get_params() and clone(est).progress is est.progress
    est.to_sklearn()  # scikit-learn's MLP has no progress: left out
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        MLPClassifier(progress="yes").fit(X, y)
