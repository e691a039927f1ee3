"""Argument checks shared by the public entry points.

Everything a user passes is checked here, in Python, before any compiled
kernel runs, so bad input ends in a ValueError/TypeError that names the
argument, never in a crash or silently wrong training.
"""
import numbers

import numpy as np

DTYPES = ("float32", "float64")


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


def check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
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


def scan_matrix(name, a):
    """(non-zeros per row, 64-bit fingerprint of the data) of a C-contiguous
    float matrix, in one compiled pass; raises if it holds NaN or inf."""
    from .kernels.sparse import fingerprint, scan_rows

    counts = np.empty(a.shape[0], np.int64)
    rowhash = np.empty(a.shape[0], np.uint64)
    if scan_rows(a, counts, rowhash):
        raise ValueError(f"{name} contains NaN or infinity")
    return counts, int(fingerprint(rowhash))


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
    a = np.ascontiguousarray(a, dtype=dtype)
    if check_finite:
        scan_matrix(name, a)
    return a
