"""In-place parameter updates over the flat parameter vector.

All parameters of a network live in one contiguous vector ``theta`` (the
layers' W and b are views into it), and their gradients in ``grad`` with the
same layout, so one loop updates every layer.

* SGD:       ``theta -= lr * grad``
* momentum:  ``v = mu*v - lr*grad``;  ``theta += v``
* Nesterov:  ``v = mu*v - lr*grad``;  ``theta += mu*v - lr*grad``
  (the form used by scikit-learn and PyTorch, applied at the current point).
"""
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
