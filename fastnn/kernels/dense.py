"""Fully connected layer kernels: ``y = act(x @ W + b)`` and its backward.

Forward keeps the layer's output ``y``, from which most activations'
derivatives follow (see :mod:`.activations`); GELU and SiLU layers keep
their pre-activation too (:func:`activate_keeping_input`,
:func:`input_grad`).
"""
import numpy as np

from numba import prange

from .._config import jit, jit_inline, jit_parallel
from .activations import IDENTITY, act_forward, act_grad_input
from .intrinsics import fp_mode, swap_fp_mode
from .matmul import (gemm_nn_fused_into, gemm_nt_fused_into, gemm_tn_into, gemm_tn_serial,
                     input_grad_serial, tile_macs, transpose_serial)


@jit_inline
def dense_forward(X, W, b, act, Y, bp):
    """Y = act(X @ W + b), one pass: bias and activation run in the matmul
    epilogue while each output tile is still in registers.

    X (B, K), W (K, N), b (N,), Y (B, N) preallocated; ``bp`` is packing
    scratch (see :func:`.matmul.gemm_nn_fused_into`).
    """
    gemm_nn_fused_into(X, W, Y, b, act, np.empty((0, 0), Y.dtype), IDENTITY, bp)


@jit
def activate_keeping_input(Y, U, act):
    """U = Y (the layer's pre-activation), then Y = act(U), in place."""
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            u = Y[i, j]
            U[i, j] = u
            Y[i, j] = act_forward(u, act)


@jit
def input_grad(dY, U, act):
    """dY *= act'(U) in place: dE/dY into dE/dU from the kept pre-activation."""
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            dY[i, j] = dY[i, j] * act_grad_input(U[i, j], act)


@jit
def bias_backward(dU, db):
    """db = column sums of dU (serial: B*N adds, too small to parallelise)."""
    for j in range(db.shape[0]):
        db[j] = 0
    for i in range(dU.shape[0]):
        for j in range(db.shape[0]):
            db[j] += dU[i, j]


# Up to this size (multiply-adds of each product) the backward's two
# products run side by side, one per thread, instead of one after the
# other, each split over the threads: below it the split products spend
# more on starting and joining than the second thread saves (the classic
# 100-50 layer's backward is the case in point).
TWO_TASK_MAX_MACS = 2_000_000


@jit_inline
def dense_backward(dU, X, W, dW, db, dX, WT, act_in, bp):
    """Backward of ``U = X @ W + b`` given ``dU = dE/dU``.

    Writes ``dW = X.T @ dU`` and ``db = sum_rows(dU)``. If ``dX.size > 0``
    also writes ``dX = (dU @ W.T) * act_in'(X)``: the gradient with respect
    to the *pre-activation* of the layer below, whose output is ``X`` (pass
    ``act_in=IDENTITY`` for the plain ``dE/dX``). Fusing that derivative into
    the matmul epilogue saves a pass over ``dX``. ``WT`` is (N, K) scratch,
    ``bp`` packing scratch.

    Each kernel writes disjoint output tiles, so no two threads ever
    accumulate into the same cell.
    """
    B, K = X.shape
    N = dU.shape[1]
    if (dX.shape[0] > 0 and tile_macs(K, B, N) <= TWO_TASK_MAX_MACS
            and tile_macs(B, N, K) <= TWO_TASK_MAX_MACS):
        # Two small, independent products: one per thread, each serial.
        # (dX is on the critical path to the next layer, dW is not; split
        # by rows each would pay a parallel start per product.)
        _backward_two_tasks(dU, X, W, dW, db, dX, WT, act_in)
        return
    gemm_tn_into(X, dU, dW, bp)
    bias_backward(dU, db)
    if dX.shape[0] > 0:
        gemm_nt_fused_into(dU, W, dX, np.empty(0, dX.dtype), IDENTITY, X, act_in, WT, bp)


@jit_parallel
def _backward_two_tasks(dU, X, W, dW, db, dX, WT, act_in):
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for task in prange(2):
        own = swap_fp_mode(fp)
        if task == 0:
            gemm_tn_serial(X, dU, dW)
            bias_backward(dU, db)
        else:
            # (Serial: a parallel transpose started inside this task would
            # start a nested thread team per call, ~1 ms each.)
            transpose_serial(W, WT)
            input_grad_serial(dU, WT, dX, X, act_in)
        swap_fp_mode(own)
