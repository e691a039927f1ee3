"""fastnn.Network: a thin Python class over the compiled kernels.

The class owns the memory (one flat parameter vector, work buffers made once
per ``fit``), checks arguments, and keeps the history; every loop over data
runs in :mod:`fastnn.kernels.train`.
"""
import os
import sys
import tempfile
import time
import zipfile
import zlib

import numpy as np

from . import interrupts, schedules
from . import validation as V
from .init import INITS, init_params
from .kernels import activations as A
from .kernels import losses as Lo
from .kernels import sparse as S
from .kernels import train as K

FORMAT_VERSION = 1
HIDDEN = tuple(A.CODES)
OUTPUTS = tuple(Lo.CODES)
OPTIMIZERS = ("sgd", "adam")
_EVAL_ROWS = 2048  # rows per forward chunk in predict/evaluate
# The first layer reads the training inputs in sparse form when at most this
# fraction of them is non-zero (MNIST: 0.19). Measured break-even: see bench/.
SPARSE_MAX_DENSITY = 0.3


class TrainingDivergedError(FloatingPointError, ValueError):
    """The loss or a parameter became NaN or infinite during ``fit``."""


class Network:
    """A fully connected network ``layers[0] -> ... -> layers[-1]``.

    Parameters
    ----------
    layers : sequence of int
        Layer widths, input first, e.g. ``[784, 100, 50, 10]``.
    hidden : {"relu", "sigmoid", "tanh", "identity"}
        Activation of every hidden layer.
    output : {"softmax", "sigmoid", "identity"}
        Output head and its loss: softmax + cross-entropy, sigmoid + binary
        cross-entropy, identity + squared error.
    init : {"uniform", "he", "glorot"}
        Weight initialisation (see :func:`fastnn.init.init_params`).
    init_scale : float
        Half-width of the ``uniform`` initialisation.
    seed : int or None
        Seeds the initialisation and the shuffling, so a run repeats exactly.
    dtype : {"float32", "float64"}
        Precision of parameters and arithmetic.
    """

    def __init__(self, layers, hidden="relu", output="softmax", init="uniform",
                 init_scale=0.1, seed=None, dtype="float32"):
        self.layers = tuple(V.check_layers(layers))
        self.hidden = V.check_choice("hidden", hidden, HIDDEN)
        self.output = V.check_choice("output", output, OUTPUTS)
        V.check_choice("init", init, INITS)
        self.dtype = V.check_dtype(dtype)
        if seed is not None:
            V.check_int("seed", seed, 0)
        init_scale = V.check_float("init_scale", init_scale, 0, low_open=True)
        self._layout()
        for (W, b), (W0, b0) in zip(zip(self.weights, self.biases),
                                    init_params(self.layers, init, init_scale, seed)):
            W[...] = W0
            b[...] = b0
        self._input_cache = None  # sparse forms of the last fit's inputs
        # Shuffling stream: SplitMix64 state derived from the seed.
        self._rng_state = np.random.SeedSequence(seed).generate_state(1, np.uint64)

    def _layout(self):
        sizes = self.layers
        self._sizes = np.array(sizes, dtype=np.int64)
        n_layers = len(sizes) - 1
        poff = np.zeros(n_layers + 1, dtype=np.int64)
        hoff = np.zeros(n_layers + 1, dtype=np.int64)
        for l in range(n_layers):
            poff[l + 1] = poff[l] + sizes[l] * sizes[l + 1] + sizes[l + 1]
            hoff[l + 1] = hoff[l] + sizes[l + 1]
        self._poff, self._hoff = poff, hoff
        acts = [A.CODES[self.hidden]] * (n_layers - 1) + [A.IDENTITY]
        self._acts = np.array(acts, dtype=np.int64)
        self._head = Lo.CODES[self.output]
        # Aligned, with slack after the end: the sparse first layer reads
        # W in place when its rows are 64-byte aligned, and its last column
        # group reads up to SLACK elements past the last row.
        self.theta = _aligned_zeros(poff[-1] + S.SLACK, self.dtype)[:poff[-1]]
        self.weights, self.biases = [], []
        for l in range(n_layers):
            k, n, o = sizes[l], sizes[l + 1], poff[l]
            self.weights.append(self.theta[o:o + k * n].reshape(k, n))
            self.biases.append(self.theta[o + k * n:o + k * n + n])

    # ------------------------------------------------------------------ data
    @property
    def n_inputs(self):
        return self.layers[0]

    @property
    def n_outputs(self):
        return self.layers[-1]

    def _x(self, x, name="x", check_finite=True):
        return V.as_float_matrix(name, x, self.dtype, self.n_inputs, check_finite)

    def _y(self, y, n, name="y"):
        """(labels int64, targets 2-D float) with the unused one empty."""
        K = self.n_outputs
        a = np.asarray(y)
        if a.shape[:1] != (n,):
            raise ValueError(f"{name} has {a.shape[0] if a.ndim else 0} rows but x has {n}")
        if a.dtype.kind not in "iubf":
            raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
        empty_l = np.zeros(0, np.int64)
        empty_t = np.zeros((0, K), self.dtype)
        if self.output == "softmax":
            if a.ndim == 2:
                if a.shape[1] != K:
                    raise ValueError(f"one-hot {name} has {a.shape[1]} columns, expected {K}")
                if not (np.isin(a, (0, 1)).all() and (a.sum(axis=1) == 1).all()):
                    raise ValueError(f"{name} rows must be one-hot (a single 1, rest 0)")
                a = a.argmax(axis=1)
            elif a.ndim != 1:
                raise ValueError(f"{name} must be labels (n,) or one-hot (n, {K}), got shape {a.shape}")
            if a.dtype.kind == "f":
                if not (np.isfinite(a).all() and (a == np.round(a)).all()):
                    raise ValueError(f"{name} labels must be integers 0..{K - 1}")
            if a.dtype.kind == "b":
                raise TypeError(f"{name} labels must be integers, got booleans")
            if a.min() < 0 or a.max() >= K:
                raise ValueError(f"{name} labels must be in 0..{K - 1}, got range "
                                 f"{a.min()}..{a.max()}")
            return np.ascontiguousarray(a, dtype=np.int64), empty_t
        if a.dtype.kind == "b":
            if self.output == "identity":
                raise TypeError(f"{name} must hold numbers (regression targets), got booleans")
            a = a.astype(self.dtype)  # 0/1 targets of a sigmoid output
        if a.ndim == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.shape[1] != K:
            raise ValueError(f"{name} must have shape ({n},) or ({n}, {K}), got {np.shape(y)}")
        t = np.ascontiguousarray(a, dtype=self.dtype)
        if not np.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if self.output == "sigmoid" and ((t < 0) | (t > 1)).any():
            raise ValueError(f"{name} targets for a sigmoid output must lie in [0, 1]")
        return empty_l, t

    def _model(self):
        return (self.theta, self._sizes, self._poff, self._acts)

    def _work(self, cap, sparse=False):
        """Activation/gradient buffers for ``cap`` rows, transpose scratch,
        and (sparse first layer) aligned scratch for its W and dU copies."""
        width = int(self._hoff[-1])
        wt_size = max([self.layers[l] * self.layers[l + 1]
                       for l in range(1, len(self.layers) - 1)] + [0])
        wa = da = np.zeros(0, self.dtype)
        if sparse:
            k, n = self.layers[0], self.layers[1]
            npad = S.padded_width(n)
            wa = _aligned_zeros(k * npad + S.SLACK, self.dtype)
            da = _aligned_zeros(cap * npad + S.SLACK, self.dtype)
        return (np.empty(cap * width, self.dtype),
                _aligned_zeros(cap * width + S.SLACK, self.dtype)[:cap * width],
                self._hoff, cap, np.empty(wt_size, self.dtype), wa, da,
                np.empty(self._pack_size(cap), self.dtype))

    def _pack_size(self, cap):
        """Scratch the wide matmuls need to pack their B operand: weights
        (forward), transposed weights (backward dX) and dU (weight
        gradients), for those at least PACK_MIN_N columns wide."""
        from .kernels.matmul import PACK_MIN_N, packed_size, tn_packed_size

        n = self.layers
        need = [0]
        for l in range(len(n) - 1):
            if n[l + 1] >= PACK_MIN_N:
                need += [packed_size(n[l], n[l + 1]), tn_packed_size(cap, n[l], n[l + 1])]
            if l > 0 and n[l] >= PACK_MIN_N:
                need.append(packed_size(n[l + 1], n[l]))
        return max(need)

    def _sparse_inputs(self, X, batch_size, shuffle, max_density=None):
        """Validate X (finite) and choose the first layer's path.

        Returns ``(sp, csc_ready)``: ``sp`` holds X in CSR form plus buffers
        for its per-batch CSC form when the measured density is at most
        ``max_density`` (default ``SPARSE_MAX_DENSITY``), else empty arrays
        (dense path). The sparse forms are kept for the next ``fit`` and
        reused when it gets identical data (same 64-bit fingerprint of every
        value, same shape and batch size): a loop of ``fit(epochs=1)`` calls
        then pays for one read of X per call, not a rebuild.
        """
        if max_density is None:
            max_density = SPARSE_MAX_DENSITY
        counts, fp = V.scan_matrix("x", X)
        nnz = int(counts.sum())
        if max_density <= 0 or nnz > max_density * X.size:
            self._input_cache = None
            return K.dense_sp(self.theta), False
        key = (fp, X.shape, X.dtype.str, batch_size)
        cache = self._input_cache
        if cache is not None and cache["key"] == key:
            return cache["sp"], cache["csc_in_order"] and not shuffle
        n, d = X.shape
        indptr = np.empty(n + 1, np.int64)
        S.csr_indptr(counts, indptr)
        indices = np.empty(nnz, np.int32)
        values = np.empty(nnz, self.dtype)
        S.csr_fill(X, indptr, indices, values)
        n_batches = -(-n // batch_size)
        sp = (indptr, indices, values, np.empty(n_batches + 1, np.int64),
              np.empty((n_batches, d + 1), np.int64), np.empty(nnz, np.int32),
              np.empty(nnz, self.dtype))
        self._input_cache = {"key": key, "sp": sp, "csc_in_order": False}
        return sp, False

    # ------------------------------------------------------------- training
    def _optimizer(self, optimizer="sgd", lr=0.1, momentum=0.0, nesterov=False, beta1=0.9,
                   beta2=0.999, eps=1e-8, l2=0.0, l2_per_row=False):
        """Checked optimizer settings as the kernels' ``opt`` tuple (with the
        rate left for each epoch to set)."""
        V.check_choice("optimizer", optimizer, OPTIMIZERS)
        V.check_float("lr", lr, 0, low_open=True)
        momentum = V.check_float("momentum", momentum, 0, 1, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        beta1 = V.check_float("beta1", beta1, 0, 1, high_open=True)
        beta2 = V.check_float("beta2", beta2, 0, 1, high_open=True)
        eps = V.check_float("eps", eps, 0, low_open=True)
        l2 = V.check_float("l2", l2, 0)
        kind = K.ADAM if optimizer == "adam" else K.SGD
        return [kind, float(lr), momentum, bool(nesterov), beta1, beta2, eps, l2, bool(l2_per_row)]

    def _fresh_state(self, kind):
        sq = np.zeros_like(self.theta) if kind == K.ADAM else np.zeros(0, self.dtype)
        return {"kind": kind, "arrays": (np.zeros_like(self.theta), sq, np.zeros(1, np.int64))}

    def fit(self, x, y, epochs=1, batch_size=100, lr=0.1, optimizer="sgd", momentum=0.0,
            nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, lr_schedule=None,
            shuffle=True, validation_data=None, validation_split=0.0, early_stopping=False,
            patience=10, min_delta=0.0, callbacks=(), progress=False, verbose=False):
        """Mini-batch gradient descent; returns the history dict (also kept
        as ``self.history``).

        Optimizers: ``"sgd"`` (with ``momentum``, ``nesterov``) and
        ``"adam"`` (``beta1``, ``beta2``, ``eps``); their state starts fresh
        on each ``fit`` (``partial_fit`` keeps it). ``l2`` adds the penalty
        ``0.5*l2*sum(W**2)`` (weights, not biases) to each batch's loss.
        ``lr_schedule`` sets the rate per epoch (see :mod:`fastnn.schedules`).

        Validation: ``validation_data=(x_val, y_val)``, or
        ``validation_split`` to hold out that fraction of the rows (the
        last ones, before any shuffling). ``early_stopping`` needs one of
        them: training stops once ``val_loss`` has not improved by more than
        ``min_delta`` for ``patience`` epochs, and the parameters of the best
        epoch are restored.

        ``callbacks``: callables ``f(net, history)`` run after each epoch;
        one returning ``True`` stops training. ``progress``: ``True`` for a
        progress bar on stderr within each epoch (only on a terminal), or a
        callable ``f(batches_done, batches_total)``.

        The history has one entry per epoch in ``loss`` and ``accuracy``
        (running means over the epoch's batches, each measured just before
        its update; ``loss`` includes the L2 penalty), ``lr``,
        ``val_loss``/``val_accuracy`` when validating (measured after the
        epoch), and ``seconds``. ``accuracy`` entries are NaN for the
        identity (regression) head.

        If the loss or a parameter becomes NaN/inf, the parameters from
        before that epoch are restored and :class:`TrainingDivergedError`
        is raised. On ``KeyboardInterrupt`` the parameters of the last
        completed epoch are restored, ``self.history`` holds the completed
        epochs, and the interrupt propagates.
        """
        epochs = V.check_int("epochs", epochs, 0)
        opt = self._optimizer(optimizer, lr, momentum, nesterov, beta1, beta2, eps, l2)
        schedule = schedules.get(lr_schedule, epochs)
        patience = V.check_int("patience", patience, 1)
        min_delta = V.check_float("min_delta", min_delta, 0)
        validation_split = V.check_float("validation_split", validation_split, 0, 1,
                                         high_open=True)
        callbacks = _check_callbacks(callbacks)
        X = self._x(x, check_finite=False)  # checked by _sparse_inputs below
        n = X.shape[0]
        labels, T = self._y(y, n)
        val = None
        if validation_data is not None:
            if validation_split > 0:
                raise ValueError("give validation_data or validation_split, not both")
            try:
                xv, yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (x_val, y_val)") from None
            Xv = self._x(xv, "validation_data x")
            val = (Xv,) + self._y(yv, Xv.shape[0], "validation_data y")
        elif validation_split > 0:
            n_val = int(round(n * validation_split))
            if n_val < 1 or n_val >= n:
                raise ValueError(f"validation_split={validation_split} leaves {n - n_val} "
                                 f"training and {n_val} validation rows of {n}; need >= 1 each")
            n -= n_val
            val = (X[n:], labels[n:] if labels.size else labels, T[n:] if T.size else T)
            X, labels, T = X[:n], labels[:n] if labels.size else labels, T[:n] if T.size else T
        if early_stopping and val is None:
            raise ValueError("early_stopping needs validation_data or validation_split > 0")
        self._opt_state = self._fresh_state(opt[0])
        trainer = _Trainer(self, X, labels, T, batch_size, shuffle)
        return self._train(trainer, opt, schedule, epochs, val, bool(early_stopping), patience,
                           min_delta, callbacks, progress, verbose)

    def partial_fit(self, x, y, batch_size=100, lr=0.1, optimizer="sgd", momentum=0.0,
                    nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, shuffle=True):
        """One epoch over ``(x, y)``, continuing the optimizer state (momentum
        velocity, Adam moments and step count) of the previous ``fit`` or
        ``partial_fit`` with the same optimizer: for data that arrives in
        chunks. Returns the epoch's ``{"loss", "accuracy"}``."""
        opt = self._optimizer(optimizer, lr, momentum, nesterov, beta1, beta2, eps, l2)
        X = self._x(x, check_finite=False)
        labels, T = self._y(y, X.shape[0])
        state = getattr(self, "_opt_state", None)
        if state is None or state["kind"] != opt[0]:
            self._opt_state = self._fresh_state(opt[0])
        trainer = _Trainer(self, X, labels, T, batch_size, shuffle)
        hist = self._train(trainer, opt, schedules.Constant(), 1, None, False, 1, 0.0, [],
                           False, False)
        return {"loss": hist["loss"][-1], "accuracy": hist["accuracy"][-1]}

    def _train(self, trainer, opt, schedule, epochs, val, early_stopping, patience, min_delta,
               callbacks, progress, verbose):
        n = trainer.n
        lr0 = opt[1]
        classify = self.output != "identity"
        hist = {"loss": [], "accuracy": [], "lr": [], "seconds": []}
        if val is not None:
            hist.update(val_loss=[], val_accuracy=[])
        self.history = hist
        state = self._opt_state["arrays"]
        best = (np.inf, None, 0)  # (val_loss, parameters, epoch)
        stale = 0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            lr = float(schedule(epoch - 1, lr0))
            if not (np.isfinite(lr) and lr > 0):
                raise ValueError(f"lr_schedule gave lr={lr} for epoch {epoch}; need a "
                                 f"finite rate > 0")
            opt[1] = lr
            result = trainer.guarded_epoch(tuple(opt), state, progress)
            if result is None:
                raise TrainingDivergedError(
                    f"training diverged in epoch {epoch} (NaN or infinite loss); the "
                    f"parameters were restored to those before that epoch. Try a "
                    f"smaller learning rate than lr={lr}.")
            loss_sum, pen_sum, correct = result
            hist["seconds"].append(time.perf_counter() - t0)
            hist["loss"].append((loss_sum + pen_sum) / n)
            hist["accuracy"].append(correct / n if classify else float("nan"))
            hist["lr"].append(lr)
            line = (f"epoch {epoch:3d}  loss {hist['loss'][-1]:.4f}"
                    + (f"  acc {hist['accuracy'][-1]:.4f}" if classify else ""))
            stop = False
            if val is not None:
                r = self._evaluate(*val)
                hist["val_loss"].append(r["loss"])
                hist["val_accuracy"].append(r.get("accuracy", float("nan")))
                line += f"  val_loss {r['loss']:.4f}" + (
                    f"  val_acc {r['accuracy']:.4f}" if classify else "")
                if early_stopping:
                    if r["loss"] < best[0] - min_delta:
                        best = (r["loss"], self.theta.copy(), epoch)
                        stale = 0
                    else:
                        stale += 1
                        stop = stale >= patience
            if verbose:
                print(line + f"  {hist['seconds'][-1]:.2f}s", file=sys.stdout, flush=True)
            for cb in callbacks:
                if cb(self, hist) is True:
                    stop = True
            if stop:
                break
        if early_stopping and best[1] is not None:
            self.theta[...] = best[1]
            hist["best_epoch"] = best[2]
        return hist

    def __getstate__(self):
        # weights/biases are views into theta: rebuilt on unpickling. The
        # sparse-input cache is large and only a speed-up: dropped.
        state = self.__dict__.copy()
        for k in ("weights", "biases", "_input_cache"):
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        theta = state.pop("theta")
        self.__dict__.update(state)
        self._layout()
        self.theta[...] = theta
        self._input_cache = None

    # ------------------------------------------------------------ inference
    def _predict(self, X, head):
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        K.predict_batches(X, self._model(), head, self._work(min(X.shape[0], _EVAL_ROWS)), out)
        return out

    def predict_proba(self, x):
        """Output of the head: class probabilities (softmax/sigmoid) or the
        regression values (identity)."""
        return self._predict(self._x(x), self._head)

    def predict(self, x):
        """Class labels (softmax: argmax; sigmoid: 0/1 per output, flattened
        for one output) or regression values (identity)."""
        Z = self._predict(self._x(x), -1)
        if self.output == "softmax":
            return Z.argmax(axis=1)
        if self.output == "sigmoid":
            p = (Z > 0).astype(np.int64)
            return p[:, 0] if self.n_outputs == 1 else p
        return Z

    def _evaluate(self, X, labels, T):
        loss_sum, correct = K.evaluate_batches(
            X, labels, T, self._model(), self._head, self._work(min(X.shape[0], _EVAL_ROWS)))
        r = {"loss": loss_sum / X.shape[0]}
        if self.output != "identity":
            r["accuracy"] = correct / X.shape[0]
        return r

    def evaluate(self, x, y):
        """Mean loss (and accuracy for classification) on (x, y)."""
        X = self._x(x)
        return self._evaluate(X, *self._y(y, X.shape[0]))

    # ---------------------------------------------------------------- files
    def save(self, path):
        """Write architecture and parameters to a ``.npz`` file atomically
        (temporary file in the same directory, then rename)."""
        path = os.fspath(path)
        arrays = {
            "fastnn_format": np.array(FORMAT_VERSION),
            "layers": np.array(self.layers, dtype=np.int64),
            "hidden": np.array(self.hidden),
            "output": np.array(self.output),
            "dtype": np.array(self.dtype.name),
        }
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"W{l}"] = W
            arrays[f"b{l}"] = b
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".fastnn-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp makes the file private (0600); give it the permissions
            # any new file gets under the process's umask.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path):
        """Read a network written by :meth:`save`.

        Never unpickles, and checks before allocating: the file must be a
        zip of uncompressed ``.npy`` members (what :meth:`save` writes) whose
        sizes fit in the file; every array's header (shape, dtype) is checked
        against the format and the architecture before its data is read; the
        format version, names and values (finite) are checked too. Anything
        else raises ``ValueError`` naming the file and the problem.
        """
        path = os.fspath(path)
        try:
            with zipfile.ZipFile(path) as zf:
                return cls._load_zip(zf, path)
        except ValueError:
            raise
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
                RuntimeError, NotImplementedError) as e:
            raise ValueError(f"{path}: not a readable fastnn model file ({e})") from None

    @classmethod
    def _load_zip(cls, zf, path):
        def bad(msg):
            return ValueError(f"{path}: {msg}")

        infos = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise bad(f"not a fastnn model file (member {info.filename!r})")
            if info.compress_type != zipfile.ZIP_STORED:
                raise bad("not a fastnn model file (compressed members)")
            infos[info.filename[:-4]] = info
        if sum(i.compress_size for i in infos.values()) > os.path.getsize(path):
            raise bad("truncated or corrupted (members larger than the file)")

        def read(name, shape=None, kinds=None, dtype=None, max_items=None):
            info = infos.get(name)
            if info is None:
                raise bad(f"not a fastnn model file (no '{name}')")
            with zf.open(info) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy version {version}")
                except ValueError as e:
                    raise bad(f"malformed '{name}' ({e})") from None
                if hdtype.hasobject:
                    raise bad(f"'{name}' holds Python objects (refused: never unpickled)")
                if shape is not None and tuple(hshape) != tuple(shape):
                    raise bad(f"'{name}' has shape {tuple(hshape)}, expected {tuple(shape)}")
                if kinds is not None and hdtype.kind not in kinds:
                    raise bad(f"malformed '{name}' (dtype {hdtype})")
                if dtype is not None and hdtype != dtype:
                    raise bad(f"'{name}' has dtype {hdtype}, expected {dtype}")
                n_items = int(np.prod(hshape, dtype=np.float64))
                if max_items is not None and n_items > max_items:
                    raise bad(f"malformed '{name}' (shape {tuple(hshape)})")
                if n_items * hdtype.itemsize > info.file_size:
                    raise bad(f"'{name}' is truncated")
            with zf.open(info) as f:
                try:
                    return np.lib.format.read_array(f, allow_pickle=False)
                except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
                    raise bad(f"'{name}' is unreadable ({e})") from None

        version = read("fastnn_format", kinds="iu", max_items=1)
        if version.shape != () or int(version) != FORMAT_VERSION:
            raise bad(f"unsupported fastnn format version {version!r}")
        layers = read("layers", kinds="iu", max_items=10_000)
        if layers.ndim != 1:
            raise bad("malformed 'layers'")
        strings = {}
        for key in ("hidden", "output", "dtype"):
            a = read(key, shape=(), kinds="U", max_items=1)
            strings[key] = str(a)
        try:
            sizes = V.check_layers(layers.tolist())
            V.check_choice("hidden", strings["hidden"], HIDDEN)
            V.check_choice("output", strings["output"], OUTPUTS)
            dtype = V.check_dtype(strings["dtype"])
        except (ValueError, TypeError) as e:
            raise bad(f"invalid model description ({e})") from None
        n_layers = len(sizes) - 1
        expected = {f"W{l}" for l in range(n_layers)} | {f"b{l}" for l in range(n_layers)}
        extra = set(infos) - expected - {"fastnn_format", "layers", "hidden", "output", "dtype"}
        if extra:
            raise bad(f"unexpected arrays {sorted(extra)}")
        # Every parameter array must be in the file with its full size before
        # the network (and its memory) is made.
        arrays = {}
        for l in range(n_layers):
            for name, shape in ((f"W{l}", (sizes[l], sizes[l + 1])), (f"b{l}", (sizes[l + 1],))):
                info = infos.get(name)
                if info is None:
                    raise bad(f"missing '{name}'")
                if info.file_size < int(np.prod(shape, dtype=np.float64)) * dtype.itemsize:
                    raise bad(f"'{name}' is truncated")
        for l in range(n_layers):
            for name, shape in ((f"W{l}", (sizes[l], sizes[l + 1])), (f"b{l}", (sizes[l + 1],))):
                src = read(name, shape=shape, dtype=dtype)
                if not np.isfinite(src).all():
                    raise bad(f"'{name}' contains NaN or infinity")
                arrays[name] = src
        net = cls(sizes, hidden=strings["hidden"], output=strings["output"], init="uniform",
                  seed=0, dtype=dtype.name)
        for l in range(n_layers):
            net.weights[l][...] = arrays[f"W{l}"]
            net.biases[l][...] = arrays[f"b{l}"]
        return net

    def __repr__(self):
        return (f"Network({list(self.layers)}, hidden={self.hidden!r}, "
                f"output={self.output!r}, dtype={self.dtype.name!r})")


