"""Loss heads: the output non-linearity, the loss and its gradient in one pass.

Every head takes the last layer's linear output ``Z`` (B, K), writes
``dZ = dE/dZ`` and returns ``(loss, n_correct)``, where ``loss`` is the mean
over the ``B`` rows (accumulated in float64; with sample weights ``w`` the
weighted mean) and ``dZ`` is the exact derivative of that mean. ``n_correct`` counts rows predicted right
(argmax for softmax, every output thresholded at 0.5 for sigmoid; 0 for
regression).

* softmax + cross-entropy: ``E = mean_i(logsumexp(z_i) - z_i[t_i])``,
  ``dZ = (softmax(Z) - onehot(t)) / B``. With label smoothing ``a``
  (``torch.nn.CrossEntropyLoss(label_smoothing=a)``) the target is
  ``q = (1-a) onehot(t) + a/K``: ``E = mean_i(logsumexp(z_i) - q.z_i)``,
  ``dZ = (softmax(Z) - q) / B``.
* sigmoid + binary cross-entropy (summed over outputs):
  ``E = mean_i sum_k softplus(z) - t z``, ``dZ = (sigmoid(Z) - T) / B``;
  label smoothing ``a`` takes ``t (1-a) + a/2`` for ``t`` (two classes'
  softmax smoothing).
* identity + squared error: ``E = mean_i 1/2 sum_k (z - t)^2``,
  ``dZ = (Z - T) / B``.
* identity + absolute error: ``E = mean_i sum_k |z - t|``,
  ``dZ = sign(Z - T) / B`` (0 where they are equal, as torch's L1 loss).
* identity + Huber with ``delta`` (``torch.nn.HuberLoss``):
  ``1/2 d^2`` where ``|d| <= delta``, else ``delta (|d| - delta/2)``,
  summed over outputs; ``dZ = clip(d, -delta, delta) / B``.

The head arrives as a :class:`.bundles.Loss` (its code and settings).
"""
import math

import numpy as np
from numba import prange

from .._config import jit, jit_inline, jit_parallel
from .activations import exp_nonpositive, sigmoid
from .intrinsics import fp_mode, swap_fp_mode
from .layout import NTASK

SOFTMAX_CE = 0
SIGMOID_BCE = 1
IDENTITY_MSE = 2
EXP_POISSON = 3
ABSOLUTE_ERROR = 4
HUBER = 5

# Whole batches of at least this many logits take their softmax rows on the
# pool: libm's exp costs ~4.6 ns a value (1024 x 100 logits: 474 us on one
# thread, a fourteenth of the 300-1024-100 batch).
PARALLEL_SOFTMAX_MIN = 32768

CODES = {"softmax": SOFTMAX_CE, "sigmoid": SIGMOID_BCE, "identity": IDENTITY_MSE,
         "poisson": EXP_POISSON, "absolute_error": ABSOLUTE_ERROR, "huber": HUBER}


@jit
def weight_normaliser(w, B):
    """1 / (sum of the batch's sample weights), or 1/B without weights
    (``w`` empty). All-zero weights give 0: no loss, no gradient."""
    if w.shape[0] == 0:
        return 1.0 / B
    s = 0.0
    for i in range(B):
        s += w[i]
    return 1.0 / s if s > 0 else 0.0


