"""In-place parameter updates over the flat parameter vector.

All parameters of a network live in one contiguous vector ``theta`` (the
layers' W and b are views into it), and their gradients in ``grad`` with the
same layout, so one loop updates every layer.

* SGD:       ``theta -= lr * grad``
* momentum:  ``v = mu*v - lr*grad``;  ``theta += v``
* Nesterov:  ``v = mu*v - lr*grad``;  ``theta += mu*v - lr*grad``
  (the form used by scikit-learn and PyTorch, applied at the current point).
"""
from numba import prange

from .._config import jit_parallel

_CHUNK = 4096  # elements per parallel task: large enough to amortise dispatch


@jit_parallel
def sgd_update(theta, grad, lr):
    n = theta.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            theta[i] -= lr * grad[i]


@jit_parallel
def momentum_update(theta, grad, vel, lr, mu, nesterov):
    n = theta.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            v = mu * vel[i] - lr * grad[i]
            vel[i] = v
            if nesterov:
                theta[i] += mu * v - lr * grad[i]
            else:
                theta[i] += v
