"""scikit-learn compatible estimators: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for :class:`sklearn.neural_network.MLPClassifier` and
``MLPRegressor`` (solvers ``"lbfgs"``, ``"sgd"``, ``"adam"``): the
same constructor parameters with the same meanings and defaults, the same
fitted attributes and methods. Training runs on fastnn's compiled kernels
through a :class:`fastnn.Network` (``network_``); this module only maps
scikit-learn's conventions onto it:

* initialisation: Glorot-uniform weights *and* biases drawn from
  ``random_state`` exactly as scikit-learn draws them (same bounds, same
  order), so both start from identical parameters;
* ``alpha``: the L2 penalty ``0.5*alpha*sum(W**2)/batch_rows`` added to each
  batch's loss, as scikit-learn does;
* ``loss_curve_``: scikit-learn's losses (log-loss; for regression half the
  mean squared error over all outputs), penalty included;
* stopping: ``tol``/``n_iter_no_change`` on the training loss, or on the
  validation score with ``early_stopping`` (best parameters restored);
  ``learning_rate="adaptive"`` divides the rate by 5 instead of stopping;
  ``"invscaling"`` sets ``learning_rate_init / (t_ + 1) ** power_t`` after
  each epoch (scikit-learn's rule, ``t_`` = samples seen); the decisions
  live in :class:`fastnn.engine.stopping.ScikitLearnRule`;
* ``solver="lbfgs"``: scipy's L-BFGS-B on the compiled full-batch objective
  (:func:`fastnn.engine.training.full_batch_objective`); given dask arrays,
  the same objective summed over their row chunks on the workers holding
  them (:func:`fastnn.dask.lbfgs`), only parameters and gradients crossing
  the network;
* ``dtype``: None (default) follows ``X`` as scikit-learn does (float32
  stays float32, anything else is float64); "float32"/"float64" force it.

``sample_weight`` (fit, partial_fit): the loss of each batch is the
weighted mean and ``alpha`` is divided by the batch's weight sum, as in
scikit-learn >= 1.7; the early-stopping score is weighted too.

Differences: shuffling uses fastnn's own seeded generator, so with the same ``random_state`` the
batches differ from scikit-learn's.
Sparse ``X`` (scipy CSR/CSC) stays sparse: the first layer reads its CSR
arrays (lbfgs densifies it).

scikit-learn is needed for this module only (``pip install fastnn[sklearn]``).
"""
from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

try:
    from typing import Self
except ImportError:  # Python 3.10
    Self = Any

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (_check_partial_fit_first_call,
                                          check_classification_targets, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as e:  # pragma: no cover - exercised without scikit-learn
    raise ImportError("fastnn.MLPClassifier/MLPRegressor need scikit-learn >= 1.6: "
                      "pip install 'fastnn[sklearn]'") from e

from ..engine import inputs, registry, training
from ..engine import validation as V
from ..engine.network import Network
from ..engine.stopping import ScikitLearnRule

def _is_dask(a):
    """Whether ``a`` is a dask collection (dask need not be installed)."""
    return type(a).__module__.split(".")[0] == "dask"


ACTIVATIONS = registry.SKLEARN_ACTIVATIONS  # activation= names -> Network's hidden=
# scikit-learn's solvers, then fastnn's (torch.optim's rules; see Network.fit).
SOLVERS = ("lbfgs", "sgd", "adam", "rmsprop", "adagrad", "adamw")
STOCHASTIC_SOLVERS = SOLVERS[1:]
LEARNING_RATES = ("constant", "invscaling", "adaptive")
# MLPRegressor(loss=...) -> Network's output: scikit-learn's two, then fastnn's.
LOSSES = {"squared_error": "identity", "poisson": "poisson", "absolute_error": "absolute_error",
          "huber": "huber"}
# Heads whose loss_curve_ is averaged over the outputs (scikit-learn's squared
# loss; torch's reduction="mean" for the others).
PER_OUTPUT = ("identity", "absolute_error", "huber")
# scikit-learn's words for a fit that ends with inf or NaN weights; programs
# match them, so fastnn's errors for that case begin with them.
NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
              "values and need to be preprocessed.")


def _random_state(value):
    """scikit-learn's generator for ``random_state``; its range error names
    the argument."""
    try:
        return check_random_state(value)
    except ValueError as e:
        raise ValueError(f"random_state: {e}, got {value!r}") from None


class _FitData(NamedTuple):
    """One fit's checked data."""
    X: Any                # (n, d) validated X (dense or scipy sparse)
    y: np.ndarray         # the targets as given (for the validation score)
    labels: np.ndarray    # (n,) int64 class indices (softmax head), else empty
    T: np.ndarray         # (n, K) targets of the other heads, else empty
    head: str             # the output head
    n_out: int            # output units
    sw: Any               # (n,) float64 sample weights, or None


