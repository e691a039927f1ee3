"""fastnn.Network: the thin class users hold.

It owns one flat parameter vector (layout in :mod:`.memory`), checks
arguments (:mod:`.validation`) and hands training to the engine
(:mod:`.training`, policies in :mod:`.stopping`); files are
:mod:`.modelio`'s. Every loop over data runs in :mod:`fastnn.kernels`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..kernels.bundles import is_sparse
from . import backend, inputs, modelio, schedules, training, validation
from .init import INITS, init_params
from .memory import EVAL_ROWS, ParamLayout
from .progress import epoch_printer
from .registry import ACTIVATIONS, loss_of
from .stopping import ScheduleAndPatience
from .training import TrainingDivergedError  # noqa: F401  (re-exported)

HIDDEN = validation.HIDDEN
OUTPUTS = validation.OUTPUTS
OPTIMIZERS = validation.OPTIMIZERS
FORMAT_VERSION = modelio.FORMAT_VERSION


class Network:
    """A fully connected network from ``layers[0]`` inputs to ``layers[-1]`` outputs.

    Parameters
    ----------
    layers : sequence of int
        Widths, input first: ``[784, 100, 50, 10]``.
    hidden : str or list of str, default="relu"
        The hidden layers' activation, a name in :data:`HIDDEN` (relu,
        sigmoid, tanh, identity, elu, softplus, gelu, silu, leaky_relu), or
        one per hidden layer (``["relu", "tanh"]``).
    output : str, default="softmax"
        The head and its loss: ``"softmax"`` (cross-entropy),
        ``"sigmoid"`` (binary cross-entropy per output), ``"identity"``
        (squared error), ``"poisson"`` (half Poisson deviance, log link),
        ``"absolute_error"``, ``"huber"`` (squared within ``delta`` of the
        target, linear beyond, as ``torch.nn.HuberLoss``); regression heads
        sum their loss over the outputs.
    init : {"uniform", "he", "glorot"}, default="uniform"
        Weight initialisation; ``"uniform"`` draws from
        ``[-init_scale, init_scale]``.
    init_scale : float, default=0.1
        Half-width of ``init="uniform"``.
    seed : int or None, default=None
        Seeds the initialisation, the shuffling and the dropout masks: a
        run repeats exactly.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the parameters and of the arithmetic.
    delta : float, default=1.0
        The ``"huber"`` head's threshold.
    label_smoothing : float, default=0.0
        Softmax: as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``;
        sigmoid: each 0/1 target moves ``label_smoothing / 2`` towards the
        other.

    Attributes
    ----------
    theta : ndarray
        Every parameter, in one vector; ``weights``/``biases`` are views
        into it (writing them changes the model).
    weights : list of ndarray
        ``weights[l]`` of shape (``layers[l]``, ``layers[l + 1]``).
    biases : list of ndarray
        ``biases[l]`` of shape (``layers[l + 1]``,).
    history : dict
        The last ``fit``'s per-epoch figures.
    engine : fastnn.engine.training.EngineState
        What training keeps between fits (the shuffling stream, the
        optimizer state for ``partial_fit``).
    """

    def __init__(self, layers: Sequence[int], hidden: str | Sequence[str] = "relu",
                 output: str = "softmax", init: str = "uniform", init_scale: float = 0.1,
                 seed: int | None = None, dtype: str | np.dtype = "float32",
                 delta: float = 1.0, label_smoothing: float = 0.0) -> None:
        self.layers = tuple(validation.check_layers(layers))
        # One name per hidden layer; ``hidden`` as given (a name or a list).
        self.hidden_acts = validation.check_hidden(hidden, len(self.layers) - 2)
        self.hidden = hidden if isinstance(hidden, str) else list(self.hidden_acts)
        self.output = validation.check_choice("output", output, OUTPUTS)
        self.delta, self.label_smoothing = validation.check_loss_settings(
            self.output, delta, label_smoothing)
        validation.check_choice("init", init, INITS)
        self.dtype = validation.check_dtype(dtype)
        if seed is not None:
            validation.check_int("seed", seed, 0, 2**32 - 1)  # RandomState's range
        init_scale = validation.check_float("init_scale", init_scale, 0, low_open=True)
        if init == "uniform" and init_scale > float(np.finfo(self.dtype).max):
            raise ValueError(f"init_scale={init_scale:g} is beyond the range of "
                             f"{self.dtype.name} ({np.finfo(self.dtype).max:.3g})")
        self._allocate()
        for (W, b), (W0, b0) in zip(zip(self.weights, self.biases),
                                    init_params(self.layers, init, init_scale, seed)):
            W[...] = W0
            b[...] = b0
        self.engine = training.EngineState(seed)

    def _allocate(self):
        self.layout = ParamLayout(self.layers)
        n_layers = len(self.layers) - 1
        self.acts = np.array([ACTIVATIONS[a].code for a in self.hidden_acts]
                             + [ACTIVATIONS["identity"].code], dtype=np.int64)
        assert self.acts.shape[0] == n_layers
        self.head = loss_of(self.output, self.delta, self.label_smoothing)
        self.theta = self.layout.new_theta(self.dtype)
        self.weights, self.biases = self.layout.views(self.theta)

    def set_loss(self, delta: float | None = None, label_smoothing: float | None = None) -> None:
        """Change the loss settings for the next fits.

        Parameters
        ----------
        delta : float or None, default=None
            The huber head's threshold (None: unchanged).
        label_smoothing : float or None, default=None
            Softmax/sigmoid label smoothing (None: unchanged).
        """
        self.delta, self.label_smoothing = validation.check_loss_settings(
            self.output, self.delta if delta is None else delta,
            self.label_smoothing if label_smoothing is None else label_smoothing)
        self.head = loss_of(self.output, self.delta, self.label_smoothing)

    @property
    def n_inputs(self):
        return self.layers[0]

    @property
    def n_outputs(self):
        return self.layers[-1]

    def _model(self):
        """The parameters as the kernels take them (:class:`.bundles.Model`)."""
        return self.layout.model(self.theta, self.acts)

    def _check_x(self, x, name="x", check_finite=True):
        """x as the kernels take it: a C-contiguous float matrix, or a scipy
        sparse matrix as CSR (the first layer reads it in place)."""
        if inputs.is_scipy_sparse(x):
            return validation.as_sparse(name, x, self.dtype, self.n_inputs)
        return validation.as_float_matrix(name, x, self.dtype, self.n_inputs, check_finite)

    def _check_y(self, y, n, name="y"):
        return validation.check_targets(y, n, self.output, self.n_outputs, self.dtype, name)

    def _trainer(self, X, labels, T, batch_size, shuffle, sample_weight=None):
        """A :class:`fastnn.engine.training.Trainer` for checked data."""
        return training.Trainer(self, X, labels, T, batch_size, shuffle, sample_weight)

    # ------------------------------------------------------------- training
    def fit(self, x: ArrayLike, y: ArrayLike, epochs: int = 1, batch_size: int = 100,
            lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.0,
            nesterov: bool = False, beta1: float = 0.9, beta2: float = 0.999,
            eps: float = 1e-8, l2: float = 0.0, lr_schedule: Any = None, shuffle: bool = True,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            validation_split: float = 0.0, early_stopping: bool = False, patience: int = 10,
            min_delta: float = 0.0, callbacks: Sequence[Callable] = (),
            progress: bool | Callable[[int, int], Any] = False, verbose: bool = False,
            weight_decay: float = 0.01, sample_weight: ArrayLike | None = None,
            class_weight: dict | str | None = None,
            dropout: float | Sequence[float] | None = None,
            clip_norm: float | None = None) -> dict:
        """Train by mini-batch gradient descent.

        Parameters
        ----------
        x : array-like or scipy sparse matrix of shape (n_samples, n_features)
            Training inputs (a sparse or mostly-zero ``x`` is read through
            its CSR form).
        y : array-like
            Class indices 0..K-1 or one-hot rows (softmax), 0/1 columns
            (sigmoid), or target values (regression heads).
        epochs : int, default=1
            Passes over the data (at most, with ``early_stopping``).
        batch_size : int, default=100
            Rows per step.
        lr : float, default=0.1
            Learning rate (the start of ``lr_schedule``).
        optimizer : {"sgd", "adam", "adamw", "rmsprop", "adagrad"}, default="sgd"
            Each as ``torch.optim``'s class of that name computes it; its
            state starts fresh on each ``fit``.
        momentum : float, default=0.0
            SGD's momentum.
        nesterov : bool, default=False
            Nesterov's momentum for SGD.
        beta1 : float, default=0.9
            Adam's and AdamW's first-moment decay.
        beta2 : float, default=0.999
            Adam's and AdamW's second-moment decay; RMSprop's smoothing
            constant (torch's ``alpha``).
        eps : float, default=1e-8
            The optimizers' stability term.
        l2 : float, default=0.0
            Penalty ``0.5*l2*sum(W**2)`` (weights only) in each batch's loss.
        lr_schedule : str, callable or None, default=None
            A schedule of :mod:`fastnn.schedules` (by name or object).
        shuffle : bool, default=True
            Visit the rows in a new seeded order every epoch.
        validation_data : tuple (x_val, y_val) or None, default=None
            Evaluated after each epoch (``val_loss``, ``val_accuracy``).
        validation_split : float, default=0.0
            Or hold out this share of the rows (the last ones, before
            shuffling) for validation.
        early_stopping : bool, default=False
            Stop once ``val_loss`` has not improved by more than
            ``min_delta`` for ``patience`` epochs, and restore the best epoch.
        patience : int, default=10
            Epochs without improvement before stopping.
        min_delta : float, default=0.0
            Improvement that counts.
        callbacks : sequence of callable, default=()
            ``f(net, history)`` after each epoch; returning True stops.
        progress : bool or callable, default=False
            True: a bar over the epochs -- in Jupyter a display updated
            in place (the saved notebook keeps the finished bar); on a
            terminal tqdm's if installed, else a text bar over each epoch's
            batches; nothing on a pipe. A callable gets
            ``(batches_done, batches_total)``.
        verbose : bool, default=False
            Print a line per epoch.
        weight_decay : float, default=0.01
            AdamW's decoupled weight decay.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            A weight per row: each batch's loss is the weighted mean.
        class_weight : dict, "balanced" or None, default=None
            ``{class index: weight}`` or scikit-learn's balanced formula,
            multiplied into ``sample_weight`` (validation rows unweighted).
        dropout : float, list of float or None, default=None
            Inverted dropout on the hidden layers' outputs while training:
            one rate in [0, 1) or one per hidden layer; masks seeded by
            ``seed``, the same whatever the thread count.
        clip_norm : float or None, default=None
            Scale each step's gradient to a global L2 norm of at most this
            (``torch.nn.utils.clip_grad_norm_``).

        Returns
        -------
        dict
            The history (also ``self.history``): per epoch ``loss`` and
            ``accuracy`` (running means over the batches, each measured
            before its update; NaN accuracy for regression), ``lr``,
            ``seconds``, and ``val_loss``/``val_accuracy`` when validating.

        Raises
        ------
        TrainingDivergedError
            A NaN/inf loss or parameter: the parameters are those from
            before that epoch. (``KeyboardInterrupt`` keeps the last
            completed epoch and ``self.history``, and propagates.)
        """
        opt = training.optimizer(optimizer, lr, momentum, nesterov, beta1, beta2, eps, l2,
                                 weight_decay=weight_decay, clip_norm=clip_norm,
                                 **self._dropout_settings(dropout))
        epochs, policy, callbacks = self._fit_settings(
            epochs, opt, lr_schedule, (early_stopping, patience, min_delta), callbacks)
        validation_split = validation.check_float("validation_split", validation_split, 0, 1,
                                                  high_open=True)
        X = self._check_x(x, check_finite=False)  # the trainer's input scan checks it
        labels, T = self._check_y(y, X.shape[0])
        sw = (None if sample_weight is None
              else validation.check_sample_weight(sample_weight, X.shape[0]))
        (X, labels, T), val = validation.split_validation(
            X, labels, T, validation_data, validation_split, self._check_x, self._check_y)
        if sw is not None:
            sw = sw[:X.shape[0]]
        cw = validation.class_weights(class_weight, labels, T)
        if cw is not None:
            sw = cw if sw is None else validation.kernel_array(sw * cw)
        if early_stopping and val is None:
            raise ValueError("early_stopping needs validation_data or validation_split > 0")
        with self.engine.exclusive():
            trainer = self._trainer(X, labels, T, batch_size, shuffle, sw)
            classify = self.output not in validation.REGRESSION_OUTPUTS
            return self._fit(trainer, opt, policy, epochs, val, training.Watch(
                None, progress=progress, callbacks=callbacks, owner=self,
                report=epoch_printer(classify) if verbose else None,
                classify=classify))

    def _dropout_settings(self, dropout):
        """training.optimizer's dropout arguments: the rates per layer, and
        the masks' seed from the shuffling stream (so from ``seed``)."""
        return {"dropout": validation.dropout_rates(dropout, len(self.layers) - 1),
                "drop_seed": int(self.engine.shuffle_state[0])}

    @staticmethod
    def _fit_settings(epochs, opt, lr_schedule, stopping, callbacks):
        """Checked ``fit`` options: (epochs, policy, callbacks) for the
        :class:`.training.Optimizer` ``opt`` and ``stopping`` =
        (early_stopping, patience, min_delta); shared with
        :func:`fastnn.dask.fit`."""
        early_stopping, patience, min_delta = stopping
        epochs = validation.check_int("epochs", epochs, 0)
        schedule = schedules.get(lr_schedule, epochs)
        patience = validation.check_int("patience", patience, 1)
        min_delta = validation.check_float("min_delta", min_delta, 0)
        callbacks = validation.check_callbacks(callbacks)
        policy = ScheduleAndPatience(schedule, opt.lr, bool(early_stopping), patience, min_delta)
        return epochs, policy, callbacks

    def _fit(self, trainer, opt, policy, epochs, val, watch):
        """``epochs`` of ``trainer``'s data; ``val`` the validation data or
        None; ``watch`` what else looks at the fit (its history is made here)."""
        self.history = hist = training.new_history(val is not None)
        state = training.state_for(self.engine, opt, self.theta, keep=False)

        def validate():
            r = self._evaluate(*val)
            return {"val_loss": r["loss"], "val_accuracy": r.get("accuracy", float("nan"))}

        training.run_epochs(trainer, opt, state, policy, epochs, watch._replace(
            history=hist, validate=validate if val is not None else None))
        best = policy.finish(self.theta)
        if best is not None:
            hist["best_epoch"] = best
        return hist

    def partial_fit(self, x: ArrayLike, y: ArrayLike, batch_size: int = 100, lr: float = 0.1,
                    optimizer: str = "sgd", momentum: float = 0.0, nesterov: bool = False,
                    beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                    l2: float = 0.0, shuffle: bool = True, weight_decay: float = 0.01,
                    dropout: float | Sequence[float] | None = None,
                    clip_norm: float | None = None) -> dict:
        """One epoch over ``(x, y)``, continuing the optimizer state.

        The momentum velocity, Adam moments and step count of the previous
        ``fit`` or ``partial_fit`` with the same optimizer carry on: for
        data that arrives in chunks.

        Parameters
        ----------
        x : array-like or scipy sparse matrix of shape (n_samples, n_features)
            This chunk's inputs.
        y : array-like
            Its targets, as for :meth:`fit`.
        batch_size : int, default=100
            Rows per step.
        lr : float, default=0.1
            Learning rate.
        optimizer : {"sgd", "adam", "adamw", "rmsprop", "adagrad"}, default="sgd"
            As for :meth:`fit`.
        momentum : float, default=0.0
            SGD's momentum.
        nesterov : bool, default=False
            Nesterov's momentum for SGD.
        beta1 : float, default=0.9
            Adam's first-moment decay.
        beta2 : float, default=0.999
            Adam's second-moment decay (RMSprop's smoothing constant).
        eps : float, default=1e-8
            The optimizers' stability term.
        l2 : float, default=0.0
            L2 penalty, as for :meth:`fit`.
        shuffle : bool, default=True
            Visit the rows in a seeded random order.
        weight_decay : float, default=0.01
            AdamW's decoupled weight decay.
        dropout : float, list of float or None, default=None
            As for :meth:`fit`.
        clip_norm : float or None, default=None
            As for :meth:`fit`.

        Returns
        -------
        dict
            The epoch's ``{"loss", "accuracy"}``.
        """
        opt = training.optimizer(optimizer, lr, momentum, nesterov, beta1, beta2, eps, l2,
                                 weight_decay=weight_decay, clip_norm=clip_norm,
                                 **self._dropout_settings(dropout))
        X = self._check_x(x, check_finite=False)
        labels, T = self._check_y(y, X.shape[0])
        with self.engine.exclusive():
            trainer = self._trainer(X, labels, T, batch_size, shuffle)
            state = training.state_for(self.engine, opt, self.theta, keep=True)
            self.history = hist = training.new_history(False)
            training.run_epochs(trainer, opt, state,
                                ScheduleAndPatience(schedules.Constant(), opt.lr), 1,
                                training.Watch(hist, classify=self.output not in
                                               validation.REGRESSION_OUTPUTS))
        return {"loss": hist["loss"][-1], "accuracy": hist["accuracy"][-1]}

    # ------------------------------------------------------------ inference
    def _rows(self, X, dense_work=True):
        """(dense X or placeholder, SparseInput, row ids, work buffers)."""
        return inputs.for_inference(X, self.layout, self.theta, EVAL_ROWS, dense_work)

    def _forward(self, x, head, name="x"):
        # Dense X is checked for NaN/inf by the kernel, in the same read as
        # the first layer's product (a separate scan would read X again: a
        # quarter of a 10000-row MNIST prediction).
        X = self._check_x(x, name, check_finite=False)
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        Xd, sp, rows, work = self._rows(X, dense_work=False)
        args = (Xd, sp, rows, self._model(), head, work, out)
        bad = self._backend("predict_batches", args).predict(*args)
        if bad:
            raise ValueError(f"{name} contains NaN or infinity")
        return out

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """The head's output: class probabilities (softmax, sigmoid) or values.

        Parameters
        ----------
        x : array-like or scipy sparse matrix of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
            Probabilities (softmax, sigmoid) or the regression values.
        """
        return self._forward(x, self.head)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Class labels, or regression values.

        Parameters
        ----------
        x : array-like or scipy sparse matrix of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray
            Softmax: the argmax class, shape (n_samples,); sigmoid: 0/1 per
            output (flattened for one output); regression heads: the values
            (poisson: ``exp`` of the last layer).
        """
        if self.output == "poisson":
            return self._forward(x, self.head)
        Z = self._forward(x, self.head._replace(code=-1))  # the logits
        if self.output == "softmax":
            return Z.argmax(axis=1)
        if self.output == "sigmoid":
            p = (Z > 0).astype(np.int64)
            return p[:, 0] if self.n_outputs == 1 else p
        return Z

    def _backend(self, name, args):
        """The backend to run the inference driver ``name`` on ``args``."""
        X, sp = args[0], args[1]
        return backend.choose([(name, args)], memo=(name, X.flags.writeable, self.dtype.str,
                                                    is_sparse(sp)))

    def _evaluate(self, X, labels, T):
        Xd, sp, rows, work = self._rows(X)
        args = (Xd, sp, rows, labels, T, self._model(), self.head, work)
        loss_sum, correct = self._backend("evaluate_batches", args).evaluate(*args)
        r = {"loss": loss_sum / X.shape[0]}
        if self.output not in validation.REGRESSION_OUTPUTS:
            r["accuracy"] = correct / X.shape[0]
        return r

    def evaluate(self, x: ArrayLike, y: ArrayLike) -> dict:
        """Mean loss, and accuracy for classification, on ``(x, y)``.

        Parameters
        ----------
        x : array-like or scipy sparse matrix of shape (n_samples, n_features)
            Inputs.
        y : array-like
            Targets, as for :meth:`fit`.

        Returns
        -------
        dict
            ``{"loss": ..., "accuracy": ...}`` (no accuracy for regression).
        """
        X = self._check_x(x)
        return self._evaluate(X, *self._check_y(y, X.shape[0]))

    # ---------------------------------------------------------------- files
    def describe(self) -> dict:
        """The architecture as a dict (what :meth:`save` writes beside the
        parameters).

        Returns
        -------
        dict
            ``layers``, ``hidden``, ``output``, ``dtype``, and ``delta`` /
            ``label_smoothing`` when they matter.
        """
        d = {"layers": list(self.layers), "hidden": self.hidden, "output": self.output,
             "dtype": self.dtype.name}
        if self.output == "huber":
            d["delta"] = self.delta
        if self.label_smoothing:
            d["label_smoothing"] = self.label_smoothing
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write the architecture and parameters to a ``.npz`` file atomically.

        Parameters
        ----------
        path : str or path-like
            The file (a regular file; a link is followed; an existing file
            is replaced only once the new one is complete).
        """
        modelio.write_model(path, self.describe(), self.weights, self.biases)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        """Read a network written by :meth:`save`.

        Never unpickles; every header is checked before data is read (see
        :func:`fastnn.engine.modelio.read_model`).

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save`.

        Returns
        -------
        Network
            The network, its parameters those saved.
        """
        description, weights, biases = modelio.read_model(path)
        net = cls(description["layers"], hidden=description["hidden"],
                  output=description["output"], seed=0, dtype=description["dtype"],
                  delta=description.get("delta", 1.0),
                  label_smoothing=description.get("label_smoothing", 0.0))
        for dst, src in zip(net.weights + net.biases, weights + biases):
            dst[...] = src
        return net

    def __getstate__(self):
        # The views and kernel arrays are rebuilt on unpickling.
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("weights", "biases", "layout", "acts", "head")}
        return state

    def __setstate__(self, state):
        theta = state.pop("theta")
        state.setdefault("delta", 1.0)  # (pickled before these settings existed)
        state.setdefault("label_smoothing", 0.0)
        self.__dict__.update(state)
        self._allocate()
        self.theta[...] = theta

    def plot_history(self, path: str | os.PathLike | None = None, x: ArrayLike | None = None,
                     y: ArrayLike | None = None, title: str = "") -> np.ndarray:
        """Loss and accuracy curves of the last ``fit`` (train, validation).

        Needs matplotlib. See :func:`fastnn.integrations.plots.plot_history`.

        Parameters
        ----------
        path : str, path-like or None, default=None
            Write the figure there (PNG, SVG, PDF by the suffix).
        x : array-like or None, default=None
            With ``y``, for a softmax classifier: add the confusion matrix
            heatmap of its predictions on ``(x, y)``.
        y : array-like or None, default=None
            The true labels of ``x``.
        title : str, default=""
            The figure's title (default: the layer widths).

        Returns
        -------
        ndarray of matplotlib Axes
            The panels (loss, accuracy, confusion); ``axes[0].figure`` is
            the figure.
        """
        from ..integrations import plots

        hist = getattr(self, "history", None)
        if not hist:
            raise ValueError("no history to plot: call fit first")
        confusion = None
        if x is not None and y is not None:
            if self.output != "softmax":
                raise ValueError("a confusion matrix needs a softmax classifier")
            X = self._check_x(x)
            labels, _ = self._check_y(y, X.shape[0])
            confusion = plots.confusion_matrix(labels, self.predict(X), self.n_outputs)
        return plots.plot_history(hist, path, confusion=confusion,
                                  title=title or "-".join(map(str, self.layers)))

    def to_torch(self) -> Any:
        """This network as a ``torch.nn.Sequential`` (needs torch).

        Returns
        -------
        torch.nn.Sequential
            Linear layers with these weights and the activations, whose
            output is ``predict_proba`` (see
            :mod:`fastnn.integrations.torch_exchange`).
        """
        from ..integrations.torch_exchange import to_torch
        return to_torch(self)

    @classmethod
    def from_torch(cls, seq: Any, seed: int | None = None) -> Network:
        """A Network from a ``torch.nn.Sequential``.

        Parameters
        ----------
        seq : torch.nn.Sequential
            Linear layers, each hidden one followed by a registry
            activation's torch module (ReLU, Sigmoid, Tanh, Identity, ...),
            optionally ending in Softmax(dim=1) or Sigmoid (the output head;
            none: identity).
        seed : int or None, default=None
            The new network's seed (shuffling, dropout).

        Returns
        -------
        Network
            With the module's weights.
        """
        from ..integrations.torch_exchange import from_torch
        return from_torch(cls, seq, seed)

    def to_onnx(self, path: str | os.PathLike | None = None) -> Any:
        """This network as ONNX (needs ``pip install "fastnn[onnx]"``).

        Parameters
        ----------
        path : str, path-like or None, default=None
            Also write the model there.

        Returns
        -------
        onnx.ModelProto
            Opset 17, input ``input``, output ``output`` = ``predict_proba``,
            a dynamic batch.
        """
        from ..integrations.onnx_export import to_onnx
        return to_onnx(self, path)

    def summary(self, file: Any = None) -> None:
        """Print a table of the layers.

        Shapes, parameter counts, activations, dtype, the first layer's
        kernel path of the last fit (dense/sparse) and whether it was
        trained. Returns None, so a notebook cell shows the table once; the
        text itself: :func:`fastnn.integrations.summary.network_summary`.

        Parameters
        ----------
        file : file-like or None, default=None
            Where to print (default: standard output).
        """
        import sys

        from ..integrations.summary import network_summary
        print(network_summary(self), file=file or sys.stdout)

    def _repr_html_(self):
        from ..integrations.summary import network_html
        return network_html(self)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.describe().items()
                        if k in ("delta", "label_smoothing"))
        return (f"Network({list(self.layers)}, hidden={self.hidden!r}, "
                f"output={self.output!r}{extra}, dtype={self.dtype.name!r})")