@jit_inline
def _softmax_ce_row(Z, labels, w, dZ, inline_exp, smoothing, inv_b, i):
    """Row ``i`` of :func:`softmax_ce_forward_backward`: writes ``dZ[i]``;
    returns (its term of the loss sum, whether its argmax is the label)."""
    K = Z.shape[1]
    spread = smoothing / K  # the smoothed target's weight on every class
    # Max-subtracted log-sum-exp: exp() never sees a positive argument.
    m = Z[i, 0]
    am = 0
    for k in range(1, K):
        if Z[i, k] > m:
            m = Z[i, k]
            am = k
    s = 0.0
    for k in range(K):
        # math.exp, not exp_nonpositive: whole batches keep libm's
        # rounding, the NumPy engine's (np.exp), so a cold first fit (on
        # NumPy) and a warm one print the same accuracies (the classic
        # MNIST log; the inline exp would save ~2% of a classic batch).
        # Row-split batches (train.forward_backward_rows), whose
        # gradient sums round differently anyway, take the inline exp:
        # ~20% of a small half's time.
        if inline_exp:
            e = exp_nonpositive(Z[i, k] - m)
        else:
            e = math.exp(Z[i, k] - m)
        dZ[i, k] = e
        s += e
    t = labels[i]
    wi = w[i] if w.shape[0] > 0 else 1.0
    scale = wi * inv_b / s
    if smoothing > 0:
        zsum = 0.0
        for k in range(K):
            zsum += Z[i, k]
        off = wi * inv_b * spread
        for k in range(K):
            dZ[i, k] = dZ[i, k] * scale - off
        dZ[i, t] -= wi * inv_b * (1.0 - smoothing)
        return wi * (math.log(s) + m - (1.0 - smoothing) * Z[i, t] - spread * zsum), am == t
    for k in range(K):
        dZ[i, k] *= scale
    dZ[i, t] -= wi * inv_b
    return wi * (math.log(s) + m - Z[i, t]), am == t


@jit
def softmax_ce_forward_backward(Z, labels, w, dZ, inline_exp=False, smoothing=0.0):
    B = Z.shape[0]
    inv_b = weight_normaliser(w, B)
    loss = 0.0
    correct = 0
    for i in range(B):
        term, right = _softmax_ce_row(Z, labels, w, dZ, inline_exp, smoothing, inv_b, i)
        loss += term
        correct += right
    return loss * inv_b, correct


