"""Whole-network drivers: forward, backward, one update, runs of batches.

Memory layout (sizes and allocation in :mod:`fastnn.memory`; the bundles are
defined with shape comments in :mod:`.bundles`):

* ``model.theta``: every parameter in one flat vector; layer ``l`` holds
  ``W_l`` (``sizes[l] x sizes[l+1]``, row-major) at ``poff[l]`` followed by
  ``b_l``. ``grad`` and the optimizer state share this layout.
* ``work.hbuf``: the outputs of every layer for up to ``cap`` rows; layer
  ``l``'s output (``rows x sizes[l+1]``) starts at ``cap * hoff[l]``.
  ``work.dbuf`` holds ``dE/dU`` of each layer in the same layout.

Views into these flat buffers are ``reshape``s of contiguous slices: free,
and the last, shorter mini-batch uses the same buffers. ``acts[l]`` is layer
l's activation code; the last is IDENTITY (the output non-linearity belongs
to the loss ``head``).
"""
import numpy as np

from .._config import jit
from .activations import IDENTITY
from .dense import bias_backward, dense_backward, dense_forward
from .losses import head_output, loss_forward_backward
from .bundles import ADAM
from .optim import adam_update, l2_backward, momentum_update, sgd_update
from .rng import splitmix64
from .sparse import (batch_csc_build, batch_nnz_offsets, is_aligned, pad_rows_into,
                     sparse_dense_forward, sparse_weight_grad)


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
def network_forward(model, X, rows, sp, work):
    """Forward pass of one batch; returns the logits view.

    Dense: the batch is ``X``. Sparse: the batch is rows ``rows`` of the CSR
    matrix in ``sp`` (``X`` is not read)."""
    sizes = model.sizes
    n = rows.shape[0] if sp is not None else X.shape[0]
    H = X
    for l in range(sizes.shape[0] - 1):
        Y = layer_buf(work.hbuf, sizes, work.hoff, work.cap, l, n)
        W = layer_W(model.theta, sizes, model.poff, l)
        b = layer_b(model.theta, sizes, model.poff, l)
        if l == 0 and sp is not None:
            if not is_aligned(W):
                W = pad_rows_into(W, work.wa)
            sparse_dense_forward(sp.indptr, sp.indices, sp.values, rows, W, b, model.acts[l], Y)
        else:
            dense_forward(H, W, b, model.acts[l], Y, work.bp)
        H = Y
    return H


