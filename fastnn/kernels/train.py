"""Whole-network drivers: forward, backward, one SGD step, one epoch.

Memory layout (built once per ``fit`` by :class:`fastnn.network.Network`):

* ``theta``: every parameter in one flat vector; layer ``l`` holds
  ``W_l`` (``sizes[l] x sizes[l+1]``, row-major) at ``poff[l]`` followed by
  ``b_l``. ``grad`` and ``vel`` share this layout.
* ``hbuf``: the outputs of every layer for up to ``cap`` rows; layer ``l``'s
  output (``rows x sizes[l+1]``) starts at ``cap * hoff[l]``. ``dbuf`` holds
  ``dE/dU`` for each layer in the same layout.
* ``wt``: scratch for one transposed weight matrix (the largest one needed).

Views into these flat buffers are ``reshape``s of contiguous slices: free,
and the last, shorter mini-batch uses the same buffers.

Arguments travel in tuples so signatures stay short:

* ``model = (theta, sizes, poff, acts)``; ``acts[l]`` is layer l's
  activation code, the last one IDENTITY (the output non-linearity belongs
  to the loss ``head``).
* ``work = (hbuf, dbuf, hoff, cap, wt, wa, da, bp)``: ``bp`` is scratch
  for packing the wide matmuls' B operand; ``wa``/``da`` are
  64-byte-aligned zeroed scratch for the sparse first layer's aligned copies
  of W and dU (empty on the dense path).
* ``sp = (indptr, indices, values, base, colptr, rowpos, cvals)``: the
  training inputs in CSR form plus the per-batch CSC form (see
  :mod:`.sparse`); all empty when the first layer runs dense.
"""
import numpy as np

from .._config import jit
from .activations import IDENTITY
from .dense import bias_backward, dense_backward, dense_forward
from .losses import head_output, loss_forward_backward
from .optim import adam_update, l2_backward, momentum_update, sgd_update
from .sparse import (batch_csc_build, batch_nnz_offsets, is_aligned, pad_rows_into,
                     sparse_dense_forward,
                     sparse_weight_grad)


@jit
def layer_W(theta, sizes, poff, l):
    K = sizes[l]
    N = sizes[l + 1]
    o = poff[l]
    return theta[o:o + K * N].reshape((K, N))


@jit
def layer_b(theta, sizes, poff, l):
    K = sizes[l]
    N = sizes[l + 1]
    o = poff[l] + K * N
    return theta[o:o + N]


@jit
def layer_buf(buf, sizes, hoff, cap, l, rows):
    n = sizes[l + 1]
    o = cap * hoff[l]
    return buf[o:o + rows * n].reshape((rows, n))


@jit
def is_sparse(sp):
    return sp[0].shape[0] > 0


@jit
def network_forward(model, X, rows, sp, work):
    """Forward pass of one batch; returns the logits view.

    Dense: the batch is ``X``. Sparse: the batch is rows ``rows`` of the CSR
    matrix in ``sp`` (``X`` is not read)."""
    theta, sizes, poff, acts = model
    hbuf, dbuf, hoff, cap, wt, wa, da, bp = work
    L = sizes.shape[0] - 1
    n = rows.shape[0] if is_sparse(sp) else X.shape[0]
    H = X
    for l in range(L):
        Y = layer_buf(hbuf, sizes, hoff, cap, l, n)
        W = layer_W(theta, sizes, poff, l)
        b = layer_b(theta, sizes, poff, l)
        if l == 0 and is_sparse(sp):
            if not is_aligned(W):
                W = pad_rows_into(W, wa)
            sparse_dense_forward(sp[0], sp[1], sp[2], rows, W, b, acts[l], Y)
        else:
            dense_forward(H, W, b, acts[l], Y, bp)
        H = Y
    return H


