"""fastnn.Network: the thin class users hold.

It owns one flat parameter vector (layout in :mod:`.memory`), checks
arguments (:mod:`.validation`) and hands training to the engine
(:mod:`.training`, policies in :mod:`.stopping`); files are
:mod:`.modelio`'s. Every loop over data runs in :mod:`fastnn.kernels`.
"""

import numpy as np

from . import backend, inputs, modelio, schedules, training, validation
from .init import INITS, init_params
from .memory import EVAL_ROWS, ParamLayout
from .registry import ACTIVATIONS, loss_of
from .stopping import ScheduleAndPatience
from .training import TrainingDivergedError  # noqa: F401  (re-exported)

HIDDEN = validation.HIDDEN
OUTPUTS = validation.OUTPUTS
OPTIMIZERS = validation.OPTIMIZERS
FORMAT_VERSION = modelio.FORMAT_VERSION


class Network:
    """A fully connected network from ``layers[0]`` inputs to ``layers[-1]`` outputs.

    ``layers``: widths, input first (``[784, 100, 50, 10]``). ``hidden``:
    the hidden layers' activation, a name in :data:`HIDDEN` (the registry's
    activations: relu, sigmoid, tanh, identity, ...), or a list of one per
    hidden layer (``["relu", "tanh"]``). ``output``: softmax
    (cross-entropy) | sigmoid (binary cross-entropy) | identity (squared
    error) | poisson (half Poisson deviance, log link) | absolute_error |
    huber (squared error within ``delta`` of the target, linear beyond:
    ``torch.nn.HuberLoss(delta=delta)``); regression heads sum their loss
    over outputs. ``label_smoothing``: softmax's, as
    ``torch.nn.CrossEntropyLoss(label_smoothing=...)``, or sigmoid's (each
    0/1 target moved ``label_smoothing / 2`` towards the other). ``init``:
    uniform (half-width ``init_scale``) | he | glorot. ``seed`` seeds the
    initialisation and the shuffling, so a run repeats exactly. ``dtype``:
    float32 | float64.

    ``theta`` holds every parameter; ``weights``/``biases`` are views into
    it (writing them changes the model). ``engine`` is what training keeps
    between fits (:class:`fastnn.engine.training.EngineState`).
    """

    def __init__(self, layers, hidden="relu", output="softmax", init="uniform",
                 init_scale=0.1, seed=None, dtype="float32", delta=1.0, label_smoothing=0.0):
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

    def set_loss(self, delta=None, label_smoothing=None):
        """Change the loss settings (given ones only) for the next fits."""
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
    def fit(self, x, y, epochs=1, batch_size=100, lr=0.1, optimizer="sgd", momentum=0.0,
            nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, lr_schedule=None,
            shuffle=True, validation_data=None, validation_split=0.0, early_stopping=False,
            patience=10, min_delta=0.0, callbacks=(), progress=False, verbose=False,
            weight_decay=0.01, sample_weight=None, class_weight=None, dropout=None,
            clip_norm=None):
        """Mini-batch gradient descent; returns the history (also ``self.history``).

        ``optimizer``: "sgd" (``momentum``, ``nesterov``), "adam" (``beta1``,
        ``beta2``, ``eps``), "adamw" (those and the decoupled
        ``weight_decay``), "rmsprop" (``beta2`` as its smoothing constant,
        torch's ``alpha``; ``eps``) or "adagrad" (``eps``): each as
        ``torch.optim``'s class of that name computes it; its state starts
        fresh on each ``fit``. ``l2``:
        penalty ``0.5*l2*sum(W**2)`` (weights only) in each batch's loss.
        ``lr_schedule``: see :mod:`fastnn.schedules`. Validation:
        ``validation_data=(x_val, y_val)`` or ``validation_split`` (the last
        rows, before shuffling); ``early_stopping`` stops once ``val_loss``
        has not improved by more than ``min_delta`` for ``patience`` epochs
        and restores the best epoch. ``callbacks``: ``f(net, history)`` after
        each epoch, True stops. ``progress``: True (a bar on a terminal) or
        ``f(batches_done, batches_total)``. ``sample_weight``: a weight per
        row of ``x`` (each batch's loss is the weighted mean); ``class_weight``:
        {class index: weight} or "balanced" (scikit-learn's formula over the
        training rows), multiplied into ``sample_weight``; validation rows
        are not weighted. ``dropout``: inverted dropout on the hidden layers'
        outputs during training, one rate in [0, 1) or a list of one per
        hidden layer (masks seeded by ``seed``: a run repeats exactly,
        whatever the thread count); never in ``predict``/``evaluate``.
        ``clip_norm``: before each step the loss gradient is scaled to a
        global L2 norm of at most this (``torch.nn.utils.clip_grad_norm_``).

        History: per epoch ``loss``/``accuracy`` (running means over the
        batches, each measured before its update; NaN accuracy for
        regression), ``lr``, ``seconds``, and ``val_loss``/``val_accuracy``.
        A NaN/inf loss or parameter restores the parameters from before that
        epoch and raises :class:`TrainingDivergedError`; ``KeyboardInterrupt``
        keeps the last completed epoch (and ``self.history``) and propagates.
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
                report=training.epoch_printer(classify) if verbose else None,
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

    def partial_fit(self, x, y, batch_size=100, lr=0.1, optimizer="sgd", momentum=0.0,
                    nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, shuffle=True,
                    weight_decay=0.01, dropout=None, clip_norm=None):
        """One epoch over ``(x, y)``, continuing the optimizer state (momentum
        velocity, Adam moments and step count) of the previous ``fit`` or
        ``partial_fit`` with the same optimizer: for data that arrives in
        chunks. Returns the epoch's ``{"loss", "accuracy"}``."""
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

    def predict_proba(self, x):
        """Output of the head: class probabilities (softmax/sigmoid) or the
        regression values (identity)."""
        return self._forward(x, self.head)

    def predict(self, x):
        """Class labels (softmax: argmax; sigmoid: 0/1 per output, flattened
        for one output) or regression values (identity: Z; poisson: exp(Z))."""
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
                                                    sp is None))

    def _evaluate(self, X, labels, T):
        Xd, sp, rows, work = self._rows(X)
        args = (Xd, sp, rows, labels, T, self._model(), self.head, work)
        loss_sum, correct = self._backend("evaluate_batches", args).evaluate(*args)
        r = {"loss": loss_sum / X.shape[0]}
        if self.output not in validation.REGRESSION_OUTPUTS:
            r["accuracy"] = correct / X.shape[0]
        return r

    def evaluate(self, x, y):
        """Mean loss (and accuracy for classification) on (x, y)."""
        X = self._check_x(x)
        return self._evaluate(X, *self._check_y(y, X.shape[0]))

    # ---------------------------------------------------------------- files
    def describe(self):
        d = {"layers": list(self.layers), "hidden": self.hidden, "output": self.output,
             "dtype": self.dtype.name}
        if self.output == "huber":
            d["delta"] = self.delta
        if self.label_smoothing:
            d["label_smoothing"] = self.label_smoothing
        return d

    def save(self, path):
        """Write architecture and parameters to a ``.npz`` file atomically."""
        modelio.write_model(path, self.describe(), self.weights, self.biases)

    @classmethod
    def load(cls, path):
        """Read a network written by :meth:`save` (never unpickles; every
        header checked before data is read; see :func:`fastnn.engine.modelio.read_model`)."""
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

    def plot_history(self, path=None, x=None, y=None, title=""):
        """Loss and accuracy curves of the last ``fit`` (train, validation),
        and for a softmax classifier given ``(x, y)`` the confusion matrix
        heatmap of its predictions; written to ``path`` if given; returns the
        panels' matplotlib axes (see :func:`fastnn.integrations.plots.plot_history`).
        Needs matplotlib."""
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

    def to_torch(self):
        """A ``torch.nn.Sequential`` with these weights whose output is
        ``predict_proba`` (see :mod:`fastnn.integrations.torch_exchange`). Needs torch."""
        from ..integrations.torch_exchange import to_torch
        return to_torch(self)

    @classmethod
    def from_torch(cls, seq, seed=None):
        """A Network from a ``torch.nn.Sequential`` of Linear layers and one
        hidden activation (each registry activation's torch module: ReLU,
        Sigmoid, Tanh, Identity, ...), optionally ending in Softmax(dim=1)
        or Sigmoid (the output head; none: identity)."""
        from ..integrations.torch_exchange import from_torch
        return from_torch(cls, seq, seed)

    def to_onnx(self, path=None):
        """An ``onnx.ModelProto`` of this network (opset 17, input ``input``,
        output ``output`` = ``predict_proba``, dynamic batch); written to
        ``path`` if given. Needs ``pip install "fastnn[onnx]"``."""
        from ..integrations.onnx_export import to_onnx
        return to_onnx(self, path)

    def summary(self, file=None):
        """Print a table of the layers: shapes, parameter counts, activation,
        dtype, the first layer's kernel path of the last fit (dense/sparse)
        and whether it was trained; to ``file`` (default: standard output).
        Returns None, so a notebook cell shows the table once; ``str`` of it:
        :func:`fastnn.integrations.summary.network_summary`."""
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
