"""Argument checks shared by the public entry points.

Everything a user passes is checked here, in Python, before any compiled
kernel runs, so bad input ends in a ValueError/TypeError that names the
argument, never in a crash or silently wrong training.
"""
import hashlib
import numbers

import numpy as np

from . import registry

# Option tables: the values each named option accepts.
DTYPES = ("float32", "float64")
HIDDEN = tuple(registry.ACTIVATIONS)            # hidden-layer activations
OUTPUTS = tuple(registry.HEADS)                 # output heads (each with its loss)
OPTIMIZERS = tuple(registry.OPTIMIZERS)
REGRESSION_OUTPUTS = registry.REGRESSION_HEADS  # heads without classes or accuracy


def check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return np.dtype(name)


def check_int(name, value, minimum, maximum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_float(name, value, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (v < low or (low_open and v == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    if high is not None and (v > high or (high_open and v == high)):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return v


def check_layers(layers):
    try:
        sizes = list(layers)
    except TypeError:
        raise TypeError("layers must be a sequence of layer sizes, e.g. [784, 100, 10]") from None
    if len(sizes) < 2:
        raise ValueError(f"layers needs at least an input and an output size, got {sizes}")
    out = []
    for i, s in enumerate(sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"layers[{i}] must be a positive integer, got {s!r}")
        out.append(int(s))
    return out


# Up to this many values the input scan runs in NumPy (a few ms at most),
# so a small first fit does not wait ~1.5 s for the compiled scan.
NUMPY_SCAN_MAX = 1 << 20


def scan_matrix(name, a):
    """(non-zeros per row, 64-bit fingerprint of the data) of a C-contiguous
    float matrix, in one pass; raises if it holds NaN or inf. (The
    fingerprint identifies data within a process: inputs.prepare's cache.)
    Small matrices, and any while the compiled scan is not cached (a first
    run: it compiles in the background meanwhile), are scanned in NumPy,
    which leaves the fingerprint None (:func:`data_fingerprint` makes it
    when needed, so a small fit that never uses it does not pay for the
    hash)."""
    from . import backend

    if a.size <= NUMPY_SCAN_MAX:
        runner = backend.NUMPY
    else:
        counts, rowhash = np.empty(a.shape[0], np.int64), np.empty(a.shape[0], np.uint64)
        runner = backend.choose(
            [("sparse.scan_rows", (a, counts, rowhash)), ("sparse.fingerprint", (rowhash,))],
            memo=("scan", a.dtype.str, a.flags.writeable))
    counts, fingerprint, bad = runner.scan(a)
    if bad:
        raise ValueError(f"{name} contains NaN or infinity")
    return counts, fingerprint


def data_fingerprint(a):
    """A 64-bit fingerprint of a C-contiguous array's bytes (blake2b)."""
    digest = hashlib.blake2b(memoryview(a).cast("B"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def as_float_matrix(name, x, dtype, n_features=None, check_finite=True):
    """x as a C-contiguous 2-D array of ``dtype`` (copied only if needed)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if n_features is not None and a.shape[1] != n_features:
        raise ValueError(f"{name} has {a.shape[1]} features but the network expects {n_features}")
    a = cast_float(name, a, dtype)
    if check_finite:
        scan_matrix(name, a)
    return a


class _Writable:
    """The ``__array_interface__`` of a read-only array, with the read-only
    flag off; holds the array (NumPy keeps this object as the view's base)."""

    def __init__(self, a):
        self.keep = a
        self.__array_interface__ = dict(a.__array_interface__,
                                        data=(a.__array_interface__["data"][0], False))


def kernel_array(a):
    """``a`` as the kernels take it: the same memory, typed writable.

    Numba types a read-only array apart from a writable one, so a read-only
    input (a memory map opened "r", a Dask or shared-memory block, one with
    ``setflags(write=False)``) compiled every driver a second time (~55 s
    per dtype on 2 cores), for code that never writes its inputs anyway
    (the kernels write only their output and work buffers). A writable view
    of the same memory shares the compiled code. The view never leaves
    fastnn: it is what kernels and their NumPy twins read; users' arrays
    keep their flags."""
    if a.flags.writeable:
        return a
    return np.asarray(_Writable(a))


def cast_float(name, a, dtype):
    """``a`` as a C-contiguous array of ``dtype`` (copied only if needed;
    read-only memory is read in place, see :func:`kernel_array`); finite
    values too large for ``dtype`` (float64 data given to a float32 model)
    are an error that says so, not "NaN or infinity" later."""
    dtype = np.dtype(dtype)
    try:
        with np.errstate(over="raise"):
            return kernel_array(np.ascontiguousarray(a, dtype=dtype))
    except FloatingPointError:
        big = float(np.nanmax(np.abs(a[np.isfinite(a)])))
        raise ValueError(f"{name} holds values up to {big:.3g}, beyond the range of "
                         f"{dtype.name} ({np.finfo(dtype).max:.3g}); use dtype='float64' or "
                         f"scale the inputs") from None


def check_targets(y, n, output, n_outputs, dtype, name="y"):
    """Targets of ``n`` rows for an ``output`` head with ``n_outputs``
    columns, as ``(labels int64, targets 2-D dtype)`` with the unused one
    empty: class labels (or one-hot rows) for softmax, values for the
    sigmoid (in [0, 1]) and identity heads."""
    K = n_outputs
    a = np.asarray(y)
    if a.shape[:1] != (n,):
        raise ValueError(f"{name} has {a.shape[0] if a.ndim else 0} rows but x has {n}")
    if a.dtype.kind not in "iubf":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    empty_l = np.zeros(0, np.int64)
    empty_t = np.zeros((0, K), dtype)
    if output == "softmax":
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
        return kernel_array(np.ascontiguousarray(a, dtype=np.int64)), empty_t
    if a.dtype.kind == "b":
        if output in REGRESSION_OUTPUTS:
            raise TypeError(f"{name} must hold numbers (regression targets), got booleans")
        a = a.astype(dtype)  # 0/1 targets of a sigmoid output
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2 or a.shape[1] != K:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, {K}), got {np.shape(y)}")
    t = np.ascontiguousarray(a, dtype=dtype)
    if not np.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if output == "sigmoid" and ((t < 0) | (t > 1)).any():
        raise ValueError(f"{name} targets for a sigmoid output must lie in [0, 1]")
    if output == "poisson" and (t < 0).any():
        raise ValueError(f"{name} targets for a poisson output must be >= 0 (counts or rates)")
    return empty_l, kernel_array(t)


def check_callbacks(callbacks):
    """A list of callables ``f(net, history)``."""
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


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_hidden(hidden, n_hidden):
    """The activation of each of ``n_hidden`` hidden layers: ``hidden`` is
    one name in :data:`HIDDEN` for all, or a sequence of one per layer."""
    if isinstance(hidden, str):
        return (check_choice("hidden", hidden, HIDDEN),) * n_hidden
    try:
        names = list(hidden)
    except TypeError:
        raise TypeError(f"hidden must be an activation name or a list of one per hidden "
                        f"layer, got {type(hidden).__name__}") from None
    if len(names) != n_hidden:
        raise ValueError(f"hidden has {len(names)} activations, the network has {n_hidden} "
                         f"hidden layers")
    return tuple(check_choice(f"hidden[{i}]", str(a) if isinstance(a, np.str_) else a, HIDDEN)
                 for i, a in enumerate(names))


def check_loss_settings(output, delta, label_smoothing):
    """(delta, label_smoothing) checked for head ``output``: Huber's
    ``delta`` > 0; the classifiers' ``label_smoothing`` in [0, 1), and 0
    for a regression head (which has no use for it)."""
    delta = check_float("delta", delta, 0, low_open=True)
    label_smoothing = check_float("label_smoothing", label_smoothing, 0, 1, high_open=True)
    if label_smoothing and output in REGRESSION_OUTPUTS:
        raise ValueError(f"label_smoothing applies to classifier outputs (softmax, sigmoid), "
                         f"not {output!r}")
    return delta, label_smoothing


def check_clip_norm(clip_norm):
    """The gradient-norm limit as a float: None gives 0 (no clipping)."""
    if clip_norm is None:
        return 0.0
    return check_float("clip_norm", clip_norm, 0, low_open=True)


def dropout_rates(dropout, n_layers):
    """Each layer's output dropout rate, (n_layers,) float64 with the last
    (the logits) 0, from ``dropout``: one rate for every hidden layer or a
    list of one per hidden layer, each in [0, 1); None or 0: none."""
    n_hidden = n_layers - 1
    if dropout is None:
        return None
    if isinstance(dropout, numbers.Real) and not isinstance(dropout, (bool, np.bool_)):
        rates = [dropout] * n_hidden
    else:
        try:
            if isinstance(dropout, (str, bytes)):
                raise TypeError
            rates = list(dropout)
        except TypeError:
            raise TypeError(f"dropout must be a rate or a list of one per hidden layer, got "
                            f"{type(dropout).__name__}") from None
        if len(rates) != n_hidden:
            raise ValueError(f"dropout has {len(rates)} rates, the network has {n_hidden} "
                             f"hidden layers")
    out = np.zeros(n_layers)
    for i, r in enumerate(rates):
        name = "dropout" if isinstance(dropout, numbers.Real) else f"dropout[{i}]"
        out[i] = check_float(name, r, 0, 1, high_open=True)
    return out if out.any() else None


def class_weights(class_weight, labels, T):
    """Per-row weights (float64) for ``class_weight``: a dict {class index:
    weight} or "balanced" (scikit-learn's ``n_rows / (n_classes *
    rows_of_class)``) over integer ``labels`` (softmax), or a single 0/1
    target column (sigmoid: classes 0 and 1); None gives None."""
    if class_weight is None:
        return None
    if labels.size:
        cls, k = labels, None
    elif T.ndim == 2 and T.shape[1] == 1 and np.isin(T, (0, 1)).all():
        cls, k = T[:, 0].astype(np.int64), 2
    else:
        raise ValueError("class_weight needs class labels (a softmax output, or one 0/1 "
                         "sigmoid output)")
    k = k or int(cls.max()) + 1
    counts = np.bincount(cls, minlength=k)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got "
                             f"{class_weight!r}")
        present = counts > 0
        per_class = np.zeros(k)
        per_class[present] = cls.size / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        per_class = np.ones(k)
        for c, w in class_weight.items():
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral) or not (
                    0 <= c < k):
                raise ValueError(f"class_weight: {c!r} is not a class (0..{k - 1})")
            per_class[c] = check_float(f"class_weight[{c}]", w, 0)
    else:
        raise TypeError(f"class_weight must be 'balanced', a dict or None, got "
                        f"{type(class_weight).__name__}")
    w = per_class[cls]
    if not (w > 0).any():
        raise ValueError("class_weight gives every row a weight of 0")
    return kernel_array(np.ascontiguousarray(w, dtype=np.float64))


def split_validation(X, labels, T, validation_data, validation_split, check_x, check_y):
    """((X, labels, T) to train on, (X_val, labels_val, T_val) or None):
    ``validation_data`` checked with ``check_x``/``check_y``, or the last
    ``validation_split`` fraction of the rows (before any shuffling)."""
    if validation_data is not None:
        if validation_split > 0:
            raise ValueError("give validation_data or validation_split, not both")
        try:
            xv, yv = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (x_val, y_val)") from None
        Xv = check_x(xv, "validation_data x")
        return (X, labels, T), (Xv,) + check_y(yv, Xv.shape[0], "validation_data y")
    if validation_split == 0:
        return (X, labels, T), None
    n = X.shape[0]
    n_val = int(round(n * validation_split))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split={validation_split} leaves {n - n_val} "
                         f"training and {n_val} validation rows of {n}; need >= 1 each")
    n -= n_val

    def rows(a, lo, hi):
        return a[lo:hi] if a.size else a

    return ((X[:n], rows(labels, 0, n), rows(T, 0, n)),
            (X[n:], rows(labels, n, None), rows(T, n, None)))


def as_sparse(name, x, dtype, n_features=None):
    """A scipy sparse matrix as CSR with sorted indices and ``dtype`` values
    (copied only if needed), checked like a dense one."""
    x = x.tocsr()
    if x.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"{name} has {x.shape[1]} features but the network expects {n_features}")
    if x.dtype != dtype:
        x = x.astype(dtype)
    if not x.has_sorted_indices:
        x = x.sorted_indices()
    x.sum_duplicates()
    if not np.isfinite(x.data).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if not (x.data.flags.writeable and x.indices.flags.writeable
            and x.indptr.flags.writeable):
        x = x.copy()  # writable arrays: one compiled variant (see kernel_array)
    return x


def check_sample_weight(sample_weight, n):
    """Per-row weights: 1-D float64 of length n, finite, >= 0, not all 0."""
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "iuf" or w.dtype.kind == "b":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    w = kernel_array(np.ascontiguousarray(w, dtype=np.float64))
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity")
    if (w < 0).any():
        raise ValueError("sample_weight must be >= 0")
    if not (w > 0).any():
        raise ValueError("sample_weight must not be all zero")
    return w
