"""The first layer's view of the training inputs: dense, or CSR with a
per-batch CSC form, chosen by measured density and reused across fits."""
import numpy as np

from ..kernels.bundles import SparseInput, no_sparse
from . import backend, validation

# The first layer reads the training inputs in sparse form when at most this
# fraction of them is non-zero (MNIST: 0.19). Measured break-even: see bench/.
SPARSE_MAX_DENSITY = 0.3


class InputCache:
    """The sparse forms of the last fit's inputs, kept for the next fit on
    identical data (same 64-bit fingerprint of every value, same shape,
    dtype and batch size): a loop of ``fit(epochs=1)`` calls then pays one
    read of X per call, not a rebuild. ``csc_in_order`` says the per-batch
    CSC blocks follow the unshuffled order (valid without shuffling)."""

    def __init__(self, key, sp):
        self.key = key
        self.sp = sp
        self.csc_in_order = False


def is_scipy_sparse(x):
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def from_csr(X, dtype, batch_size=None):
    """:class:`SparseInput` over a checked scipy CSR matrix (its arrays are
    used in place when their types fit), with room for the per-batch CSC
    form when ``batch_size`` is given (else without the CSC form)."""
    n, d = X.shape
    nnz = X.nnz
    n_batches = -(-n // batch_size) if batch_size else 0
    return SparseInput(np.ascontiguousarray(X.indptr, np.int64),
                       np.ascontiguousarray(X.indices, np.int32),
                       np.ascontiguousarray(X.data, dtype),
                       np.empty(n_batches + 1, np.int64),
                       np.empty((n_batches, d + 1), np.int64),
                       np.empty(nnz if batch_size else 0, np.int32),
                       np.empty(nnz if batch_size else 0, dtype))


def dense_placeholder(X, dtype):
    """What the kernels get as X when the first layer reads ``sp``."""
    return np.empty((0, X.shape[1]), dtype)


def prepare(X, dtype, batch_size, shuffle, cache, max_density=None, csc=True):
    """Validate X (finite) and choose the first layer's path. A sparse one
    has room for the epoch's per-batch CSC blocks unless ``csc`` is False
    (row-split batches of a shuffled fit sort each batch's non-zeros when
    they need them, see ``kernels.train._sparse_part``).

    Returns ``(sp, csc_ready, cache)``: ``sp`` is a :class:`SparseInput`
    (:func:`no_sparse` on the dense path), ``csc_ready`` whether its CSC
    blocks can be used as they are, and the :class:`InputCache` to keep
    (None when dense). A scipy sparse X (checked by ``validation.as_sparse``) always
    takes the sparse path, from its own CSR arrays; it is not cached."""
    if is_scipy_sparse(X):
        return from_csr(X, dtype, batch_size if csc else None), False, None
    if max_density is None:
        max_density = SPARSE_MAX_DENSITY
    counts, fp = validation.scan_matrix("x", X)
    nnz = int(counts.sum())
    if max_density <= 0 or nnz > max_density * X.size:
        return no_sparse(dtype), False, None
    if fp is None:
        fp = validation.data_fingerprint(X)
    key = (fp, X.shape, X.dtype.str, batch_size, csc)
    if cache is not None and cache.key == key:
        return cache.sp, cache.csc_in_order and not shuffle, cache
    n, d = X.shape
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(nnz, np.int32)
    values = np.empty(nnz, dtype)
    args = (X, indptr, indices, values)
    backend.choose([("sparse.csr_fill", args)],
                   memo=("csr_fill", X.dtype.str, X.flags.writeable)).csr_fill(*args)
    blocks, slots = (-(-n // batch_size), nnz) if csc else (0, 0)
    sp = SparseInput(indptr, indices, values, np.empty(blocks + 1, np.int64),
                     np.empty((blocks, d + 1), np.int64), np.empty(slots, np.int32),
                     np.empty(slots, dtype))
    return sp, False, InputCache(key, sp)


def for_inference(X, layout, theta, max_rows, dense_work=True):
    """What predict/evaluate pass the kernels for checked X (dense, or a
    scipy CSR read in place): (X or a placeholder, SparseInput, row ids,
    work buffers for up to ``max_rows`` rows). ``dense_work=False``: a dense
    X's driver keeps its own scratch (predict), so the buffers are minimal."""
    from .memory import work_buffers

    n = X.shape[0]
    sparse = is_scipy_sparse(X)
    rows = min(n, max_rows) if sparse or dense_work else 1
    work = work_buffers(layout, rows, theta.dtype, sparse)
    if sparse:
        return (dense_placeholder(X, theta.dtype), from_csr(X, theta.dtype),
                np.arange(n, dtype=np.int64), work)
    return X, no_sparse(theta.dtype), np.empty(0, np.int64), work