# The estimators' docstrings: scikit-learn's parameters (same meaning and
# default) and fastnn's additions (marked), written once for both classes.
_PARAMETERS = """\
hidden_layer_sizes : array-like of int, default=(100,)
    Units of each hidden layer.
activation : {"identity", "logistic", "tanh", "relu"} or list, default="relu"
    Hidden activation; fastnn also takes ``"elu"``, ``"softplus"``,
    ``"gelu"``, ``"silu"``, ``"leaky_relu"``, and a list of one name per
    hidden layer (*fastnn*).
solver : {"lbfgs", "sgd", "adam"}, default="adam"
    The optimizer; fastnn adds ``"rmsprop"``, ``"adagrad"`` and ``"adamw"``
    (*fastnn*; each as ``torch.optim`` computes it).
alpha : float, default=0.0001
    L2 penalty ``0.5*alpha*sum(W**2)`` divided by the batch's rows (or
    its sample weights), as scikit-learn.
batch_size : int or "auto", default="auto"
    Rows per mini-batch; ``"auto"`` is ``min(200, n_samples)``.
learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
    Step-size schedule for ``solver="sgd"``.
learning_rate_init : float, default=0.001
    Initial step size (sgd, adam and fastnn's solvers).
power_t : float, default=0.5
    Exponent of ``"invscaling"``.
max_iter : int, default=200
    Epochs (stochastic solvers) or iterations (lbfgs) at most.
shuffle : bool, default=True
    Shuffle the rows every epoch (fastnn's own seeded generator).
random_state : int, RandomState instance or None, default=None
    Seeds the initial weights (drawn as scikit-learn draws them), the
    shuffling, the validation split and the dropout masks.
tol : float, default=1e-4
    Improvement below which an epoch counts as no progress.
verbose : bool, default=False
    Print the loss of every epoch.
warm_start : bool, default=False
    Continue from the fitted network on the next ``fit``.
momentum : float, default=0.9
    Momentum of ``solver="sgd"``.
nesterovs_momentum : bool, default=True
    Nesterov's momentum for ``solver="sgd"``.
early_stopping : bool, default=False
    Hold out ``validation_fraction`` of the rows and stop when the
    validation score stops improving; the best parameters are kept.
validation_fraction : float, default=0.1
    Share of the rows held out for ``early_stopping``.
beta_1 : float, default=0.9
    Adam's (and AdamW's) first-moment decay.
beta_2 : float, default=0.999
    Adam's second-moment decay; RMSprop's smoothing constant.
epsilon : float, default=1e-8
    Adam's (AdamW's, RMSprop's, Adagrad's) numerical stability term.
n_iter_no_change : int, default=10
    Epochs without progress (``tol``) before stopping.
max_fun : int, default=15000
    Loss evaluations at most (lbfgs).
dtype : {None, "float32", "float64"}, default=None
    *fastnn*: the network's precision; None follows ``X`` as scikit-learn
    does (float32 stays float32, anything else is float64).
weight_decay : float, default=0.01
    *fastnn*: AdamW's decoupled weight decay.
early_stopping_metric : {"score", "loss"}, default="score"
    *fastnn*: what ``early_stopping`` watches: the validation score (as
    scikit-learn) or the validation loss.
callbacks : list of callable or None, default=None
    *fastnn*: ``f(estimator, history)`` after each epoch; True stops.
dropout : float or list of float, default=0.0
    *fastnn*: inverted dropout rate after each hidden layer while
    training (one rate, or one per hidden layer); off in ``predict``.
clip_norm : float or None, default=None
    *fastnn*: clip each step's gradient to this global L2 norm.
progress : bool or callable, default=False
    *fastnn*: True draws a bar over the epochs (in Jupyter a display
    updated in place, which the saved notebook keeps finished; on a
    terminal tqdm's); a callable gets ``(batches_done, batches_total)``.
"""

_ATTRIBUTES = """\
loss_ : float
    The training loss of the last epoch (penalty included).
best_loss_ : float or None
    The best training loss (None with ``early_stopping``).
loss_curve_ : list of float
    The training loss of each epoch (stochastic solvers).
validation_scores_ : list of float or None
    The validation score of each epoch (with ``early_stopping``).
best_validation_score_ : float or None
    The best of them.
validation_loss_curve_ : list of float
    *fastnn*: the validation loss of each epoch (with ``early_stopping``).
t_ : int
    Training samples seen.
coefs_ : list of ndarray
    Weight matrices, ``coefs_[i]`` of shape (units in, units out): views
    into ``network_``'s parameters.
intercepts_ : list of ndarray
    Bias vectors, views into ``network_``'s parameters.
n_features_in_ : int
    Features seen in ``fit``.
feature_names_in_ : ndarray of str
    Their names, when ``X`` had string column names.
n_iter_ : int
    Epochs (or lbfgs iterations) run.
n_layers_ : int
    Layers, input and output included.
n_outputs_ : int
    Output units.
out_activation_ : str
    The output activation.
network_ : fastnn.Network
    *fastnn*: the network that holds the parameters and trains.
"""


def _docstring(summary, extra_parameters="", extra_attributes=""):
    return (f"{summary}\n\nParameters\n----------\n{_PARAMETERS}{extra_parameters}\n"
            f"Attributes\n----------\n{extra_attributes}{_ATTRIBUTES}")


