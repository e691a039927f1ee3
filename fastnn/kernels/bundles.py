"""The kernels' argument bundles: named tuples with shape comments.

Numba passes a ``NamedTuple`` of arrays and scalars to compiled code at no
cost (it is a struct of its fields), so drivers read ``work.hbuf`` and
``sp.colptr`` instead of unpacking positional tuples. Each bundle is built
in one place: :mod:`fastnn.engine.memory` (``Model``, ``Work``), :mod:`fastnn.engine.inputs`
(``SparseInput``) and :mod:`fastnn.engine.training` (``TrainData``, ``Optimizer``,
``OptimizerState``, ``BatchBuffers``).
"""
from typing import NamedTuple

import numpy as np
from numba.extending import register_jitable


class Model(NamedTuple):
    """A network's parameters and the layout to find each layer in them."""
    theta: np.ndarray  # (n_params,) float: W_l (sizes[l] x sizes[l+1], row-major), then b_l
    sizes: np.ndarray  # (L+1,) int64: layer widths, input first
    poff: np.ndarray   # (L+1,) int64: offset of W_l in theta; poff[L] = n_params
    acts: np.ndarray   # (L,) int64: activation code of each layer; the last is IDENTITY


class Work(NamedTuple):
    """Activation and gradient buffers for batches of up to ``cap`` rows."""
    hbuf: np.ndarray   # (cap * hoff[L],): layer l's output (rows x sizes[l+1]) at cap*hoff[l]
    dbuf: np.ndarray   # same layout: dE/dU of each layer; 64-byte aligned
    hoff: np.ndarray   # (L+1,) int64: prefix sums of sizes[1:]
    cap: int           # rows the buffers hold
    wt: np.ndarray     # scratch for one transposed hidden-layer weight matrix (two if split)
    wa: np.ndarray     # aligned scratch: the sparse first layer's padded copy of W (else empty)
    da: np.ndarray     # aligned scratch: its padded copy of dU, then (split) the threads'
    #                    partial products of its forward (else empty)
    bp: np.ndarray     # scratch for packing the wide matmuls' operands
    gs: np.ndarray     # (n_params,): a row-split batch's second-half gradient, else empty
    ubuf: np.ndarray   # hbuf's layout: the pre-activations of layers whose activation's
    #                    derivative needs them (GELU, SiLU); empty when none does
    mbuf: np.ndarray   # uint8, hbuf's layout: the batch's dropout masks (1: kept); empty
    #                    outside training


class SparseInput(NamedTuple):
    """Training inputs in CSR form, and each mini-batch's CSC form (all
    empty when the first layer runs dense)."""
    indptr: np.ndarray   # (n+1,) int64: row i's non-zeros are indptr[i]:indptr[i+1]
    indices: np.ndarray  # (nnz,) int32: their columns
    values: np.ndarray   # (nnz,) float: their values
    base: np.ndarray     # (n_batches+1,) int64: first CSC slot of each batch
    colptr: np.ndarray   # (n_batches, d+1) int64: column k of batch b = colptr[b,k]:colptr[b,k+1]
    rowpos: np.ndarray   # (nnz,) int32: row of each CSC slot within its batch
    cvals: np.ndarray    # (nnz,) float: value of each CSC slot


def no_sparse(dtype):
    """The :class:`SparseInput` of a dense first layer: every array empty.
    Not None: both kinds of first layer then reach the compiled drivers as
    one argument type, so each driver is compiled once, not once per kind."""
    dtype = np.dtype(dtype)
    if dtype not in _NO_SPARSE:
        e64, e32, ev = np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, dtype)
        _NO_SPARSE[dtype] = SparseInput(e64, e32, ev, e64, np.empty((0, 0), np.int64), e32, ev)
    return _NO_SPARSE[dtype]


_NO_SPARSE = {}


@register_jitable
def is_sparse(sp):
    """Whether the first layer reads its rows from ``sp`` (CSR), not
    :func:`no_sparse`."""
    return sp.indptr.shape[0] > 0


class TrainData(NamedTuple):
    """One fit's training rows and the epoch's visiting order."""
    X: np.ndarray        # (n, d) float, C-contiguous (not read when the first layer is sparse)
    labels: np.ndarray   # (n,) int64 class labels (softmax head), else empty
    T: np.ndarray        # (n, K) float targets (sigmoid/identity heads), else (0, K)
    w: np.ndarray        # (n,) float64 sample weights, or empty (every row weighs 1)
    order: np.ndarray    # (n,) int64: batch j is rows order[j*batch_size:(j+1)*batch_size]
    batch_size: int
    shuffle: bool        # gather batches through BatchBuffers (else zero-copy slices)


class BatchBuffers(NamedTuple):
    """Where a shuffled batch is gathered (empty when not needed)."""
    x: np.ndarray        # (batch_size, d) float (dense first layer only)
    labels: np.ndarray   # (batch_size,) int64
    T: np.ndarray        # (batch_size, K) float
    w: np.ndarray        # (batch_size,) float64 (with sample weights)


class EpochPlan(NamedTuple):
    """Whole epochs for one ``train_batches`` call (``rates`` empty: that
    call runs batches of the current epoch instead)."""
    rates: np.ndarray      # (k,) float64: the learning rate of each epoch
    sums: np.ndarray       # (k, 3) float64: each epoch's loss sum, penalty sum, rows right
    #                        (no rates: (1, 3), the running sums of the current epoch)
    status: np.ndarray     # (2,) int64: epochs run, whether the last one diverged
    rng_state: np.ndarray  # the shuffle stream (see epoch_begin)
    csc_ready: bool        # the sparse batches' CSC blocks follow the order already


# Optimizer kinds.
SGD = 0
ADAM = 1
RMSPROP = 2
ADAGRAD = 3
ADAMW = 4


class Optimizer(NamedTuple):
    """Update rule settings for one epoch (``lr`` is set per epoch)."""
    kind: int            # SGD, ADAM, RMSPROP, ADAGRAD or ADAMW
    lr: float
    momentum: float      # SGD: 0 = plain SGD
    nesterov: bool
    beta1: float         # Adam, AdamW
    beta2: float         # Adam, AdamW; RMSprop's smoothing constant (torch's alpha)
    eps: float
    l2: float            # penalty 0.5*l2*sum(W**2) per batch (weights only)
    l2_per_row: bool     # l2 / batch rows, or / the batch's sample weights (scikit-learn's alpha)
    decay: float         # AdamW: decoupled weight decay, theta *= 1 - lr*decay each step
    dropout: np.ndarray  # (L,) float64: dropout rate of each layer's output (the last 0);
    #                      empty: none (see kernels/dropout.py)
    drop_seed: np.uint64  # the dropout masks' seed
    clip: float          # clip the gradient's global L2 norm to this (0: no clipping)


class Loss(NamedTuple):
    """The output head: the loss the training drivers take the gradient of,
    and the prediction (:mod:`.losses`)."""
    code: int            # losses code (SOFTMAX_CE, ...); -1: predict the logits
    delta: float         # HUBER: where the loss turns from quadratic to linear
    smoothing: float     # SOFTMAX_CE, SIGMOID_BCE: label smoothing (0: none)


class OptimizerState(NamedTuple):
    """What the update rule carries from step to step."""
    vel: np.ndarray      # (n_params,): momentum velocity, or Adam's first moment
    sq: np.ndarray       # (n_params,): Adam's / RMSprop's second moment, Adagrad's sum of
    #                      squares (empty for SGD)
    step: np.ndarray     # (1,) int64: updates made