@jit
def network_backward(model, X, batch, sp, grad, work, n):
    """Backward pass of an ``n``-row batch; expects dE/dZ of the last layer
    in ``dbuf`` and the forward's outputs in ``hbuf``. Writes every gradient
    into ``grad``. ``batch`` is the batch's number (selects its CSC block
    when the first layer is sparse)."""
    sizes, poff = model.sizes, model.poff
    hoff, cap = work.hoff, work.cap
    empty = np.empty((0, 0), model.theta.dtype)
    for l in range(sizes.shape[0] - 2, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dU = layer_buf(work.dbuf, sizes, hoff, cap, l, n)
        W = layer_W(model.theta, sizes, poff, l)
        dW = layer_W(grad, sizes, poff, l)
        db = layer_b(grad, sizes, poff, l)
        if l > 0:
            Hin = layer_buf(work.hbuf, sizes, hoff, cap, l - 1, n)
            dX = layer_buf(work.dbuf, sizes, hoff, cap, l - 1, n)
            WT = work.wt[:n_out * n_in].reshape((n_out, n_in))
            dense_backward(dU, Hin, W, dW, db, dX, WT, model.acts[l - 1], work.bp)
        elif sp is not None:
            if not is_aligned(dU):
                dU = pad_rows_into(dU, work.da)
            sparse_weight_grad(sp.colptr[batch], sp.rowpos, sp.cvals, dU, dW)
            bias_backward(dU, db)
        else:
            # No gradient w.r.t. the input data.
            dense_backward(dU, X, W, dW, db, empty, empty, IDENTITY, work.bp)


@jit
def forward_backward(model, head, X, rows, batch, labels, T, w, sp, grad, work):
    """Loss and all gradients for one mini-batch; returns (loss, n_correct)."""
    sizes = model.sizes
    Z = network_forward(model, X, rows, sp, work)
    n = Z.shape[0]
    dZ = layer_buf(work.dbuf, sizes, work.hoff, work.cap, sizes.shape[0] - 2, n)
    loss, correct = loss_forward_backward(head, Z, labels, T, w, dZ)
    network_backward(model, X, batch, sp, grad, work, n)
    return loss, correct


@jit
def apply_update(model, grad, state, opt, rows):
    """Add the L2 term to ``grad`` and update ``model.theta`` in place
    (:class:`.bundles.Optimizer` settings, :class:`.bundles.OptimizerState`).

    The L2 coefficient is ``l2`` per step, or ``l2 / rows`` with
    ``l2_per_row`` (scikit-learn's ``alpha``, whose penalty is divided by
    the batch's rows, or by the sum of its sample weights: pass that as
    ``rows``). Returns the penalty ``0.5*coef*sum(W**2)`` that the
    batch's loss includes.
    """
    theta = model.theta
    dt = theta.dtype.type
    penalty = 0.0
    if opt.l2 > 0:
        coef = (opt.l2 / rows if rows > 0 else 0.0) if opt.l2_per_row else opt.l2
        penalty = 0.5 * coef * l2_backward(theta, grad, model.sizes, model.poff, dt(coef))
    state.step[0] += 1
    if opt.kind == ADAM:
        t = state.step[0]
        lr_t = opt.lr * np.sqrt(1.0 - opt.beta2 ** t) / (1.0 - opt.beta1 ** t)
        adam_update(theta, grad, state.vel, state.sq, dt(lr_t), dt(opt.beta1), dt(opt.beta2),
                    dt(opt.eps))
    elif opt.momentum == 0:
        sgd_update(theta, grad, dt(opt.lr))
    else:
        momentum_update(theta, grad, state.vel, dt(opt.lr), dt(opt.momentum), opt.nesterov)
    return penalty


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
    batch_nnz_offsets(sp.indptr, order, batch_size, sp.base)
    batch_csc_build(sp.indptr, sp.indices, sp.values, order, batch_size, sp.base, sp.colptr,
                    sp.rowpos, sp.cvals)


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
    if sp is not None and (shuffle or not csc_ready):
        prepare_sparse_batches(sp, order, batch_size)


@jit
def train_batches(data, model, head, grad, state, opt, sp, work, bufs, first, last):
    """Mini-batches ``first..last-1`` of the epoch set up by
    :func:`epoch_begin` (batch ``j`` is rows ``data.order[j*batch_size:...]``;
    the last one may be shorter), updating ``model`` in place.

    With ``data.shuffle`` each batch is gathered into ``bufs``; without it
    batches are zero-copy slices. A sparse first layer reads its batch
    straight from the CSR form, so X is never gathered.

    Returns (sum of per-row losses, sum of per-row L2 penalties, number of
    rows predicted right), each measured on a batch just before its update.
    """
    X, labels, T, order, w = data.X, data.labels, data.T, data.order, data.w
    n = order.shape[0]
    loss_sum = 0.0
    pen_sum = 0.0
    correct = 0
    for j in range(first, last):
        s = j * data.batch_size
        e = min(n, s + data.batch_size)
        rows = e - s
        idx = order[s:e]
        if data.shuffle:
            xb = bufs.x[:0]
            if sp is None:
                xb = bufs.x[:rows]
                gather_rows(X, idx, xb)
            lb = bufs.labels[:min(rows, bufs.labels.shape[0])]
            if labels.shape[0] > 0:
                gather_labels(labels, idx, lb)
            tb = bufs.T[:min(rows, bufs.T.shape[0])]
            if T.shape[0] > 0:
                gather_rows(T, idx, tb)
            wb = bufs.w[:min(rows, bufs.w.shape[0])]
            if w.shape[0] > 0:
                gather_labels(w, idx, wb)
        else:
            xb = X[s:e]
            lb = labels[s:min(e, labels.shape[0])]
            tb = T[s:min(e, T.shape[0])]
            wb = w[s:min(e, w.shape[0])]
        loss, c = forward_backward(model, head, xb, idx, j, lb, tb, wb, sp, grad, work)
        norm = float(rows)
        if wb.shape[0] > 0:
            norm = 0.0
            for i in range(wb.shape[0]):
                norm += wb[i]
        pen = apply_update(model, grad, state, opt, norm)
        loss_sum += loss * rows
        pen_sum += pen * rows
        correct += c
    return loss_sum, pen_sum, correct


@jit
def evaluate_batches(X, sp, rows, labels, T, model, head, work):
    """(sum of per-row losses, n_correct) over X, ``cap`` rows at a time.
    With a sparse first layer the rows come from ``sp`` (CSR), and
    ``rows`` is ``arange(n)`` (X is not read)."""
    sizes = model.sizes
    cap = work.cap
    n = rows.shape[0] if sp is not None else X.shape[0]
    loss_sum = 0.0
    correct = 0
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(model, X[s:min(e, X.shape[0])], rows[s:e], sp, work)
        dZ = layer_buf(work.dbuf, sizes, work.hoff, cap, sizes.shape[0] - 2, e - s)
        loss, c = loss_forward_backward(head, Z, labels[s:min(e, labels.shape[0])],
                                        T[s:min(e, T.shape[0])], np.empty(0, np.float64), dZ)
        loss_sum += loss * (e - s)
        correct += c
    return loss_sum, correct


@jit
def predict_batches(X, sp, rows, model, head, work, out):
    """Logits (``head < 0``) or the head's output (probabilities, or values
    for regression) of every row into ``out``, ``cap`` rows at a time; rows
    from X, or from ``sp`` (CSR) with ``rows = arange(n)``."""
    cap = work.cap
    n = rows.shape[0] if sp is not None else X.shape[0]
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(model, X[s:min(e, X.shape[0])], rows[s:e], sp, work)
        if head < 0:
            out[s:e, :] = Z
        else:
            head_output(head, Z, out[s:e])


@jit
def full_batch_gradient(X, labels, T, w, model, head, work, grad, total):
    """Mean loss over every row of X (weighted by ``w`` unless it is empty),
    and its gradient into ``total`` (``grad`` is per-chunk scratch): the
    objective of full-batch solvers such as L-BFGS, computed ``work.cap``
    rows at a time with the training kernels (dense first layer)."""
    n = X.shape[0]
    no_rows = np.empty(0, np.int64)
    weighted = w.shape[0] > 0
    w_total = 0.0
    if weighted:
        for i in range(n):
            w_total += w[i]
    for i in range(total.shape[0]):
        total[i] = 0
    loss = 0.0
    for s in range(0, n, work.cap):
        e = min(n, s + work.cap)
        wc = w[s:e] if weighted else w
        chunk_loss, _ = forward_backward(model, head, X[s:e], no_rows, 0,
                                         labels[s:min(e, labels.shape[0])],
                                         T[s:min(e, T.shape[0])], wc, None, grad, work)
        if weighted:
            part = 0.0
            for i in range(wc.shape[0]):
                part += wc[i]
            share = part / w_total if w_total > 0 else 0.0
        else:
            share = (e - s) / n
        loss += chunk_loss * share
        for i in range(total.shape[0]):
            total[i] += grad[i] * share
    return loss
