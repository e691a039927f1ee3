"""Inverted dropout on hidden-layer outputs, with masks hashed from a counter.

A unit is kept with probability ``1 - rate`` and then scaled by
``1 / (1 - rate)``, so a layer's expected output is the same in training
and prediction (which never drops). Whether unit ``j`` of batch row ``r``
in layer ``l`` is kept is a hash of (the batch's key, ``l``, the cell
``r * N + j``):
the masks are the same however the batch's rows are split over threads, so
a run repeats exactly whatever the thread count. The batch key comes from
the fit's seed and the optimizer's step count (``batch_key``). The forward
writes each cell's mask to a byte buffer (``Work.mbuf``) that the backward
reads: recomputing the hash there doubled the masks' cost.

The backward needs the activation's derivative at the layer's output
before dropout, ``y = y' * (1 - rate)`` for a kept unit (``y'`` is what the
buffer holds): exact for relu-like activations, within a rounding of y for
the others.
"""
import numpy as np

from .._config import jit
from .activations import act_grad
from .rng import GOLDEN_GAMMA, splitmix64_mix

_LAYER_GAMMA = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_HIGH = np.uint64(32)
_SHIFT = np.uint64(29)
TWO32 = 4294967296.0  # a rate r drops cells whose hash's high 32 bits are below r * 2**32


@jit
def batch_key(seed, step):
    """The mask key of the batch trained at optimizer step ``step``."""
    return splitmix64_mix(np.uint64(seed) + np.uint64(step) * GOLDEN_GAMMA)


@jit
def layer_key(key, l):
    return splitmix64_mix(np.uint64(key) + np.uint64(l + 1) * _LAYER_GAMMA)


@jit
def threshold(rate):
    return np.uint64(rate * TWO32)


@jit
def cell_bits(key, cell):
    """The mask hash of a cell (row * N + column): two multiply-xorshift
    rounds of (key, cell); its high 32 bits decide."""
    x = (key ^ cell) * _M1
    return (x ^ (x >> _SHIFT)) * _M2


# The loops below are plain for-loops over the cells with the hash written
# out and the mask a factor: with cell_bits called (not inlined from
# another cached function) they ran ~9 ns a cell, written out ~1 ns.
@jit
def dropout_forward(Y, M, r0, rate, key):
    """Y (rows r0.. of the batch, N units) in place: kept units times
    1/(1-rate), dropped ones 0; M (the same shape, uint8) gets 1 where a
    unit is kept, else 0. ``key``: :func:`layer_key`."""
    if rate <= 0:
        return
    thr = threshold(rate)
    dt = Y.dtype.type
    f = dt(1.0 / (1.0 - rate))
    zero = dt(0)
    N = Y.shape[1]
    for i in range(Y.shape[0]):
        c0 = np.uint64((r0 + i) * N)
        for j in range(N):
            x = (key ^ (c0 + np.uint64(j))) * _M1  # cell_bits, written out (see above)
            x = (x ^ (x >> _SHIFT)) * _M2
            kept = (x >> _HIGH) >= thr
            M[i, j] = np.uint8(kept)
            Y[i, j] = Y[i, j] * (f if kept else zero)


@jit
def dropout_backward(dY, Y, M, rate, act):
    """dY = dE/dY' (Y' the dropped-out output Y holds) in place into the
    gradient with respect to the layer's pre-activation: kept units (M, as
    :func:`dropout_forward` wrote it) times act'(y) / (1-rate) with
    y = Y' * (1-rate), dropped ones 0."""
    dt = dY.dtype.type
    f = dt(1.0 / (1.0 - rate))
    keep = dt(1.0 - rate)
    zero = dt(0)
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            m = f if M[i, j] != 0 else zero
            dY[i, j] = dY[i, j] * (m * act_grad(Y[i, j] * keep, act))