@jit
def network_backward(model, X, batch, sp, grad, work, n):
    """Backward pass of an ``n``-row batch; expects dE/dZ of the last layer
    in ``dbuf`` and the forward's outputs in ``hbuf``. Writes every gradient
    into ``grad``. ``batch`` is the batch's number (selects its CSC block
    when the first layer is sparse)."""
    theta, sizes, poff, acts = model
    hbuf, dbuf, hoff, cap, wt, wa, da, bp = work
    L = sizes.shape[0] - 1
    empty = np.empty((0, 0), theta.dtype)
    for l in range(L - 1, -1, -1):
        K = sizes[l]
        N = sizes[l + 1]
        dU = layer_buf(dbuf, sizes, hoff, cap, l, n)
        W = layer_W(theta, sizes, poff, l)
        dW = layer_W(grad, sizes, poff, l)
        db = layer_b(grad, sizes, poff, l)
        if l > 0:
            Hin = layer_buf(hbuf, sizes, hoff, cap, l - 1, n)
            dX = layer_buf(dbuf, sizes, hoff, cap, l - 1, n)
            dense_backward(dU, Hin, W, dW, db, dX, wt[:N * K].reshape((N, K)), acts[l - 1],
                           bp)
        elif is_sparse(sp):
            if not is_aligned(dU):
                dU = pad_rows_into(dU, da)
            sparse_weight_grad(sp[4][batch], sp[5], sp[6], dU, dW)
            bias_backward(dU, db)
        else:
            # No gradient w.r.t. the input data.
            dense_backward(dU, X, W, dW, db, empty, empty, IDENTITY, bp)


@jit
def forward_backward(model, head, X, rows, batch, labels, T, sp, grad, work):
    """Loss and all gradients for one mini-batch; returns (loss, n_correct)."""
    sizes = model[1]
    hbuf, dbuf, hoff, cap, wt, wa, da, bp = work
    Z = network_forward(model, X, rows, sp, work)
    n = Z.shape[0]
    dZ = layer_buf(dbuf, sizes, hoff, cap, sizes.shape[0] - 2, n)
    loss, correct = loss_forward_backward(head, Z, labels, T, dZ)
    network_backward(model, X, batch, sp, grad, work, n)
    return loss, correct


# Optimizer codes (``opt[0]``).
SGD = 0
ADAM = 1


@jit
def apply_update(model, grad, state, opt, rows):
    """Add the L2 term to ``grad`` and update ``theta`` in place.

    ``opt = (kind, lr, momentum, nesterov, beta1, beta2, eps, l2,
    l2_per_row)``; ``state = (vel, sq, step)``: momentum velocity or Adam's
    first moment, Adam's second moment, and the step counter (int64[1]).
    The L2 coefficient is ``l2`` per step, or ``l2 / rows`` with
    ``l2_per_row`` (scikit-learn's ``alpha``, whose penalty is divided by
    the batch's rows). Returns the penalty ``0.5*coef*sum(W**2)`` that the
    batch's loss includes.
    """
    theta, sizes, poff, acts = model
    kind, lr, momentum, nesterov, b1, b2, eps, l2, l2_per_row = opt
    vel, sq, step = state
    penalty = 0.0
    if l2 > 0:
        coef = l2 / rows if l2_per_row else l2
        penalty = 0.5 * coef * l2_backward(theta, grad, sizes, poff, theta.dtype.type(coef))
    step[0] += 1
    if kind == ADAM:
        t = step[0]
        lr_t = lr * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        dt = theta.dtype.type
        adam_update(theta, grad, vel, sq, dt(lr_t), dt(b1), dt(b2), dt(eps))
    elif momentum == 0:
        sgd_update(theta, grad, theta.dtype.type(lr))
    else:
        dt = theta.dtype.type
        momentum_update(theta, grad, vel, dt(lr), dt(momentum), nesterov)
    return penalty


@jit
def splitmix64(state):
    """Next 64-bit value of the SplitMix64 generator; ``state`` is a uint64
    array of length 1, advanced in place (reproducible across platforms and
    independent of NumPy's and Numba's global generators)."""
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@jit
def shuffle_inplace(order, state):
    """Fisher-Yates shuffle of ``order`` driven by :func:`splitmix64`."""
    for i in range(order.shape[0] - 1, 0, -1):
        j = np.int64(splitmix64(state) % np.uint64(i + 1))
        tmp = order[i]
        order[i] = order[j]
        order[j] = tmp


@jit
def gather_rows(src, idx, dst):
    for r in range(idx.shape[0]):
        dst[r, :] = src[idx[r], :]


@jit
def gather_labels(src, idx, dst):
    for r in range(idx.shape[0]):
        dst[r] = src[idx[r]]


@jit
def prepare_sparse_batches(sp, order, batch_size):
    """(Re)build the per-batch CSC blocks for the visiting ``order``."""
    batch_nnz_offsets(sp[0], order, batch_size, sp[3])
    batch_csc_build(sp[0], sp[1], sp[2], order, batch_size, sp[3], sp[4], sp[5], sp[6])