def _aligned_zeros(n, dtype, align=64):
    """A zeroed 1-D array of n elements whose data starts on an ``align``-byte
    boundary (NumPy guarantees less)."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n + align // dtype.itemsize, dtype)
    start = (-raw.ctypes.data % align) // dtype.itemsize
    return raw[start:start + n]


def _check_callbacks(callbacks):
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError("callbacks must be a callable or a list of callables") from None
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables f(net, history), got {cb!r}")
    return callbacks


class _Trainer:
    """The data of one ``fit`` prepared for the kernels (sparse forms, work
    buffers, visiting order); ``epoch`` runs one epoch."""

    # An epoch runs as this many compiled calls (each a run of consecutive
    # batches): a progress bar moves, and Ctrl-C is noticed, between calls,
    # never inside the compiled loop. A call costs ~4 us of dispatch.
    EPOCH_CHUNKS = 64

    def __init__(self, net, X, labels, T, batch_size, shuffle):
        n = X.shape[0]
        self.net, self.n = net, n
        batch_size = min(V.check_int("batch_size", batch_size, 1), n)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        self.batch_size, self.shuffle = batch_size, bool(shuffle)
        self.X, self.labels, self.T = X, labels, T
        self.sp, self.csc_ready = net._sparse_inputs(X, batch_size, shuffle)
        self.sparse = self.sp[0].size > 0
        dt = net.dtype
        self.work = net._work(batch_size, self.sparse)
        self.grad = _aligned_zeros(net.theta.size, net.dtype)
        self.order = np.arange(n, dtype=np.int64)
        gather = shuffle
        self.bufs = (np.empty((batch_size if gather and not self.sparse else 0, X.shape[1]), dt),
                     np.empty(batch_size if gather and labels.size else 0, np.int64),
                     np.empty((batch_size if gather and T.size else 0, T.shape[1]), dt))
        self.n_batches = -(-n // batch_size)
        self._snapshot = None  # guarded_epoch's copy of what an epoch changes

    def guarded_epoch(self, opt, state, progress):
        """:meth:`epoch`, undone if it does not finish well: what it changes
        (parameters, shuffling stream, optimizer ``state``) is restored if
        it raises (e.g. ``KeyboardInterrupt``) or diverges (NaN/inf loss or
        parameters). Returns the epoch's sums, or None if it diverged."""
        net = self.net
        saved = (net.theta, net._rng_state) + tuple(state)
        if self._snapshot is None or len(self._snapshot) != len(saved):
            self._snapshot = [np.empty_like(a) for a in saved]
        for dst, src in zip(self._snapshot, saved):
            dst[...] = src
        try:
            sums = self.epoch(opt, state, progress)
        except BaseException:
            with interrupts.deferred():  # a second Ctrl-C must not cut the restore short
                self._restore(saved)
            raise
        if not (np.isfinite(sums[0]) and np.isfinite(sums[1]) and np.isfinite(net.theta).all()):
            self._restore(saved)
            return None
        return sums

    def _restore(self, saved):
        for src, dst in zip(self._snapshot, saved):
            dst[...] = src

    def epoch(self, opt, state, progress):
        net = self.net
        if self.sparse:  # invalid while (and if interrupted while) rebuilding
            net._input_cache["csc_in_order"] = self.csc_ready
        K.epoch_begin(self.order, net._rng_state, self.shuffle, self.sp, self.csc_ready,
                      self.batch_size)
        # The CSC blocks now follow `order`: still valid next epoch (and next
        # fit) unless shuffling reorders the rows.
        self.csc_ready = not self.shuffle
        if self.sparse:
            net._input_cache["csc_in_order"] = self.csc_ready
        report = _progress_reporter(progress)
        nb = self.n_batches
        step = max(1, -(-nb // self.EPOCH_CHUNKS))
        totals = [0.0, 0.0, 0]
        for first in range(0, nb, step):
            last = min(nb, first + step)
            r = K.train_batches(self.X, self.labels, self.T, net._model(), net._head,
                                self.grad, state, opt, self.batch_size, self.shuffle,
                                self.order, self.sp, self.work, self.bufs, first, last)
            for i in range(3):
                totals[i] += r[i]
            if report is not None:
                report(last, nb)
            interrupts.check()  # a Ctrl-C swallowed while compiling (see interrupts.py)
        return tuple(totals)


def _progress_reporter(progress):
    if progress is None or progress is False:
        return None
    if progress is True:
        return ProgressBar() if sys.stderr.isatty() else None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be True, False or a callable f(done, total), "
                    f"got {progress!r}")


class ProgressBar:
    """A one-line text progress bar on stderr, redrawn in place."""

    def __init__(self, width=30, stream=None):
        self.width = width
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()

    def __call__(self, done, total):
        if done >= total:  # erase the bar: the caller prints the epoch's line
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            return
        filled = self.width * done // total
        elapsed = time.perf_counter() - self.t0
        eta = elapsed * (total - done) / done if done else 0.0
        self.stream.write(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done}/{total} batches  {elapsed:5.1f}s  eta {eta:5.1f}s\x1b[K")
        self.stream.flush()
