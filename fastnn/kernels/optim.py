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
* AdamW (``torch.optim.AdamW``): ``theta *= 1 - lr*decay``, then Adam
  with torch's epsilon, ``m_hat / (sqrt(v_hat) + eps)``, i.e. the form
  above with ``eps * sqrt(1-b2^t)``.
* RMSprop (``torch.optim.RMSprop``, no momentum, not centred):
  ``v = b2*v + (1-b2)*g*g``; ``theta -= lr * g / (sqrt(v) + eps)``.
* Adagrad (``torch.optim.Adagrad``): ``v += g*g``;
  ``theta -= lr * g / (sqrt(v) + eps)``.
* L2 penalty ``0.5*coef*sum(W**2)`` (weights only, never biases): its
  gradient ``coef*W`` is added to ``grad`` before the update.
* Clipping by global norm (``torch.nn.utils.clip_grad_norm_``): the loss
  gradient times ``min(1, max_norm / (||grad|| + 1e-6))``, before the L2
  term (torch's ``weight_decay`` acts inside the optimizer, after clipping).

SGD and Adam (the classic runs and scikit-learn's solvers) split long
vectors over the threads; the others update on the calling thread.
"""
import numpy as np
from numba import prange, uint64

from .._config import jit, jit_parallel
from .bundles import ADAGRAD, ADAMW, RMSPROP
from .intrinsics import fp_mode, swap_fp_mode

# A few large contiguous chunks: one per thread or so. (4096-element chunks
# ran 4x slower: the signed, min()-bounded inner loop did not vectorise.)
_NCHUNK = 4


@jit
def _chunk(n, c):
    """Start (unsigned) and length of chunk c of range(n)."""
    step = (n + _NCHUNK - 1) // _NCHUNK
    s = min(n, c * step)
    return uint64(s), uint64(min(n, s + step) - s)


# Vectors up to this long are updated on the calling thread: the pool's
# region pulls every chunk across the cores (the gradient was written on
# one, the parameters are read by both next batch): Adam on digits' 3760
# parameters, within training, 7 us on one thread, 21 us on two.
SERIAL_MAX = 16384


@jit
def sgd_range(theta, grad, lr, s, w):
    for i in range(w):
        theta[s + i] -= lr * grad[s + i]


@jit
def momentum_range(theta, grad, vel, lr, mu, nesterov, s, w):
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


@jit
def adam_range(theta, grad, m, v, lr_t, b1, b2, eps, s, w):
    one = theta.dtype.type(1)
    for i in range(w):
        g = grad[s + i]
        mi = b1 * m[s + i] + (one - b1) * g
        vi = b2 * v[s + i] + (one - b2) * g * g
        m[s + i] = mi
        v[s + i] = vi
        theta[s + i] -= lr_t * mi / (np.sqrt(vi) + eps)


@jit
def adamw_range(theta, grad, m, v, keep, lr_t, b1, b2, eps_t, s, w):
    one = theta.dtype.type(1)
    for i in range(w):
        g = grad[s + i]
        mi = b1 * m[s + i] + (one - b1) * g
        vi = b2 * v[s + i] + (one - b2) * g * g
        m[s + i] = mi
        v[s + i] = vi
        theta[s + i] = theta[s + i] * keep - lr_t * mi / (np.sqrt(vi) + eps_t)


@jit
def rmsprop_range(theta, grad, v, lr, b2, eps, s, w):
    one = theta.dtype.type(1)
    for i in range(w):
        g = grad[s + i]
        vi = b2 * v[s + i] + (one - b2) * g * g
        v[s + i] = vi
        theta[s + i] -= lr * g / (np.sqrt(vi) + eps)


@jit
def adagrad_range(theta, grad, v, lr, eps, s, w):
    for i in range(w):
        g = grad[s + i]
        vi = v[s + i] + g * g
        v[s + i] = vi
        theta[s + i] -= lr * g / (np.sqrt(vi) + eps)


@jit
def other_range(theta, grad, state, opt, lr, s, w):
    """Entries ``s..s+w-1`` of an RMSprop, Adagrad or AdamW step (``lr``:
    AdamW's bias-corrected step size, see ``train.step_settings``)."""
    dt = theta.dtype.type
    if opt.kind == ADAMW:
        t = state.step[0]
        eps_t = opt.eps * np.sqrt(1.0 - opt.beta2 ** t)
        keep = 1.0 - opt.lr * opt.decay
        adamw_range(theta, grad, state.vel, state.sq, dt(keep), dt(lr), dt(opt.beta1),
                    dt(opt.beta2), dt(eps_t), s, w)
    elif opt.kind == RMSPROP:
        rmsprop_range(theta, grad, state.sq, dt(lr), dt(opt.beta2), dt(opt.eps), s, w)
    elif opt.kind == ADAGRAD:
        adagrad_range(theta, grad, state.sq, dt(lr), dt(opt.eps), s, w)


@jit_parallel
def _sgd_chunks(theta, grad, lr):
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for c in prange(_NCHUNK):
        own = swap_fp_mode(fp)
        s, w = _chunk(theta.shape[0], c)
        sgd_range(theta, grad, lr, s, w)
        swap_fp_mode(own)


@jit_parallel
def _momentum_chunks(theta, grad, vel, lr, mu, nesterov):
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for c in prange(_NCHUNK):
        own = swap_fp_mode(fp)
        s, w = _chunk(theta.shape[0], c)
        momentum_range(theta, grad, vel, lr, mu, nesterov, s, w)
        swap_fp_mode(own)


@jit_parallel
def _adam_chunks(theta, grad, m, v, lr_t, b1, b2, eps):
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for c in prange(_NCHUNK):
        own = swap_fp_mode(fp)
        s, w = _chunk(theta.shape[0], c)
        adam_range(theta, grad, m, v, lr_t, b1, b2, eps, s, w)
        swap_fp_mode(own)


@jit
def sgd_update(theta, grad, lr):
    if theta.shape[0] <= SERIAL_MAX:
        sgd_range(theta, grad, lr, uint64(0), uint64(theta.shape[0]))
    else:
        _sgd_chunks(theta, grad, lr)


@jit
def momentum_update(theta, grad, vel, lr, mu, nesterov):
    if theta.shape[0] <= SERIAL_MAX:
        momentum_range(theta, grad, vel, lr, mu, nesterov, uint64(0), uint64(theta.shape[0]))
    else:
        _momentum_chunks(theta, grad, vel, lr, mu, nesterov)


@jit
def adam_update(theta, grad, m, v, lr_t, b1, b2, eps):
    """One Adam step with the bias-corrected step size ``lr_t`` (computed
    once per step by the caller, in float64)."""
    if theta.shape[0] <= SERIAL_MAX:
        adam_range(theta, grad, m, v, lr_t, b1, b2, eps, uint64(0), uint64(theta.shape[0]))
    else:
        _adam_chunks(theta, grad, m, v, lr_t, b1, b2, eps)


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


@jit
def clip_factor(sq, max_norm):
    """What ``clip_grad_norm_`` multiplies a gradient of squared norm ``sq``
    by (at most 1)."""
    return min(1.0, max_norm / (np.sqrt(sq) + 1e-6))


@jit
def sum_squares(x, s, w):
    """sum(x[s:s+w]**2) in float64."""
    sq = 0.0
    for i in range(w):
        v = np.float64(x[s + i])
        sq += v * v
    return sq


@jit
def scale_range(x, f, s, w):
    """x[s:s+w] *= f (in x's precision)."""
    k = x.dtype.type(f)
    for i in range(w):
        x[s + i] *= k


@jit
def clip_global_norm(grad, max_norm):
    """Scale ``grad`` in place to a global L2 norm of at most ``max_norm``."""
    n = uint64(grad.shape[0])
    f = clip_factor(sum_squares(grad, uint64(0), n), max_norm)
    if f < 1.0:
        scale_range(grad, f, uint64(0), n)