@jit_parallel
def _softmax_ce_rows(Z, labels, w, dZ, smoothing, inv_b, terms, right):
    """Every row of :func:`softmax_ce_forward_backward` (libm's exp) on the
    pool, each row's loss term and hit into ``terms`` and ``right``."""
    B = Z.shape[0]
    ntask = min(B, NTASK)
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for task in prange(ntask):
        own = swap_fp_mode(fp)
        for i in range(task * B // ntask, (task + 1) * B // ntask):
            terms[i], right[i] = _softmax_ce_row(Z, labels, w, dZ, False, smoothing, inv_b, i)
        swap_fp_mode(own)


@jit
def batch_loss_forward_backward(head, Z, labels, T, w, dZ):
    """:func:`loss_forward_backward` of a whole batch (libm's exp): a
    softmax of at least PARALLEL_SOFTMAX_MIN logits runs its rows on the
    pool and adds their terms in order. The count is the serial loop's,
    ``dZ`` and the loss agree with it to their last bits (each compilation
    may associate a row's sum of exps its own way, and the serial loop
    fuses each row's weight into the loss); either path gives the same
    results whatever the thread count."""
    B = Z.shape[0]
    if head.code != SOFTMAX_CE or Z.size < PARALLEL_SOFTMAX_MIN:
        return loss_forward_backward(head, Z, labels, T, w, dZ, False)
    inv_b = weight_normaliser(w, B)
    terms = np.empty(B, np.float64)
    right = np.empty(B, np.bool_)
    _softmax_ce_rows(Z, labels, w, dZ, head.smoothing, inv_b, terms, right)
    loss = 0.0
    correct = 0
    for i in range(B):
        loss += terms[i]
        correct += right[i]
    return loss * inv_b, correct


@jit
def softplus(x):
    # log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|).
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@jit
def sigmoid_bce_forward_backward(Z, T, w, dZ, smoothing=0.0):
    B, K = Z.shape
    inv_b = weight_normaliser(w, B)
    weighted = w.shape[0] > 0
    loss = 0.0
    correct = 0
    for i in range(B):
        ok = True
        wi = w[i] if weighted else 1.0
        for k in range(K):
            z = Z[i, k]
            t = T[i, k] * (1.0 - smoothing) + 0.5 * smoothing
            loss += wi * (softplus(z) - t * z)
            p = sigmoid(z)
            dZ[i, k] = (p - t) * (wi * inv_b)
            if (p > 0.5) != (T[i, k] > 0.5):
                ok = False
        if ok:
            correct += 1
    return loss * inv_b, correct


@jit
def squared_error_forward_backward(Z, T, w, dZ):
    B, K = Z.shape
    inv_b = weight_normaliser(w, B)
    weighted = w.shape[0] > 0
    loss = 0.0
    for i in range(B):
        wi = w[i] if weighted else 1.0
        for k in range(K):
            d = Z[i, k] - T[i, k]
            loss += wi * (0.5 * d * d)
            dZ[i, k] = d * (wi * inv_b)
    return loss * inv_b, 0


@jit
def robust_forward_backward(Z, T, w, dZ, delta):
    """Huber loss with ``delta`` (absolute error: ``delta`` 0, the loss then
    ``|d|`` with gradient ``sign(d)``)."""
    B, K = Z.shape
    inv_b = weight_normaliser(w, B)
    weighted = w.shape[0] > 0
    loss = 0.0
    for i in range(B):
        wi = w[i] if weighted else 1.0
        for k in range(K):
            d = np.float64(Z[i, k] - T[i, k])
            a = abs(d)
            if delta <= 0:
                loss += wi * a
                g = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
            elif a <= delta:
                loss += wi * (0.5 * d * d)
                g = d
            else:
                loss += wi * (delta * (a - 0.5 * delta))
                g = delta if d > 0 else -delta
            dZ[i, k] = g * (wi * inv_b)
    return loss * inv_b, 0


@jit
def poisson_forward_backward(Z, T, w, dZ):
    """Half Poisson deviance with a log link: prediction exp(z), loss
    ``t*log(t) - t*z - t + exp(z)`` summed over outputs, gradient
    ``exp(z) - t`` (scikit-learn's ``loss="poisson"``)."""
    B, K = Z.shape
    inv_b = weight_normaliser(w, B)
    weighted = w.shape[0] > 0
    loss = 0.0
    for i in range(B):
        wi = w[i] if weighted else 1.0
        for k in range(K):
            z = Z[i, k]
            t = T[i, k]
            mu = math.exp(z)
            tlogt = t * math.log(t) if t > 0 else 0.0
            loss += wi * (tlogt - t * z - t + mu)
            dZ[i, k] = (mu - t) * (wi * inv_b)
    return loss * inv_b, 0


@jit
def loss_forward_backward(head, Z, labels, T, w, dZ, inline_exp=False):
    """Dispatch on ``head.code`` (``head``: :class:`.bundles.Loss`).
    ``labels`` (int64) is read by softmax, ``T`` (float) by the other heads;
    ``w`` are per-row sample weights (empty: none), making the loss a
    weighted mean (scikit-learn's ``sample_weight``). ``inline_exp``: the
    softmax's exp is :func:`.activations.exp_nonpositive` (vectorisable,
    <= 1 ulp) instead of libm's."""
    code = head.code
    if code == SOFTMAX_CE:
        return softmax_ce_forward_backward(Z, labels, w, dZ, inline_exp, head.smoothing)
    if code == SIGMOID_BCE:
        return sigmoid_bce_forward_backward(Z, T, w, dZ, head.smoothing)
    if code == EXP_POISSON:
        return poisson_forward_backward(Z, T, w, dZ)
    if code == HUBER:
        return robust_forward_backward(Z, T, w, dZ, head.delta)
    if code == ABSOLUTE_ERROR:
        return robust_forward_backward(Z, T, w, dZ, 0.0)
    return squared_error_forward_backward(Z, T, w, dZ)


@jit
def head_output(head, Z, P):
    """P = the prediction of head code ``head`` from logits Z: softmax,
    sigmoid, exp, or Z itself (the regression heads)."""
    B, K = Z.shape
    for i in range(B):
        if head == SOFTMAX_CE:
            m = Z[i, 0]
            for k in range(1, K):
                m = max(m, Z[i, k])
            s = 0.0
            for k in range(K):
                e = exp_nonpositive(Z[i, k] - m)
                P[i, k] = e
                s += e
            inv = 1.0 / s
            for k in range(K):
                P[i, k] *= inv
        elif head == SIGMOID_BCE:
            for k in range(K):
                P[i, k] = sigmoid(Z[i, k])
        elif head == EXP_POISSON:
            for k in range(K):
                P[i, k] = math.exp(Z[i, k])
        else:
            for k in range(K):
                P[i, k] = Z[i, k]