class _BaseMLP(BaseEstimator):
    _head = None  # set by the subclasses for regression; chosen from y for classification

    def __init__(
            self,
            hidden_layer_sizes: int | Sequence[int] = (100,),
            activation: str | Sequence[str] = "relu",
            *,
            solver: str = "adam",
            alpha: float = 0.0001,
            batch_size: int | str = "auto",
            learning_rate: str = "constant",
            learning_rate_init: float = 0.001,
            power_t: float = 0.5,
            max_iter: int = 200,
            shuffle: bool = True,
            random_state: int | np.random.RandomState | None = None,
            tol: float = 1e-4,
            verbose: bool = False,
            warm_start: bool = False,
            momentum: float = 0.9,
            nesterovs_momentum: bool = True,
            early_stopping: bool = False,
            validation_fraction: float = 0.1,
            beta_1: float = 0.9,
            beta_2: float = 0.999,
            epsilon: float = 1e-8,
            n_iter_no_change: int = 10,
            max_fun: int = 15000,
            dtype: str | np.dtype | None = None,
            weight_decay: float = 0.01,
            early_stopping_metric: str = "score",
            callbacks: Sequence[Callable[[Any, dict], Any]] | None = None,
            dropout: float | Sequence[float] = 0.0,
            clip_norm: float | None = None,
            progress: bool | Callable[[int, int], Any] = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.weight_decay = weight_decay
        self.early_stopping_metric = early_stopping_metric
        self.callbacks = callbacks
        self.dropout = dropout
        self.clip_norm = clip_norm
        self.progress = progress

    # ------------------------------------------------------------ checks
    def _check_params(self):
        hls = self.hidden_layer_sizes
        if isinstance(hls, numbers.Integral) and not isinstance(hls, bool):
            hls = [hls]
        try:
            hls = list(hls)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{self.hidden_layer_sizes!r}") from None
        for s in hls:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError("hidden_layer_sizes must be positive integers, got "
                                 f"{self.hidden_layer_sizes!r}")
        if isinstance(self.activation, str):
            V.check_choice("activation", self.activation, tuple(ACTIVATIONS))
        else:  # fastnn: one per hidden layer
            V.check_hidden([ACTIVATIONS.get(a, a) if isinstance(a, str) else a
                            for a in self.activation], len(hls))
        V.check_choice("solver", self.solver, SOLVERS)
        V.check_float("alpha", self.alpha, 0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            V.check_int("batch_size", self.batch_size, 1)
        V.check_choice("learning_rate", self.learning_rate, LEARNING_RATES)
        V.check_float("learning_rate_init", self.learning_rate_init, 0, low_open=True)
        V.check_float("power_t", self.power_t, 0)
        V.check_int("max_iter", self.max_iter, 1)
        V.check_float("tol", self.tol, 0)
        V.check_float("momentum", self.momentum, 0, 1, high_open=True)
        V.check_float("validation_fraction", self.validation_fraction, 0, 1, high_open=True)
        V.check_float("beta_1", self.beta_1, 0, 1, high_open=True)
        V.check_float("beta_2", self.beta_2, 0, 1, high_open=True)
        V.check_float("epsilon", self.epsilon, 0, low_open=True)
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == np.inf):
            V.check_int("n_iter_no_change", self.n_iter_no_change, 1)
        V.check_int("max_fun", self.max_fun, 1)
        V.check_float("weight_decay", self.weight_decay, 0)
        V.check_choice("early_stopping_metric", self.early_stopping_metric, ("score", "loss"))
        if V.dropout_rates(self.dropout, len(hls) + 1) is not None and self.solver == "lbfgs":
            raise ValueError("dropout needs a stochastic solver (sgd, adam, ...), not lbfgs: "
                             "its objective must not change between evaluations")
        if V.check_clip_norm(self.clip_norm) and self.solver == "lbfgs":
            raise ValueError("clip_norm needs a stochastic solver (sgd, adam, ...), not lbfgs, "
                             "whose line search takes whole steps")
        if self.callbacks is not None:
            try:
                callbacks = list(self.callbacks)
            except TypeError:
                raise TypeError(f"callbacks must be a list of functions, got "
                                f"{type(self.callbacks).__name__}") from None
            for i, f in enumerate(callbacks):
                if not callable(f):
                    raise TypeError(f"callbacks[{i}] is not callable: {f!r}")
        if not (isinstance(self.progress, bool) or callable(self.progress)):
            raise TypeError(f"progress must be True, False or a callable f(batches_done, "
                            f"batches_total), got {self.progress!r}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        return [int(s) for s in hls], None if self.dtype is None else V.check_dtype(self.dtype)

    def _validate_X(self, X, reset, y=None):
        kw = dict(accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=reset)
        if y is None:
            X = validate_data(self, X, **kw)
        else:
            X, y = validate_data(self, X, y, multi_output=True,
                                 y_numeric=not isinstance(self, ClassifierMixin), **kw)
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
        return X, y

    # ----------------------------------------------------------- training
    def _initialize(self, layer_units, dtype, head):
        """A new network with scikit-learn's initialisation."""
        self._rs = _random_state(self.random_state)
        net = Network(layer_units, hidden=self._hidden(), output=head,
                      init="uniform", seed=0, dtype=dtype, **self._loss_settings(head))
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in zip(net.weights, net.biases):
            bound = np.sqrt(factor / (W.shape[0] + W.shape[1]))
            W[...] = self._rs.uniform(-bound, bound, W.shape)
            b[...] = self._rs.uniform(-bound, bound, b.shape)
        # fastnn's shuffling stream, seeded from the same random state.
        net.engine = training.EngineState(int(self._rs.randint(0, 2 ** 31 - 1)))
        self.network_ = net
        self._views()
        self.n_layers_ = len(layer_units)
        self.n_outputs_ = layer_units[-1]
        self.n_iter_ = 0
        if self.solver in STOCHASTIC_SOLVERS:  # as scikit-learn: no curve for lbfgs
            self.loss_curve_ = []
            self.validation_loss_curve_ = []
            self._rule = ScikitLearnRule(self.learning_rate_init)
            self._publish_rule()

    def _publish_rule(self):
        """scikit-learn's fitted attributes from the stopping rule's state."""
        rule = self._rule
        self.n_iter_ = rule.n_iter
        self.t_ = rule.t
        self._no_improvement_count = rule.no_improvement_count
        if self.early_stopping:
            self.validation_scores_ = rule.validation_scores
            self.best_validation_score_ = rule.best_validation_score
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = rule.best_loss

    def _html_repr(self):
        """The notebook display: scikit-learn's estimator diagram, then the
        fitted network's layers (:meth:`fastnn.Network._repr_html_`)."""
        from sklearn.utils import estimator_html_repr

        page = estimator_html_repr(self)
        net = getattr(self, "network_", None)
        return page if net is None else page + net._repr_html_()

    def _views(self):
        self.coefs_ = list(self.network_.weights)
        self.intercepts_ = list(self.network_.biases)

    def _sync_params(self):
        """Make ``coefs_``/``intercepts_`` the model again: arrays a user
        assigned (``est.coefs_ = ...``, ``est.coefs_[0] = ...``) are copied
        into the network (shapes checked), then the lists hold its views."""
        net = self.network_
        for name, views in (("coefs_", net.weights), ("intercepts_", net.biases)):
            given = getattr(self, name)
            if len(given) != len(views):
                raise ValueError(f"{name} has {len(given)} arrays, the network has "
                                 f"{len(views)} layers")
            for l, (a, view) in enumerate(zip(given, views)):
                if a is view:
                    continue
                a = np.asarray(a)
                if a.shape != view.shape:
                    raise ValueError(f"{name}[{l}] has shape {a.shape}, expected {view.shape}")
                if not np.isfinite(a).all():
                    raise ValueError(f"{name}[{l}] contains NaN or infinity")
                view[...] = a
        self._views()

    def _class_weights(self, y, incremental):
        return None  # classifiers: class_weight

    def _loss_settings(self, head):
        """Network's loss settings (Huber's delta, label smoothing) for ``head``."""
        return {}

    def _hidden(self):
        """Network's ``hidden`` for ``activation`` (a name, or one per layer)."""
        if isinstance(self.activation, str):
            return ACTIVATIONS[self.activation]
        return [ACTIVATIONS.get(a, a) for a in self.activation]

    def _fit(self, X, y, incremental, sample_weight=None):
        if not incremental and any(_is_dask(a) for a in (X, y, sample_weight)):
            return self._fit_dask(X, y, sample_weight)
        data = self._fit_data(X, y, incremental, sample_weight)
        net = self.network_
        self._sync_params()
        if self.solver == "lbfgs":
            return self._fit_lbfgs(net, data.X, data.labels, data.T, data.n_out, data.head,
                                   data.sw)
        return self._fit_stochastic(net, data, incremental)

    def _fit_data(self, X, y, incremental, sample_weight):
        """Checked data and the network to fit (new, or the fitted one
        continued): a :class:`_FitData`."""
        hidden, dtype = self._check_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             f"y is None")
        first = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y = self._validate_X(X, reset=first, y=y)
        sw = None if sample_weight is None else V.check_sample_weight(sample_weight, X.shape[0])
        labels, T, head = self._targets(y, first and not incremental)
        cw = self._class_weights(y, incremental)
        if cw is not None:
            sw = cw if sw is None else V.kernel_array(sw * cw)
        n_out = T.shape[1] if T.size else len(self.classes_)
        self._network_for([X.shape[1]] + hidden + [n_out], dtype, X.dtype, head, first)
        return _FitData(X, y, labels, T, head, n_out, sw)

    def _network_for(self, layer_units, dtype, x_dtype, head, first):
        """``network_`` for a fit: new (``first``), or the fitted one
        continued if its layers and dtype still match."""
        if dtype is None:  # as scikit-learn: float32 X trains in float32, else float64
            dtype = self.network_.dtype if not first else np.dtype(
                np.float32 if x_dtype == np.float32 else np.float64)
        if first:
            self._initialize(layer_units, dtype, head)
        elif list(self.network_.layers) != layer_units or self.network_.dtype != dtype:
            raise ValueError(f"hidden_layer_sizes/dtype changed since the model was fitted "
                             f"(layers {list(self.network_.layers)}, now {layer_units}); "
                             f"refit with warm_start=False")
        else:  # (set_params may have changed them since)
            self.network_.set_loss(**self._loss_settings(head))

    def _fit_stochastic(self, net, data, incremental):
        if not hasattr(self, "_rule"):  # warm start from an lbfgs fit
            self.loss_curve_ = []
            self._rule = ScikitLearnRule(self.learning_rate_init)
        sgd = self.solver == "sgd"
        opt = training.optimizer(self.solver, self.learning_rate_init,
                                 self.momentum if sgd else 0.0, bool(self.nesterovs_momentum),
                                 self.beta_1, self.beta_2, self.epsilon, self.alpha,
                                 l2_per_row=True, weight_decay=self.weight_decay,
                                 clip_norm=self.clip_norm, **net._dropout_settings(self.dropout))
        # The optimizer state carries over between partial_fit calls only.
        state = training.state_for(net.engine, opt, net.theta, keep=incremental)
        rule = self._rule
        rule.configure(sgd=sgd, learning_rate=self.learning_rate,
                       learning_rate_init=self.learning_rate_init, power_t=self.power_t,
                       tol=self.tol, n_iter_no_change=self.n_iter_no_change,
                       early_stopping=self.early_stopping, verbose=self.verbose,
                       reset_rate=not incremental)
        data, val = self._validation_split(data)
        trainer = self._trainer(net, data)
        loss_scale = data.n_out if data.head in PER_OUTPUT else 1
        if val is None:
            self.validation_loss_curve_ = None
        else:  # continued by a warm start, as validation_scores_
            Xv = net._check_x(val[0], "X")
            if getattr(self, "validation_loss_curve_", None) is None:
                self.validation_loss_curve_ = []

        def validate():
            record = {"validation_score": self._score(*val[:3]),
                      "validation_loss": net._evaluate(Xv, val[3], val[4])["loss"] / loss_scale}
            if self.early_stopping_metric == "loss":
                record["stop_score"] = -record["validation_loss"]
            return record

        def report(epoch, record):
            self.loss_ = record["loss"]
            self.loss_curve_.append(self.loss_)
            if "validation_loss" in record:
                self.validation_loss_curve_.append(record["validation_loss"])
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (rule.n_iter + 1, self.loss_))
                if "validation_score" in record:
                    print("Validation score: %f" % record["validation_score"])

        try:
            with net.engine.exclusive():
                training.run_epochs(
                    trainer, opt, state, rule, 1 if incremental else self.max_iter,
                    training.Watch({}, validate if self.early_stopping else None, report=report,
                                   progress=self.progress,
                                   classify=False, callbacks=tuple(self.callbacks or ()),
                                   owner=self,
                                   # scikit-learn's squared loss is averaged over the outputs too.
                                   loss_scale=loss_scale))
            if not incremental and rule.n_iter == self.max_iter and not rule.stopped:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                              "reached and the optimization hasn't converged yet.",
                              ConvergenceWarning)
        except KeyboardInterrupt:
            # As scikit-learn: keep the model of the last completed epoch.
            warnings.warn("Training interrupted by user.")
        except training.TrainingDivergedError as e:
            # With early stopping scikit-learn keeps its best validation
            # model when the loss blows up; without it fastnn raises (the
            # parameters are those before the diverging epoch).
            if not (self.early_stopping and rule.best_params is not None):
                raise training.TrainingDivergedError(f"{NON_FINITE} {e}") from None
        finally:
            self._publish_rule()
        rule.finish(net.theta)
        return self

    def _validation_split(self, data):
        """(the rows to train on, (X_val, y_val, sample_weight_val, labels_val,
        T_val) or None):
        with early_stopping, scikit-learn's split of the rows (stratified
        for single-label classification) by ``validation_fraction``."""
        if not self.early_stopping:
            return data, None
        X, y = data.X, data.y
        stratify = y if isinstance(self, ClassifierMixin) and y.ndim == 1 else None
        tr, va = train_test_split(np.arange(X.shape[0]), random_state=self._rs,
                                  test_size=self.validation_fraction, stratify=stratify)
        if va.size < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        sw = data.sw
        val = (X[va], y[va], None if sw is None else sw[va],
               data.labels[va] if data.labels.size else data.labels,
               data.T[va] if data.T.size else data.T)
        return data._replace(X=X[tr], y=y[tr], sw=None if sw is None else sw[tr],
                             labels=data.labels[tr] if data.labels.size else data.labels,
                             T=data.T[tr] if data.T.size else data.T), val

    def _trainer(self, net, data):
        n = data.X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped")
            batch_size = min(self.batch_size, n)
        # Sparse X stays sparse: the first layer reads its CSR arrays.
        if inputs.is_scipy_sparse(data.X):
            Xd = net._check_x(data.X, "X")
        else:
            Xd = V.cast_float("X", data.X, net.dtype)
        T = V.kernel_array(np.ascontiguousarray(data.T, dtype=net.dtype))
        return net._trainer(Xd, data.labels, T, batch_size, self.shuffle, data.sw)

    def _fit_dask(self, X, y, sample_weight):
        """``fit`` on dask arrays: ``solver="lbfgs"`` over the row chunks,
        each chunk's loss and gradient computed on the worker holding it
        (:func:`fastnn.dask.lbfgs`); the same objective, so the same model
        as the in-memory fit, to rounding."""
        from . import dask as fdask

        if self.solver != "lbfgs":
            raise ValueError(f"dask arrays are fitted with solver='lbfgs' (exact full-batch "
                             f"L-BFGS over the chunks), not solver={self.solver!r}: for a "
                             f"stochastic solver train the network with fastnn.dask.fit")
        hidden, dtype = self._check_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             f"y is None")
        X, y = fdask._check_rows(fdask._as_dask("X", X), fdask._as_dask("y", y))
        first = not hasattr(self, "network_") or not self.warm_start
        self._validate_X(X[:1].compute(), reset=first)  # feature count, dtype, numbers
        targets, n_out, head, cw = self._dask_targets(y, first)
        sw = None
        if sample_weight is not None:
            sw = fdask._as_dask("sample_weight", sample_weight)
            if sw.ndim != 1 or sw.shape[0] != X.shape[0]:
                raise ValueError(f"sample_weight must have shape ({X.shape[0]},), got "
                                 f"{sw.shape}")
            sw = sw.rechunk({0: X.chunks[0]}).astype(np.float64)
        if cw is not None:
            sw = cw if sw is None else sw * cw
        self._network_for([X.shape[1]] + hidden + [n_out], dtype, X.dtype, head, first)
        self._sync_params()
        net = self.network_
        client, cluster = fdask._get_client(None)
        try:
            result = fdask.lbfgs(client, net, X.astype(net.dtype), targets, sw,
                                 max_iter=self.max_iter, max_fun=self.max_fun, l2=self.alpha,
                                 tol=self.tol, loss_scale=n_out if head in PER_OUTPUT else 1)
        finally:
            if cluster is not None:
                client.close()
                cluster.close()
        return self._lbfgs_done(net, result)

    def _fit_lbfgs(self, net, X, labels, T, n_out, head, sample_weight=None):
        """Full batch L-BFGS-B (scipy) on the compiled loss and gradient,
        with scikit-learn's objective, options and iteration count."""
        from scipy.optimize import minimize

        if inputs.is_scipy_sparse(X):
            X = X.toarray()  # the full-batch objective runs the dense first layer
        Xd = V.cast_float("X", X, net.dtype)
        T = V.kernel_array(np.ascontiguousarray(T, dtype=net.dtype))
        objective = training.full_batch_objective(
            net, Xd, labels, T, l2=self.alpha,
            # scikit-learn's squared loss is averaged over the outputs too.
            loss_scale=n_out if head in PER_OUTPUT else 1, sample_weight=sample_weight)
        x0 = net.theta.astype(np.float64)
        with net.engine.exclusive():
            result = minimize(objective, x0, method="L-BFGS-B", jac=True,
                              options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                       "gtol": self.tol})
        net.theta[...] = result.x
        return self._lbfgs_done(net, result)

    def _lbfgs_done(self, net, result):
        """The fitted attributes and warnings of an L-BFGS-B ``result``."""
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"(status={result.status}):\n{message}.\n\nIncrease the number of "
                f"iterations to improve the convergence (max_iter={self.max_iter}).\nYou "
                f"might also want to scale the data as shown in:\n    "
                f"https://scikit-learn.org/stable/modules/preprocessing.html",
                ConvergenceWarning, stacklevel=4)
        if not np.isfinite(net.theta).all():
            raise ValueError(NON_FINITE)
        return self

    def to_onnx(self, path: str | os.PathLike | None = None) -> Any:
        """The fitted estimator as ONNX, with the outputs skl2onnx gives a
        scikit-learn MLP: a classifier's ``label`` (``predict``) and
        ``probabilities`` (``predict_proba``), a regressor's ``variable``;
        input ``input``. Needs ``onnx``. (In a Pipeline: ``skl2onnx.to_onnx``
        converts fastnn's estimators, see
        :func:`fastnn.integrations.onnx_export.register_skl2onnx`.)

        Parameters
        ----------
        path : str, path-like or None, default=None
            Also write the model there.

        Returns
        -------
        onnx.ModelProto
            The model.
        """
        from .onnx_export import estimator_to_onnx

        check_is_fitted(self)
        self._sync_params()
        return estimator_to_onnx(self, path)

    def to_sklearn(self) -> Any:
        """A fitted scikit-learn estimator with these parameters.

        Returns
        -------
        sklearn.neural_network.MLPClassifier or MLPRegressor
            Float64 weights; its ``predict_proba``/``predict`` equal this
            one's to rounding (fastnn's own settings are left out).
        """
        from sklearn import neural_network

        check_is_fitted(self)
        self._sync_params()
        cls = getattr(neural_network, type(self).__name__)
        # fastnn's own parameters (scikit-learn's MLP has no such settings).
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("dtype", "weight_decay", "class_weight", "early_stopping_metric",
                               "callbacks", "dropout", "clip_norm", "label_smoothing",
                               "delta", "progress")}
        est = cls(**params)
        try:
            est._validate_params()
        except ValueError as e:
            raise ValueError(f"scikit-learn's {cls.__name__} cannot hold this model: {e}") from None
        est.coefs_ = [np.array(c, dtype=np.float64) for c in self.coefs_]
        est.intercepts_ = [np.array(b, dtype=np.float64) for b in self.intercepts_]
        for name in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "n_features_in_",
                     "feature_names_in_", "classes_", "_label_binarizer", "loss_", "t_",
                     "loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_", "_no_improvement_count"):
            if hasattr(self, name):
                setattr(est, name, getattr(self, name))
        # scikit-learn's early stopping restores these at the end of a fit
        # that continues this one (warm_start): the best model so far is this.
        est._best_coefs = [c.copy() for c in est.coefs_]
        est._best_intercepts = [b.copy() for b in est.intercepts_]
        return est

    @classmethod
    def from_sklearn(cls, est: Any, dtype: str | None = None) -> Self:
        """This estimator from a fitted scikit-learn MLP.

        Parameters
        ----------
        est : sklearn.neural_network.MLPClassifier or MLPRegressor
            Fitted; its parameters and weights are taken.
        dtype : {None, "float32", "float64"}, default=None
            The network's precision (None: float64, as scikit-learn's).

        Returns
        -------
        MLPClassifier or MLPRegressor
            A fitted fastnn estimator, for fastnn's prediction and further
            training.
        """
        check_is_fitted(est)
        params = est.get_params()
        ours = cls(**params, dtype=dtype)
        layers = [est.coefs_[0].shape[0]] + [c.shape[1] for c in est.coefs_]
        X_dtype = np.dtype(dtype) if dtype is not None else est.coefs_[0].dtype
        head = {h.sklearn: h.name for h in registry.HEADS.values()}[est.out_activation_]
        ours._rs = _random_state(ours.random_state)
        net = Network(layers, hidden=ACTIVATIONS[ours.activation], output=head, seed=0,
                      dtype=V.check_dtype(X_dtype))
        for W, b, c, i in zip(net.weights, net.biases, est.coefs_, est.intercepts_):
            W[...] = c
            b[...] = i
        ours.network_ = net
        ours._views()
        for name in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "n_features_in_",
                     "feature_names_in_", "classes_", "_label_binarizer", "loss_", "t_",
                     "loss_curve_"):
            if hasattr(est, name):
                setattr(ours, name, getattr(est, name))
        if ours.solver in STOCHASTIC_SOLVERS:
            ours._rule = ScikitLearnRule(ours.learning_rate_init)
            ours._rule.t = getattr(est, "t_", 0)
            ours.loss_curve_ = list(getattr(est, "loss_curve_", []))
            ours._publish_rule()
            ours.n_iter_ = getattr(est, "n_iter_", 0)
        return ours

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Fit the model to ``X`` and ``y``.

        Dask arrays (with ``solver="lbfgs"``) are fitted on the current
        Dask client's workers, each chunk where it is.

        Parameters
        ----------
        X : array-like, sparse matrix or dask array of shape (n_samples, n_features)
            Inputs (sparse ``X`` stays sparse; lbfgs densifies it).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels (classifier) or targets (regressor).
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weighs each row's loss (scikit-learn >= 1.7).

        Returns
        -------
        self
            The fitted estimator.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    # ---------------------------------------------------------- inference
    def _forward(self, X, validate=True):
        """Head output (probabilities or values); ``validate=False`` for X
        already validated by fit (no feature-name check per epoch)."""
        if validate:
            check_is_fitted(self)
            self._sync_params()
            X, _ = self._validate_X(X, reset=False)
        return self.network_.predict_proba(X)

    # Pickling: coefs_/intercepts_ are views into the network's parameters.
    def __getstate__(self):
        if "network_" in self.__dict__ and "coefs_" in self.__dict__:
            self._sync_params()  # arrays assigned to coefs_ are the model that is saved
        state = dict(super().__getstate__())
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "network_" in self.__dict__:
            self._views()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = _docstring(
        """Multi-layer perceptron classifier on fastnn's kernels.

A drop-in for :class:`sklearn.neural_network.MLPClassifier`: the same
parameters with the same meanings and defaults, the same fitted attributes
and methods; fastnn's additions are marked *fastnn*. Multi-class (softmax
output), binary and multi-label (logistic outputs); any label type
scikit-learn accepts. Dask arrays fit with ``solver="lbfgs"`` on the
workers holding their chunks.""",
        """class_weight : dict, list of dict, "balanced" or None, default=None
    *fastnn*: weigh each row by its class (scikit-learn's
    ``compute_sample_weight``), times ``sample_weight``.
label_smoothing : float, default=0.0
    *fastnn*: softmax targets ``(1 - a) * onehot + a / classes``; logistic
    targets move by ``a / 2`` towards 0.5.
""",
        """classes_ : ndarray
    The class labels (multi-label: the column indices).
""")

    def __init__(
            self,
            hidden_layer_sizes: int | Sequence[int] = (100,),
            activation: str | Sequence[str] = "relu",
            *,
            solver: str = "adam",
            alpha: float = 0.0001,
            batch_size: int | str = "auto",
            learning_rate: str = "constant",
            learning_rate_init: float = 0.001,
            power_t: float = 0.5,
            max_iter: int = 200,
            shuffle: bool = True,
            random_state: int | np.random.RandomState | None = None,
            tol: float = 1e-4,
            verbose: bool = False,
            warm_start: bool = False,
            momentum: float = 0.9,
            nesterovs_momentum: bool = True,
            early_stopping: bool = False,
            validation_fraction: float = 0.1,
            beta_1: float = 0.9,
            beta_2: float = 0.999,
            epsilon: float = 1e-8,
            n_iter_no_change: int = 10,
            max_fun: int = 15000,
            dtype: str | np.dtype | None = None,
            weight_decay: float = 0.01,
            early_stopping_metric: str = "score",
            callbacks: Sequence[Callable[[Any, dict], Any]] | None = None,
            dropout: float | Sequence[float] = 0.0,
            clip_norm: float | None = None,
            class_weight: dict | str | None = None,
            label_smoothing: float = 0.0,
            progress: bool | Callable[[int, int], Any] = False,
    ) -> None:
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype, weight_decay=weight_decay,
                         early_stopping_metric=early_stopping_metric, callbacks=callbacks,
                         dropout=dropout, clip_norm=clip_norm, progress=progress)
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

    def _loss_settings(self, head):
        return {"label_smoothing": self.label_smoothing}

    def _class_weights(self, y, incremental):
        """Per-row weights from ``class_weight`` (scikit-learn's
        ``compute_sample_weight``: a dict {label: weight}, "balanced", or for
        multi-label y a list of dicts), or None."""
        cw = self.class_weight
        if cw is None:
            return None
        if incremental and isinstance(cw, str) and cw == "balanced":
            raise ValueError("class_weight='balanced' is not supported for partial_fit: the "
                             "class frequencies of all the data are unknown; pass a dict")
        if not (isinstance(cw, (dict, list)) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight must be 'balanced', a dict, a list of dicts or None, "
                             f"got {cw!r}")
        from sklearn.utils.class_weight import compute_sample_weight
        try:
            w = compute_sample_weight(cw, y)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"class_weight: {e}") from None
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"class_weight: the weights must be finite and >= 0, got {cw!r}")
        return V.kernel_array(np.ascontiguousarray(w, dtype=np.float64))

    def _targets(self, y, reset):
        check_classification_targets(y)
        if reset or not hasattr(self, "classes_"):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and set(classes) != set(self.classes_):
                raise ValueError(f"warm_start can only be used where `y` has the same classes "
                                 f"as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {classes}")
            if not set(classes) <= set(self.classes_):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        kind = self._label_binarizer.y_type_
        if kind == "multiclass":
            self.out_activation_ = "softmax"
            labels = np.searchsorted(self.classes_, y).astype(np.int64)
            return labels, np.zeros((0, len(self.classes_))), "softmax"
        self.out_activation_ = "logistic"
        T = self._label_binarizer.transform(y).astype(np.float64)
        return np.zeros(0, np.int64), T, "sigmoid"

    def _dask_targets(self, y, reset):
        """(targets as the network reads them, outputs, head, per-row class
        weights or None) for labels ``y`` in a dask array: the classes are
        found on the workers; each chunk is encoded where it is."""
        import dask

        if y.ndim != 1:
            raise ValueError(f"on dask arrays y must be 1-D class labels, got shape {y.shape}: "
                             f"fit multi-label y from NumPy arrays")
        classes, counts = dask.compute(*self._dask_unique(y))
        _, T, head = self._targets(classes, reset)
        classes = self.classes_
        if head == "softmax":
            targets = y.map_blocks(lambda b: np.searchsorted(classes, b).astype(np.int64),
                                   dtype=np.int64)
            n_out = len(classes)
        else:  # two classes: one logistic output, 1 for classes_[1]
            targets = y.map_blocks(lambda b: (b == classes[1]).astype(np.float64)[:, None],
                                   dtype=np.float64, new_axis=1, chunks=(y.chunks[0], (1,)))
            n_out = 1
        cw = self.class_weight
        if cw is None:
            return targets, n_out, head, None
        if isinstance(cw, str) and cw == "balanced":
            found = dict(zip(classes.tolist(), counts.tolist()))
            per_class = np.array([counts.sum() / (len(counts) * found[c])
                                  for c in classes.tolist()])
        elif isinstance(cw, dict):
            per_class = np.array([float(cw.get(c, 1.0)) for c in classes.tolist()])
        else:
            raise ValueError(f"class_weight must be 'balanced', a dict or None for dask "
                             f"arrays, got {cw!r}")
        if not (np.isfinite(per_class).all() and (per_class >= 0).all()):
            raise ValueError(f"class_weight: the weights must be finite and >= 0, got {cw!r}")
        weights = y.map_blocks(lambda b: per_class[np.searchsorted(classes, b)],
                               dtype=np.float64)
        return targets, n_out, head, weights

    @staticmethod
    def _dask_unique(y):
        import dask.array as da

        return da.unique(y, return_counts=True)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: ArrayLike | None = None) -> Self:
        """One epoch over ``(X, y)``, continuing the optimizer state.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            This chunk's inputs.
        y : array-like
            Its labels.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weighs each row's loss.
        classes : array-like or None, default=None
            All the labels; required on the first call.

        Returns
        -------
        self
            The estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns ordered as ``classes_`` (multi-label: one per label).
        """
        p = self._forward(X)
        if self.n_outputs_ == 1:
            p = p.ravel()
            return np.vstack([1 - p, p]).T
        return p

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Log-probabilities (-inf where a probability is 0).
        """
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The predicted class labels.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray
            Labels from ``classes_`` (multi-label: a 0/1 matrix).
        """
        return self._decode(self._forward(X))

    def _decode(self, p):
        if self.n_outputs_ == 1:
            p = p.ravel()
        return self._label_binarizer.inverse_transform(p)

    def _score(self, X, y, sample_weight=None):
        """Validation score during fit (X already validated)."""
        return accuracy_score(y, self._decode(self._forward(X, validate=False)),
                              sample_weight=sample_weight)


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = _docstring(
        """Multi-layer perceptron regressor on fastnn's kernels.

A drop-in for :class:`sklearn.neural_network.MLPRegressor`: the same
parameters with the same meanings and defaults, the same fitted attributes
and methods; fastnn's additions are marked *fastnn*. Single and
multi-output. Dask arrays fit with ``solver="lbfgs"`` on the workers
holding their chunks.""",
        """loss : {"squared_error", "poisson", "absolute_error", "huber"}, default="squared_error"
    The loss (scikit-learn >= 1.7 has ``"poisson"``); *fastnn* adds
    ``"absolute_error"`` and ``"huber"``.
delta : float, default=1.0
    *fastnn*: the Huber loss's threshold.
""")

    def __init__(
            self,
            hidden_layer_sizes: int | Sequence[int] = (100,),
            activation: str | Sequence[str] = "relu",
            *,
            solver: str = "adam",
            alpha: float = 0.0001,
            batch_size: int | str = "auto",
            learning_rate: str = "constant",
            learning_rate_init: float = 0.001,
            power_t: float = 0.5,
            max_iter: int = 200,
            shuffle: bool = True,
            random_state: int | np.random.RandomState | None = None,
            tol: float = 1e-4,
            verbose: bool = False,
            warm_start: bool = False,
            momentum: float = 0.9,
            nesterovs_momentum: bool = True,
            early_stopping: bool = False,
            validation_fraction: float = 0.1,
            beta_1: float = 0.9,
            beta_2: float = 0.999,
            epsilon: float = 1e-8,
            n_iter_no_change: int = 10,
            max_fun: int = 15000,
            loss: str = "squared_error",
            dtype: str | np.dtype | None = None,
            weight_decay: float = 0.01,
            early_stopping_metric: str = "score",
            callbacks: Sequence[Callable[[Any, dict], Any]] | None = None,
            dropout: float | Sequence[float] = 0.0,
            clip_norm: float | None = None,
            delta: float = 1.0,
            progress: bool | Callable[[int, int], Any] = False,
    ) -> None:
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype, weight_decay=weight_decay,
                         early_stopping_metric=early_stopping_metric, callbacks=callbacks,
                         dropout=dropout, clip_norm=clip_norm, progress=progress)
        self.loss = loss
        self.delta = delta

    def _loss_settings(self, head):
        return {"delta": self.delta}

    def _check_params(self):
        V.check_choice("loss", self.loss, LOSSES)
        V.check_float("delta", self.delta, 0, low_open=True)
        return super()._check_params()

    def _targets(self, y, reset):
        T = np.asarray(y, dtype=np.float64)
        if T.ndim == 1:
            T = T.reshape(-1, 1)
        if self.loss == "poisson":
            if (T < 0).any():
                raise ValueError("Some value(s) of y are negative which is not allowed for "
                                 "Poisson regression.")
            self.out_activation_ = "exp"
            return np.zeros(0, np.int64), T, "poisson"
        self.out_activation_ = "identity"
        return np.zeros(0, np.int64), T, LOSSES[self.loss]

    def _dask_targets(self, y, reset):
        """(targets as a 2-D float dask array, outputs, head, None)."""
        T = y.astype(np.float64)
        if T.ndim == 1:
            T = T[:, None]
        if self.loss == "poisson" and bool((T < 0).any().compute()):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        _, _, head = self._targets(np.zeros((1, T.shape[1])), reset)
        return T, T.shape[1], head, None

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None) -> Self:
        """One epoch over ``(X, y)``, continuing the optimizer state.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            This chunk's inputs.
        y : array-like
            Its targets.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weighs each row's loss.

        Returns
        -------
        self
            The estimator.
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The predicted values.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The values (one output: flattened).
        """
        p = self._forward(X)
        return p.ravel() if p.shape[1] == 1 else p

    def _score(self, X, y, sample_weight=None):
        """Validation score during fit (X already validated)."""
        p = self._forward(X, validate=False)
        p = p.ravel() if p.shape[1] == 1 else p
        if not np.isfinite(p).all():
            return np.nan
        return r2_score(y, p, sample_weight=sample_weight)


# skl2onnx converts pipelines holding these estimators once it is imported.
from .onnx_export import register_skl2onnx_when_imported as _register  # noqa: E402

_register()
