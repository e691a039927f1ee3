"""Fully connected layer kernels: ``y = act(x @ W + b)`` and its backward.

Forward keeps only the layer's output ``y``; every supported activation's
derivative can be written from ``y`` (see :mod:`.activations`), so no
pre-activation buffer is needed.
"""
import numpy as np

from .._config import jit
from .activations import IDENTITY
from .matmul import gemm_nn_fused, gemm_tn, transpose_into


@jit
def dense_forward(X, W, b, act, Y):
    """Y = act(X @ W + b), one pass: bias and activation run in the matmul
    epilogue while each output tile is still in registers.

    X (B, K), W (K, N), b (N,), Y (B, N) preallocated.
    """
    gemm_nn_fused(X, W, Y, b, act, np.empty((0, 0), Y.dtype), IDENTITY)


@jit
def bias_backward(dU, db):
    """db = column sums of dU (serial: B*N adds, too small to parallelise)."""
    for j in range(db.shape[0]):
        db[j] = 0
    for i in range(dU.shape[0]):
        for j in range(db.shape[0]):
            db[j] += dU[i, j]


@jit
def dense_backward(dU, X, W, dW, db, dX, WT, act_in):
    """Backward of ``U = X @ W + b`` given ``dU = dE/dU``.

    Writes ``dW = X.T @ dU`` and ``db = sum_rows(dU)``. If ``dX.size > 0``
    also writes ``dX = (dU @ W.T) * act_in'(X)``: the gradient with respect
    to the *pre-activation* of the layer below, whose output is ``X`` (pass
    ``act_in=IDENTITY`` for the plain ``dE/dX``). Fusing that derivative into
    the matmul epilogue saves a pass over ``dX``. ``WT`` is (N, K) scratch.

    Each kernel writes disjoint output tiles, so no two threads ever
    accumulate into the same cell.
    """
    gemm_tn(X, dU, dW)
    bias_backward(dU, db)
    if dX.shape[0] > 0:
        transpose_into(W, WT)
        gemm_nn_fused(dU, WT, dX, np.empty(0, dX.dtype), IDENTITY, X, act_in)
