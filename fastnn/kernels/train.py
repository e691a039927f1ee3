"""Whole-network drivers: forward, backward, one SGD step, one epoch.

Memory layout (built once per ``fit`` by :class:`fastnn.network.Network`):

* ``theta``: every parameter in one flat vector; layer ``l`` holds
  ``W_l`` (``sizes[l] x sizes[l+1]``, row-major) at ``poff[l]`` followed by
  ``b_l``. ``grad`` and ``vel`` share this layout.
* ``hbuf``: the outputs of every layer for up to ``cap`` rows; layer ``l``'s
  output (``rows x sizes[l+1]``) starts at ``cap * hoff[l]``. ``dbuf`` holds
  ``dE/dU`` for each layer in the same layout.
* ``wt``: scratch for one transposed weight matrix (the largest one needed).

Views into these flat buffers are made with ``reshape`` on contiguous
slices, which costs nothing, and lets the last, shorter mini-batch use the
same buffers.
"""
import numpy as np

from .._config import jit
from .activations import IDENTITY
from .dense import dense_backward, dense_forward
from .losses import head_output, loss_forward_backward
from .optim import momentum_update, sgd_update


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
def network_forward(X, theta, sizes, poff, acts, hbuf, hoff, cap):
    """Forward pass of X (rows <= cap); returns the logits view.

    ``acts[l]`` is layer l's activation code; the last entry is IDENTITY
    because the output non-linearity belongs to the loss head."""
    L = sizes.shape[0] - 1
    rows = X.shape[0]
    H = X
    for l in range(L):
        Y = layer_buf(hbuf, sizes, hoff, cap, l, rows)
        dense_forward(H, layer_W(theta, sizes, poff, l),
                      layer_b(theta, sizes, poff, l),
                      acts[l], Y)
        H = Y
    return H


@jit
def network_backward(X, theta, grad, sizes, poff, acts, hbuf, dbuf, hoff, cap, wt):
    """Backward pass; expects dE/dZ of the last layer already in ``dbuf``
    and the forward's outputs in ``hbuf``. Writes every gradient into
    ``grad``."""
    L = sizes.shape[0] - 1
    rows = X.shape[0]
    for l in range(L - 1, -1, -1):
        K = sizes[l]
        N = sizes[l + 1]
        dU = layer_buf(dbuf, sizes, hoff, cap, l, rows)
        W = layer_W(theta, sizes, poff, l)
        dW = layer_W(grad, sizes, poff, l)
        db = layer_b(grad, sizes, poff, l)
        if l == 0:
            # No gradient w.r.t. the input data.
            dense_backward(dU, X, W, dW, db, np.empty((0, 0), X.dtype),
                           np.empty((0, 0), X.dtype), IDENTITY)
        else:
            WT = wt[:N * K].reshape((N, K))
            Hin = layer_buf(hbuf, sizes, hoff, cap, l - 1, rows)
            dX = layer_buf(dbuf, sizes, hoff, cap, l - 1, rows)
            dense_backward(dU, Hin, W, dW, db, dX, WT, acts[l - 1])


@jit
def forward_backward(X, labels, T, theta, grad, sizes, poff, acts, head,
                     hbuf, dbuf, hoff, cap, wt):
    """Loss and all gradients for one mini-batch; returns (loss, n_correct)."""
    Z = network_forward(X, theta, sizes, poff, acts, hbuf, hoff, cap)
    dZ = layer_buf(dbuf, sizes, hoff, cap, sizes.shape[0] - 2, X.shape[0])
    loss, correct = loss_forward_backward(head, Z, labels, T, dZ)
    network_backward(X, theta, grad, sizes, poff, acts, hbuf, dbuf, hoff, cap, wt)
    return loss, correct


@jit
def train_step(X, labels, T, theta, grad, vel, sizes, poff, acts, head,
               lr, momentum, nesterov, hbuf, dbuf, hoff, cap, wt):
    """One mini-batch gradient step in place; returns (loss, n_correct)."""
    loss, correct = forward_backward(X, labels, T, theta, grad, sizes, poff,
                                     acts, head, hbuf, dbuf, hoff, cap, wt)
    if momentum == 0:
        sgd_update(theta, grad, lr)
    else:
        momentum_update(theta, grad, vel, lr, momentum, nesterov)
    return loss, correct


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
def train_epoch(X, labels, T, theta, grad, vel, sizes, poff, acts, head,
                batch_size, lr, momentum, nesterov, shuffle, order, rng_state,
                hbuf, dbuf, hoff, wt, xbuf, lbuf, tbuf):
    """One pass over the data in mini-batches of ``batch_size`` (the last
    one may be shorter). With ``shuffle`` the visiting ``order`` is
    reshuffled in place first and each batch is gathered into ``xbuf``;
    without it batches are zero-copy slices of X.

    Returns (sum of per-row losses, number of rows predicted right), both
    measured on each batch just before its update.
    """
    n = X.shape[0]
    cap = batch_size
    if shuffle:
        shuffle_inplace(order, rng_state)
    loss_sum = 0.0
    correct = 0
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        rows = e - s
        if shuffle:
            idx = order[s:e]
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
        loss, c = train_step(xb, lb, tb, theta, grad, vel, sizes, poff, acts,
                             head, lr, momentum, nesterov, hbuf, dbuf, hoff,
                             cap, wt)
        loss_sum += loss * rows
        correct += c
    return loss_sum, correct


@jit
def predict_logits(X, theta, sizes, poff, acts, hbuf, hoff, cap, out):
    """Logits of every row of X into ``out``, ``cap`` rows at a time."""
    n = X.shape[0]
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(X[s:e], theta, sizes, poff, acts, hbuf, hoff, cap)
        out[s:e, :] = Z


@jit
def evaluate_batches(X, labels, T, theta, sizes, poff, acts, head, hbuf,
                     dbuf, hoff, cap):
    """(sum of per-row losses, n_correct) over X, ``cap`` rows at a time."""
    n = X.shape[0]
    loss_sum = 0.0
    correct = 0
    L = sizes.shape[0] - 1
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(X[s:e], theta, sizes, poff, acts, hbuf, hoff, cap)
        dZ = layer_buf(dbuf, sizes, hoff, cap, L - 1, e - s)
        loss, c = loss_forward_backward(head, Z, labels[s:min(e, labels.shape[0])],
                                        T[s:min(e, T.shape[0])], dZ)
        loss_sum += loss * (e - s)
        correct += c
    return loss_sum, correct


@jit
def predict_output(X, theta, sizes, poff, acts, head, hbuf, hoff, cap, out):
    """The head's output (probabilities, or values for regression)."""
    n = X.shape[0]
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(X[s:e], theta, sizes, poff, acts, hbuf, hoff, cap)
        head_output(head, Z, out[s:e])
