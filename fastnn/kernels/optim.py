"""In-place parameter updates over the flat parameter vector.

All parameters of a network live in one contiguous vector ``theta`` (the
layers' W and b are views into it), and their gradients in ``grad`` with the
same layout, so one loop updates every layer.

* SGD:       ``theta -= lr * grad``
* momentum:  ``v = mu*v - lr*grad``;  ``theta += v``
* Nesterov:  ``v = mu*v - lr*grad``;  ``theta += mu*v - lr*grad``
  (the form used by scikit-learn and PyTorch, applied at the current point).
* Adam (Kingma & Ba, the "efficient" form of their section 2, as in
  scikit-learn): ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g*g``;
  ``theta -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)`` at step t.
* L2 penalty ``0.5*coef*sum(W**2)`` (weights only, never biases): its
  gradient ``coef*W`` is added to ``grad`` before the update.
"""
import numpy as np
from numba import prange, uint64

from .._config import jit, jit_parallel

# A few large contiguous chunks: one per thread or so. (4096-element chunks
# ran 4x slower: the signed, min()-bounded inner loop did not vectorise.)
_NCHUNK = 4


@jit
def _chunk(n, c):
    """Start (unsigned) and length of chunk c of range(n)."""
    step = (n + _NCHUNK - 1) // _NCHUNK
    s = min(n, c * step)
    return uint64(s), uint64(min(n, s + step) - s)


@jit_parallel
def sgd_update(theta, grad, lr):
    for c in prange(_NCHUNK):
        s, w = _chunk(theta.shape[0], c)
        for i in range(w):
            theta[s + i] -= lr * grad[s + i]


@jit_parallel
def momentum_update(theta, grad, vel, lr, mu, nesterov):
    for c in prange(_NCHUNK):
        s, w = _chunk(theta.shape[0], c)
        if nesterov:
            for i in range(w):
                v = mu * vel[s + i] - lr * grad[s + i]
                vel[s + i] = v
                theta[s + i] += mu * v - lr * grad[s + i]
        else:
            for i in range(w):
                v = mu * vel[s + i] - lr * grad[s + i]
                vel[s + i] = v
                theta[s + i] += v


@jit_parallel
def adam_update(theta, grad, m, v, lr_t, b1, b2, eps):
    """One Adam step with the bias-corrected step size ``lr_t`` (computed
    once per step by the caller, in float64)."""
    one = theta.dtype.type(1)
    for c in prange(_NCHUNK):
        s, w = _chunk(theta.shape[0], c)
        for i in range(w):
            g = grad[s + i]
            mi = b1 * m[s + i] + (one - b1) * g
            vi = b2 * v[s + i] + (one - b2) * g * g
            m[s + i] = mi
            v[s + i] = vi
            theta[s + i] -= lr_t * mi / (np.sqrt(vi) + eps)


@jit
def l2_backward(theta, grad, sizes, poff, coef):
    """``grad_W += coef * W`` for every layer's weights (biases are not
    penalised); returns ``sum(W**2)`` in float64 for the loss."""
    sq = 0.0
    for l in range(sizes.shape[0] - 1):
        s = uint64(poff[l])
        w = uint64(sizes[l] * sizes[l + 1])
        for i in range(w):
            p = theta[s + i]
            grad[s + i] += coef * p
            sq += np.float64(p) * np.float64(p)
    return sq