@jit
def epoch_begin(order, rng_state, shuffle, sp, csc_ready, batch_size):
    """Choose the epoch's visiting ``order`` and, for a sparse first layer,
    (re)build its per-batch CSC blocks unless ``csc_ready`` (same order as
    the last epoch)."""
    if shuffle:
        # Each epoch's permutation depends only on the generator state, so
        # fit(epochs=2) and two fit(epochs=1) calls visit the same batches.
        for i in range(order.shape[0]):
            order[i] = i
        shuffle_inplace(order, rng_state)
    if is_sparse(sp) and (shuffle or not csc_ready):
        prepare_sparse_batches(sp, order, batch_size)


@jit
def train_batches(X, labels, T, model, head, grad, state, opt, batch_size, shuffle,
                  order, sp, work, bufs, first, last):
    """Mini-batches ``first..last-1`` of the epoch set up by
    :func:`epoch_begin` (batch ``j`` is rows ``order[j*batch_size:...]``;
    the last one may be shorter), updating ``model`` in place.

    With ``shuffle`` each batch is gathered into ``bufs = (xbuf, lbuf,
    tbuf)``; without it batches are zero-copy slices. A sparse first layer
    reads its batch straight from the CSR form, so X is never gathered.

    Returns (sum of per-row losses, sum of per-row L2 penalties, number of
    rows predicted right), each measured on a batch just before its update.
    """
    n = order.shape[0]
    xbuf, lbuf, tbuf = bufs
    sparse = is_sparse(sp)
    loss_sum = 0.0
    pen_sum = 0.0
    correct = 0
    for j in range(first, last):
        s = j * batch_size
        e = min(n, s + batch_size)
        rows = e - s
        idx = order[s:e]
        if shuffle:
            xb = xbuf[:0]
            if not sparse:
                xb = xbuf[:rows]
                gather_rows(X, idx, xb)
            lb = lbuf[:min(rows, lbuf.shape[0])]
            if labels.shape[0] > 0:
                gather_labels(labels, idx, lb)
            tb = tbuf[:min(rows, tbuf.shape[0])]
            if T.shape[0] > 0:
                gather_rows(T, idx, tb)
        else:
            xb = X[s:e]
            lb = labels[s:min(e, labels.shape[0])]
            tb = T[s:min(e, T.shape[0])]
        loss, c = forward_backward(model, head, xb, idx, j, lb, tb, sp, grad, work)
        pen = apply_update(model, grad, state, opt, rows)
        loss_sum += loss * rows
        pen_sum += pen * rows
        correct += c
    return loss_sum, pen_sum, correct


@jit
def dense_sp(theta):
    # The "no sparse data" tuple, typed like a real one.
    i64 = np.empty(0, np.int64)
    return (i64, np.empty(0, np.int32), np.empty(0, theta.dtype), i64,
            np.empty((0, 0), np.int64), np.empty(0, np.int32), np.empty(0, theta.dtype))


@jit
def evaluate_batches(X, labels, T, model, head, work):
    """(sum of per-row losses, n_correct) over X, ``cap`` rows at a time."""
    sizes = model[1]
    hbuf, dbuf, hoff, cap, wt, wa, da, bp = work
    sp = dense_sp(model[0])
    n = X.shape[0]
    loss_sum = 0.0
    correct = 0
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(model, X[s:e], sp[0], sp, work)
        dZ = layer_buf(dbuf, sizes, hoff, cap, sizes.shape[0] - 2, e - s)
        loss, c = loss_forward_backward(head, Z, labels[s:min(e, labels.shape[0])],
                                        T[s:min(e, T.shape[0])], dZ)
        loss_sum += loss * (e - s)
        correct += c
    return loss_sum, correct


@jit
def predict_batches(X, model, head, work, out):
    """Logits (``head < 0``) or the head's output (probabilities, or values
    for regression) of every row of X into ``out``, ``cap`` rows at a time."""
    hbuf, dbuf, hoff, cap, wt, wa, da, bp = work
    sp = dense_sp(model[0])
    n = X.shape[0]
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(model, X[s:e], sp[0], sp, work)
        if head < 0:
            out[s:e, :] = Z
        else:
            head_output(head, Z, out[s:e])
