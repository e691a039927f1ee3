"""Whole-network drivers: forward, backward, one update, runs of batches.

Memory layout (sizes and allocation in :mod:`fastnn.engine.memory`; the bundles are
defined with shape comments in :mod:`.bundles`):

* ``model.theta``: every parameter in one flat vector; layer ``l`` holds
  ``W_l`` (``sizes[l] x sizes[l+1]``, row-major) at ``poff[l]`` followed by
  ``b_l``. ``grad`` and the optimizer state share this layout.
* ``work.hbuf``: the outputs of every layer for up to ``cap`` rows; layer
  ``l``'s output (``rows x sizes[l+1]``) starts at ``cap * hoff[l]``.
  ``work.dbuf`` holds ``dE/dU`` of each layer in the same layout, and
  ``work.ubuf`` (training GELU or SiLU layers only) their pre-activations.

Views into these flat buffers are ``reshape``s of contiguous slices: free,
and the last, shorter mini-batch uses the same buffers. ``acts[l]`` is layer
l's activation code; the last is IDENTITY (the output non-linearity belongs
to the loss ``head``).
"""
import numpy as np

from numba import prange, uint64

from .._config import AVX512, FASTMATH_NO_REASSOC, jit, jit_inline, jit_parallel
from .activations import IDENTITY, uses_input
from .dense import (activate_keeping_input, bias_backward, dense_backward, dense_forward,
                    input_grad)
from .dropout import batch_key, dropout_backward, dropout_forward, layer_key
from .intrinsics import fp_mode, swap_fp_mode
from .losses import batch_loss_forward_backward, head_output, loss_forward_backward
from .bundles import ADAM, ADAMW, SGD, Optimizer, SparseInput, is_sparse
from .optim import (adam_range, adam_update, clip_factor, clip_global_norm, l2_backward,
                    momentum_range, momentum_update, other_range, scale_range, sgd_range,
                    sgd_update, sum_squares)
from .rng import splitmix64
from .layout import (ALIGN_ELEMENTS, GATHER_MR, INFER_ROWS, NTASK, ROW_GATHER_NV,
                     ROW_GATHER_RATIO, SPARSE_GROUP, SPLIT_MIN_ROWS, VW32, VW64)
from .layout import padded_width_jit as padded_width
from .matmul import (gemm_nn_fused_serial, gemm_tn_into, gemm_tn_serial, input_grad_serial,
                     transpose_serial)
from .sparse import (active_columns, add_partials, batch_csc_build, batch_nnz_offsets,
                     column_scratch, copy_rows, copy_rows_auto, first_at_least,
                     gathered_first_layer, gathered_row, is_aligned, pad_rows_into,
                     sparse_dense_forward, sparse_grad_step_tiles, sparse_partial_rows,
                     sparse_weight_grad)
from .team import (end_part, first_part, team_finish, team_handover, team_join, team_step,
                   team_sync)


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
def keeps_input(work, act):
    """Whether a layer with activation ``act`` keeps its pre-activation in
    ``work.ubuf`` (training buffers, GELU or SiLU)."""
    return work.ubuf.shape[0] > 0 and uses_input(act)


@jit
def needs_input(work, act):
    """Whether the backward through activation ``act`` reads the kept
    pre-activation; an error if ``work`` has none."""
    if not uses_input(act):
        return False
    if work.ubuf.shape[0] == 0:
        raise ValueError("GELU/SiLU backward without pre-activations: make the work "
                         "buffers with keep_input=True")
    return True


@jit
def network_forward(model, X, rows, sp, work, drop, key):
    """Forward pass of one batch; returns the logits view.

    Dense: the batch is ``X``. Sparse: the batch is rows ``rows`` of the CSR
    matrix in ``sp`` (``X`` is not read). ``drop``: each layer's dropout
    rate (empty: none, as in evaluation and prediction), with the batch's
    mask ``key`` (:mod:`.dropout`)."""
    sizes = model.sizes
    n = rows.shape[0] if is_sparse(sp) else X.shape[0]
    H = X
    for l in range(sizes.shape[0] - 1):
        Y = layer_buf(work.hbuf, sizes, work.hoff, work.cap, l, n)
        W = layer_W(model.theta, sizes, model.poff, l)
        b = layer_b(model.theta, sizes, model.poff, l)
        keep = keeps_input(work, model.acts[l])
        act = IDENTITY if keep else model.acts[l]
        if l == 0 and is_sparse(sp):
            if not is_aligned(W):
                W = pad_rows_into(W, work.wa)
            sparse_dense_forward(sp.indptr, sp.indices, sp.values, rows, W, b, act, Y)
        else:
            dense_forward(H, W, b, act, Y, work.bp)
        if keep:
            activate_keeping_input(Y, layer_buf(work.ubuf, sizes, work.hoff, work.cap, l, n),
                                   model.acts[l])
        if drop.shape[0] > 0 and drop[l] > 0:
            dropout_forward(Y, layer_buf(work.mbuf, sizes, work.hoff, work.cap, l, n),
                            np.int64(0), drop[l], layer_key(key, l))
        H = Y
    return H


@jit
def network_backward(model, X, batch, sp, grad, work, n, drop, key):
    """Backward pass of an ``n``-row batch; expects dE/dZ of the last layer
    in ``dbuf`` and the forward's outputs in ``hbuf``. Writes every gradient
    into ``grad``. ``batch`` is the batch's number (selects its CSC block
    when the first layer is sparse). ``drop``, ``key``: the forward's
    dropout (:func:`network_forward`)."""
    sizes, poff = model.sizes, model.poff
    hoff, cap = work.hoff, work.cap
    for l in range(sizes.shape[0] - 2, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dU = layer_buf(work.dbuf, sizes, hoff, cap, l, n)
        W = layer_W(model.theta, sizes, poff, l)
        dW = layer_W(grad, sizes, poff, l)
        db = layer_b(grad, sizes, poff, l)
        if l > 0:
            Hin = layer_buf(work.hbuf, sizes, hoff, cap, l - 1, n)
            dX = layer_buf(work.dbuf, sizes, hoff, cap, l - 1, n)
            WT = work.wt[:n_out * n_in].reshape((n_out, n_in))
            a = model.acts[l - 1]
            pre = needs_input(work, a)
            dropped = drop.shape[0] > 0 and drop[l - 1] > 0
            # With a mask or an act' that needs the pre-activation, the
            # matmul gives plain dE/dY' and they follow; else act' is fused
            # into its epilogue. (One call site: each inlines the products'
            # whole dispatch, and compiles it again.)
            dense_backward(dU, Hin, W, dW, db, dX, WT,
                           IDENTITY if dropped or pre else a, work.bp)
            if dropped:
                dropout_backward(dX, Hin, layer_buf(work.mbuf, sizes, hoff, cap, l - 1, n),
                                 drop[l - 1], IDENTITY if pre else a)
            if pre:
                input_grad(dX, layer_buf(work.ubuf, sizes, hoff, cap, l - 1, n), a)
        elif is_sparse(sp):
            if not is_aligned(dU):
                dU = pad_rows_into(dU, work.da)
            sparse_weight_grad(sp.colptr[batch], sp.rowpos, sp.cvals, dU, dW)
            bias_backward(dU, db)
        else:
            # No gradient w.r.t. the input data: dense_backward's weight
            # and bias part only (without its input-gradient products).
            gemm_tn_into(X, dU, dW, work.bp)
            bias_backward(dU, db)


@jit_inline
def forward_backward(model, head, X, rows, batch, labels, T, w, sp, grad, work, drop, key):
    """Loss and all gradients for one mini-batch; returns (loss, n_correct)."""
    sizes = model.sizes
    Z = network_forward(model, X, rows, sp, work, drop, key)
    n = Z.shape[0]
    dZ = layer_buf(work.dbuf, sizes, work.hoff, work.cap, sizes.shape[0] - 2, n)
    loss, correct = batch_loss_forward_backward(head, Z, labels, T, w, dZ)
    network_backward(model, X, batch, sp, grad, work, n, drop, key)
    return loss, correct


@jit
def forward_backward_rows(model, head, X, labels, T, w, grad, work, n, s, e, wt, sp, share,
                          drop, key):
    """:func:`forward_backward` of rows ``s..e-1`` of an ``n``-row batch
    (``X`` and the targets are the whole batch's), every product on the
    calling thread: one half of a row-split batch. Its layer outputs and
    dE/dU are the rows ``s..e-1`` of the whole batch's; ``wt`` is its own
    transpose scratch. The loss and ``grad`` are the mean over these rows.
    A sparse first layer (``sp``) adds the batch's two partial products
    (:func:`_partial_part`, in ``work.da``) for the half's rows; its
    weight gradient is left to :func:`_sparse_part` (the whole
    batch's, from the batch's CSC block): the half puts its rows of dE/dU,
    times its ``share`` of the batch, in the aligned scratch ``work.da``."""
    sizes, poff, hoff, cap = model.sizes, model.poff, work.hoff, work.cap
    L = sizes.shape[0] - 1
    dt = model.theta.dtype
    noh = np.empty((0, 0), dt)
    x = X[s:e]
    H = x
    for l in range(L):
        Y = layer_buf(work.hbuf, sizes, hoff, cap, l, n)[s:e]
        keep = keeps_input(work, model.acts[l])
        act = IDENTITY if keep else model.acts[l]
        if l == 0 and is_sparse(sp):
            P0, P1 = partial_buffers(work, sizes[1])
            add_partials(P0, P1, layer_b(model.theta, sizes, poff, 0), act, Y, s)
        else:
            gemm_nn_fused_serial(H, layer_W(model.theta, sizes, poff, l),
                                 Y, layer_b(model.theta, sizes, poff, l), act, noh,
                                 IDENTITY)
        if keep:
            activate_keeping_input(Y, layer_buf(work.ubuf, sizes, hoff, cap, l, n)[s:e],
                                   model.acts[l])
        if drop.shape[0] > 0 and drop[l] > 0:  # (rows s.. of the batch: the same masks)
            dropout_forward(Y, layer_buf(work.mbuf, sizes, hoff, cap, l, n)[s:e], s, drop[l],
                            layer_key(key, l))
        H = Y
    dZ = layer_buf(work.dbuf, sizes, hoff, cap, L - 1, n)[s:e]
    # The inline exp on dense halves only: sparse halves keep libm's
    # rounding, as whole batches and the NumPy engine do, because the
    # classic lr-0.5 MNIST run of tests/test_mnist_training.py diverges late
    # with the inline exp's.
    loss, correct = loss_forward_backward(head, H, labels[s:e] if labels.shape[0] else labels,
                                          T[s:e] if T.shape[0] else T,
                                          w[s:e] if w.shape[0] else w, dZ, not is_sparse(sp))
    for l in range(L - 1, -1, -1):
        dU = layer_buf(work.dbuf, sizes, hoff, cap, l, n)[s:e]
        Hin = x if l == 0 else layer_buf(work.hbuf, sizes, hoff, cap, l - 1, n)[s:e]
        if l == 0 and is_sparse(sp):
            # (pad columns of the scratch are never written: they stay zero)
            npad = padded_width(sizes[1])
            dUa = work.da[s * npad:e * npad].reshape((e - s, npad))
            c = dt.type(share)
            for r in range(e - s):
                for jj in range(uint64(sizes[1])):
                    dUa[r, jj] = c * dU[r, jj]
        else:
            gemm_tn_serial(Hin, dU, layer_W(grad, sizes, poff, l))
        bias_backward(dU, layer_b(grad, sizes, poff, l))
        if l > 0:
            W = layer_W(model.theta, sizes, poff, l)
            n_in, n_out = W.shape
            WT = wt[:n_out * n_in].reshape((n_out, n_in))
            transpose_serial(W, WT)
            dX = layer_buf(work.dbuf, sizes, hoff, cap, l - 1, n)[s:e]
            a = model.acts[l - 1]
            pre = needs_input(work, a)
            dropped = drop.shape[0] > 0 and drop[l - 1] > 0
            # (One call site, as in network_backward: a mask or an act'
            # reading the pre-activation follows the plain product.)
            later = dropped or pre
            input_grad_serial(dU, WT, dX, Hin[:0] if later else Hin, IDENTITY if later else a)
            if dropped:
                dropout_backward(dX, Hin, layer_buf(work.mbuf, sizes, hoff, cap, l - 1, n)[s:e],
                                 drop[l - 1], IDENTITY if pre else a)
            if pre:
                input_grad(dX, layer_buf(work.ubuf, sizes, hoff, cap, l - 1, n)[s:e], a)
    return loss, correct


@jit
def _gather_half(data, idx, s, e, xb, lb, tb, wb):
    """Rows ``s..e-1`` of a shuffled batch, gathered by the half that reads
    them: both halves gather at once. (Measured the same as gathering the
    whole batch on the calling thread first, ~67 us a digits batch either
    way; this keeps the calling thread's serial part short.)"""
    if xb.shape[0] > 0:  # (a sparse first layer reads its rows from the CSR form)
        for r in range(s, e):
            xb[r, :] = data.X[idx[r], :]
    if lb.shape[0] > 0:
        for r in range(s, e):
            lb[r] = data.labels[idx[r]]
    if tb.shape[0] > 0:
        for r in range(s, e):
            tb[r, :] = data.T[idx[r], :]
    if wb.shape[0] > 0:
        for r in range(s, e):
            wb[r] = data.w[idx[r]]


@jit_inline
def _row_part(model, head, data, idx, xb, lb, tb, wb, grad, work, out, sp, c0, c1, drop, key, t):
    """Half ``t`` of a row-split batch: the first half's gradient into
    ``grad``, the second's into ``work.gs``; ``out[t]`` = (loss,
    n_correct) of the half."""
    n = idx.shape[0]
    h = (n + 1) // 2
    size = work.wt.shape[0] // 2
    s = t * h
    e = h + t * (n - h)
    if data.shuffle:
        _gather_half(data, idx, s, e, xb, lb, tb, wb)
    g = grad if t == 0 else work.gs
    if e > s:
        loss, c = forward_backward_rows(model, head, xb, lb, tb, wb, g, work, n, s, e,
                                        work.wt[t * size:(t + 1) * size], sp,
                                        c0 if t == 0 else c1, drop, key)
        out[t, 0] = loss
        out[t, 1] = c
    else:  # the second half of a one-row batch (sparse first layers split every batch)
        g[:] = 0
        out[t, 0] = 0.0
        out[t, 1] = 0


@jit
def first_layer_split(sizes, sp, j):
    """The row of the first layer's W (sizes[0] x sizes[1] in theta) where
    split batch ``j``'s two threads divide it, in its forward product, its
    weight gradient and its update: the first row whose start is 64-byte
    aligned in theta (no cache line written by both threads) from the
    column that halves the batch's non-zeros (read off its CSC block;
    without the epoch's blocks, half way). Both threads' work is one
    product per non-zero: an even split of the rows left MNIST's top half
    47% of them."""
    K, N = sizes[0], sizes[1]
    kmid = K // 2
    if sp.colptr.shape[0] > 0:
        c = sp.colptr[j]
        half = (c[0] + c[K]) // 2
        kmid = first_at_least(c, np.int64(0), K, half)
    while kmid < K and (kmid * N) % ALIGN_ELEMENTS != 0:
        kmid += 1
    return kmid


@jit
def partial_buffers(work, N):
    """The two threads' partial first-layer products of a split batch:
    (cap, padded_width(N)) views of ``work.da`` after its dU copy."""
    npad = padded_width(N)
    cap = work.cap
    P = work.da[cap * npad:3 * cap * npad].reshape((2, cap, npad))
    return P[0], P[1]


@jit_inline
def _partial_part(sp, idx, W0, kmid, work, t):
    # Thread t: the batch's product over rows k0..k1-1 of W0, the rows it
    # updates in _sparse_part, so W never moves between the cores.
    K = W0.shape[0]
    N = work.hoff[1]
    P0, P1 = partial_buffers(work, N)
    k0 = t * kmid
    k1 = kmid + t * (K - kmid)
    sparse_partial_rows(sp.indptr, sp.indices, sp.values, idx, W0, k0, k1, N,
                        P0 if t == 0 else P1)


@jit
def step_settings(opt, state, rows):
    """Count the step in ``state``; returns (the L2 coefficient, the step
    size): ``l2`` per step, or ``l2 / rows`` with ``l2_per_row``
    (scikit-learn's ``alpha``, whose penalty is divided by the batch's
    rows, or by the sum of its sample weights: pass that as ``rows``); the
    step size is Adam's bias-corrected rate, else ``lr``."""
    coef = 0.0
    if opt.l2 > 0:
        coef = (opt.l2 / rows if rows > 0 else 0.0) if opt.l2_per_row else opt.l2
    state.step[0] += 1
    if opt.kind == ADAM or opt.kind == ADAMW:
        t = state.step[0]
        return coef, opt.lr * np.sqrt(1.0 - opt.beta2 ** t) / (1.0 - opt.beta1 ** t)
    return coef, opt.lr


@jit
def apply_update(model, grad, state, opt, rows):
    """Clip ``grad`` (``opt.clip``), add the L2 term to it and update
    ``model.theta`` in place
    (:class:`.bundles.Optimizer` settings, :class:`.bundles.OptimizerState`;
    ``rows`` as in :func:`step_settings`). Returns the penalty
    ``0.5*coef*sum(W**2)`` that the batch's loss includes.
    """
    theta = model.theta
    dt = theta.dtype.type
    coef, lr = step_settings(opt, state, rows)
    if opt.clip > 0:
        clip_global_norm(grad, opt.clip)
    penalty = 0.0
    if coef > 0:
        penalty = 0.5 * coef * l2_backward(theta, grad, model.sizes, model.poff, dt(coef))
    if opt.kind == ADAM:
        adam_update(theta, grad, state.vel, state.sq, dt(lr), dt(opt.beta1), dt(opt.beta2),
                    dt(opt.eps))
    elif opt.kind != SGD:
        other_range(theta, grad, state, opt, lr, uint64(0), uint64(theta.shape[0]))
    elif opt.momentum == 0:
        sgd_update(theta, grad, dt(lr))
    else:
        momentum_update(theta, grad, state.vel, dt(lr), dt(opt.momentum), opt.nesterov)
    return penalty


@jit
def _update_range(model, grad, gs, c0, c1, state, opt, coef, lr, lo, hi, cfrom):
    """Entries ``lo..hi-1`` of a row-split batch's update: ``grad = c0 *
    grad + c1 * gs`` (from entry ``cfrom`` on: before it ``grad`` is the
    batch's already), the L2 term (weights only), the update rule. Returns
    their sum of W**2 (float64)."""
    # (Unsigned start + count loops: signed, min()/max()-bounded ones do not
    # vectorise.)
    theta = model.theta
    dt = theta.dtype.type
    a = dt(c0)
    b = dt(c1)
    s = uint64(lo)
    w = uint64(hi - lo)
    if hi > cfrom:
        sc = uint64(max(lo, cfrom))
        for i in range(uint64(hi - sc)):
            grad[sc + i] = a * grad[sc + i] + b * gs[sc + i]
    sq = 0.0
    if coef > 0:
        k = dt(coef)
        for l in range(model.sizes.shape[0] - 1):
            w0 = max(lo, model.poff[l])
            w1 = min(hi, model.poff[l] + model.sizes[l] * model.sizes[l + 1])
            if w1 > w0:
                s0 = uint64(w0)
                for i in range(uint64(w1 - w0)):
                    p = theta[s0 + i]
                    grad[s0 + i] += k * p
                    sq += np.float64(p) * np.float64(p)
    if opt.kind == ADAM:
        adam_range(theta, grad, state.vel, state.sq, dt(lr), dt(opt.beta1), dt(opt.beta2),
                   dt(opt.eps), s, w)
    elif opt.kind != SGD:
        other_range(theta, grad, state, opt, lr, s, w)
    elif opt.momentum == 0:
        sgd_range(theta, grad, dt(lr), s, w)
    else:
        momentum_range(theta, grad, state.vel, dt(lr), dt(opt.momentum), opt.nesterov, s, w)
    return sq


@jit_inline
def _update_part(model, grad, gs, c0, c1, state, opt, coef, lr, t):
    """Half ``t`` of a dense row-split batch's update: the parameters whose
    gradient half thread t wrote (the first: grad's, read in place), in
    64-byte blocks. Returns their sum of W**2 (see :func:`_update_range`)."""
    P = model.theta.shape[0]
    mid = (P // 2) // ALIGN_ELEMENTS * ALIGN_ELEMENTS
    lo = t * mid
    hi = mid + t * (P - mid)
    return _update_range(model, grad, gs, c0, c1, state, opt, coef, lr, lo, hi, np.int64(0))


@jit
def combined_squares(grad, gs, c0, c1, cfrom):
    """Squared norm of a row-split batch's gradient: ``grad`` before entry
    ``cfrom``, ``c0 * grad + c1 * gs`` from it on (as :func:`_update_range`
    forms them)."""
    dt = grad.dtype.type
    a = dt(c0)
    b = dt(c1)
    sq = sum_squares(grad, uint64(0), uint64(cfrom))
    s = uint64(cfrom)
    for i in range(uint64(grad.shape[0] - cfrom)):
        v = np.float64(a * grad[s + i] + b * gs[s + i])
        sq += v * v
    return sq


@jit_inline
def _sparse_part(model, grad, gs, c0, c1, state, opt, coef, lr, sp, j, idx, dU, Wp, kmid, form,
                 update, scale, t):
    """Thread t's share of a sparse-first-layer split batch's update: rows
    k0..k1-1 of the first layer's weight gradient (the whole batch's, from
    its CSC block and both halves' scaled dU rows), then (``update``) the
    update of those rows of W (and, the second thread, of everything after
    W: the halves' gradients combined), and the same rows of W's padded
    copy ``Wp``; with plain SGD (no momentum, L2 or clipping) the rows of
    W take their step as their gradient leaves the registers, never stored
    (:func:`.sparse.sparse_grad_step_tiles`). Each thread keeps its rows of
    W, their gradient and optimizer state in its own cache: with a
    gradient per half (as the
    dense split) a classic batch moved ~340 KB between the cores. Returns
    the updated weights' sum of W**2."""
    sizes, poff = model.sizes, model.poff
    K, N = sizes[0], sizes[1]
    ngroup = (N + SPARSE_GROUP - 1) // SPARSE_GROUP
    P = model.theta.shape[0]
    W = layer_W(model.theta, sizes, poff, 0)
    dW = layer_W(grad, sizes, poff, 0)
    k0 = t * kmid
    k1 = kmid + t * (K - kmid)
    # Plain SGD steps W's rows as their gradient leaves the registers.
    step = (form and update and opt.kind == SGD and opt.momentum == 0 and coef == 0)
    if form:
        G = W if step else dW
        Ws = Wp if step else Wp[:0]
        rate = W.dtype.type(lr)
        if sp.colptr.shape[0] > 0:  # the epoch's CSC blocks (built once without shuffling)
            sparse_grad_step_tiles(sp.colptr[j], sp.rowpos, sp.cvals, dU, G, k0 * ngroup,
                                   k1 * ngroup, step, rate, Ws)
        else:
            _csc_rows_grad(sp, idx, k0, k1, dU, G[k0:k1], step, rate, Ws[k0:k1])
    sq = 0.0
    if update:
        if scale != 1.0:  # (clipping: these rows are the batch's gradient already)
            scale_range(grad, scale, uint64(poff[0] + k0 * N), uint64((k1 - k0) * N))
        lo = poff[0] + (K if step else k0) * N
        hi = poff[0] + k1 * N if t == 0 else P
        if hi > lo:
            sq = _update_range(model, grad, gs, c0, c1, state, opt, coef, lr, lo, hi,
                               poff[0] + K * N)
        if Wp.shape[0] > 0 and not step:
            copy_rows(W[k0:k1], Wp[k0:k1])
    return sq


@jit
def _csc_rows_grad(sp, idx, k0, k1, dU, dW, step, lr, Wp):
    """dW = rows k0..k1-1 of the weight gradient of the batch whose rows
    of the CSR form are ``idx``: its non-zeros in columns k0..k1-1 sorted
    by column (a counting sort, here, while the batch's CSR rows are in
    cache; each row's columns are sorted, so its part in k0..k1-1 is one
    run), then :func:`.sparse.sparse_grad_step_tiles` (``step``, ``lr``,
    ``Wp``: its plain SGD step on ``dW`` = W's rows). (CSC blocks built ahead for a
    shuffled epoch would read the rows from memory in shuffled order and
    write 113 MB of blocks per MNIST epoch.)"""
    nk = k1 - k0
    n = idx.shape[0]
    ind = sp.indices
    runs = np.empty((n, 2), np.int64)
    colptr = np.zeros(nk + 1, np.int64)
    for r in range(n):
        i = idx[r]
        p0 = first_at_least(ind, sp.indptr[i], sp.indptr[i + 1], k0)
        p1 = first_at_least(ind, p0, sp.indptr[i + 1], k1)
        runs[r, 0] = p0
        runs[r, 1] = p1
        for p in range(p0, p1):
            colptr[ind[p] - k0 + 1] += 1
    for k in range(nk):
        colptr[k + 1] += colptr[k]
    rowpos = np.empty(colptr[nk], np.int32)
    cvals = np.empty(colptr[nk], sp.values.dtype)
    cur = colptr[:nk].copy()
    for r in range(n):
        for p in range(runs[r, 0], runs[r, 1]):
            k = ind[p] - k0
            q = cur[k]
            rowpos[q] = r
            cvals[q] = sp.values[p]
            cur[k] = q + 1
    ngroup = (dW.shape[1] + SPARSE_GROUP - 1) // SPARSE_GROUP
    sparse_grad_step_tiles(colptr, rowpos, cvals, dU, dW, np.int64(0), nk * ngroup, step, lr,
                           Wp)


@jit_inline
def batch_views(data, bufs, sp, s, e):
    """(xb, lb, tb, wb): batch rows ``s..e-1``'s inputs, labels, targets and
    sample weights; empty when the fit has none (xb too when a sparse first
    layer reads the CSR form). Zero-copy slices without shuffling, else the
    gather buffers ``bufs`` (filled by the caller, or by a split batch's
    halves)."""
    rows = e - s
    if data.shuffle:
        xb = bufs.x[:0]
        if not is_sparse(sp):
            xb = bufs.x[:rows]
        return (xb, bufs.labels[:min(rows, bufs.labels.shape[0])],
                bufs.T[:min(rows, bufs.T.shape[0])], bufs.w[:min(rows, bufs.w.shape[0])])
    return (data.X[s:e], data.labels[s:min(e, data.labels.shape[0])],
            data.T[s:min(e, data.T.shape[0])], data.w[s:min(e, data.w.shape[0])])


@jit_inline
def splits(work, sp, rows):
    """Whether a batch of ``rows`` rows trains as two row halves
    (:func:`.layout.row_split` gave the fit its second gradient ``work.gs``;
    a sparse first layer's split fits split every batch: the whole-batch
    path needs CSC blocks, which a shuffled one lacks)."""
    return work.gs.shape[0] > 0 and (is_sparse(sp) or rows >= 2 * SPLIT_MIN_ROWS)


@jit_parallel
def split_run(data, model, head, grad, state, opt, sp, work, bufs, j0, j1, out):
    """Row-split batches ``j0..j1-1`` of the epoch (see :func:`train_batches`),
    in one parallel region: two threads meet between the phases of each
    batch (:mod:`.team`). ``out[q]`` = (mean loss, penalty, n_correct) of
    batch ``j0 + q``, as :func:`forward_backward` and :func:`apply_update`
    give them for a whole batch.

    A batch's phases: with a sparse first layer, each thread's product over
    its rows of W (:func:`_partial_part`); the two row halves, each on its
    thread (:func:`_row_part`: a half's gradient is the mean over its rows;
    the batch's is ``c0 * grad + c1 * work.gs``, the halves' shares of its
    rows or sample weights); the update, the parameters divided between the
    threads (:func:`_update_part`, or :func:`_sparse_part` forming the first
    layer's weight gradient by rows of W first, from the batch's CSC block
    or, without the epoch's blocks, its non-zeros sorted there). Clipping
    by the global norm needs the whole gradient first: each thread computes
    the factor (the same bits) after a phase that forms it."""
    nrun = j1 - j0
    bs = data.batch_size
    n = data.order.shape[0]
    sizes, poff = model.sizes, model.poff
    sparse = is_sparse(sp)
    # Each batch's settings, in order: its dropout key (from the step before
    # it is counted), the halves' shares, step size and L2 coefficient.
    c = np.empty((nrun, 4))
    keys = np.empty(nrun, np.uint64)
    kmid = np.zeros(nrun, np.int64)
    for q in range(nrun):
        j = j0 + q
        s = j * bs
        e = min(n, s + bs)
        idx = data.order[s:e]
        h = (e - s + 1) // 2
        s0 = float(h)
        s1 = float(e - s - h)
        norm = float(e - s)  # (the sum in row order, as a whole batch's)
        if data.w.shape[0] > 0:
            s0 = 0.0
            s1 = 0.0
            norm = 0.0
            for i in range(e - s):
                v = data.w[idx[i]] if data.shuffle else data.w[s + i]
                norm += v
                if i < h:
                    s0 += v
                else:
                    s1 += v
        total = s0 + s1
        c[q, 0] = s0 / total if total > 0 else 0.0
        c[q, 1] = s1 / total if total > 0 else 0.0
        keys[q] = batch_key(opt.drop_seed, state.step[0])
        coef, lr = step_settings(opt, state, norm)
        c[q, 2] = coef
        c[q, 3] = lr
        if sparse:
            kmid[q] = first_layer_split(sizes, sp, j)
    K, N = sizes[0], sizes[1]
    npad = padded_width(N)
    W0 = layer_W(model.theta, sizes, poff, 0)
    Wp = work.wa[:0].reshape((0, npad))
    if sparse and not is_aligned(W0):  # the padded copy (pad_first_layer), kept current
        Wp = work.wa[:K * npad].reshape((K, npad))
        W0 = Wp
    dU = work.da[:0].reshape((0, npad))
    if sparse:
        dU = work.da[:work.cap * npad].reshape((work.cap, npad))
    clipping = opt.clip > 0
    cfrom = poff[0] + K * N if sparse else np.int64(0)
    res = np.zeros((nrun, 2, 3))
    sync = team_sync()
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for t in prange(2):
        own = swap_fp_mode(fp)
        role, first = team_join(sync, nrun)
        ph = 0
        for q in range(first, nrun):
            role = team_handover(sync, role, q)
            p0 = first_part(role)
            p1 = end_part(role)
            j = j0 + q
            s = j * bs
            e = min(n, s + bs)
            idx = data.order[s:e]
            xb, lb, tb, wb = batch_views(data, bufs, sp, s, e)
            c0 = c[q, 0]
            c1 = c[q, 1]
            if sparse:
                for part in range(p0, p1):
                    _partial_part(sp, idx, W0, kmid[q], work, part)
                ph = team_step(sync, role, ph)
            for part in range(p0, p1):
                _row_part(model, head, data, idx, xb, lb, tb, wb, grad, work, res[q], sp, c0,
                          c1, opt.dropout, keys[q], part)
            ph = team_step(sync, role, ph)
            f = 1.0
            if clipping and sparse:
                for part in range(p0, p1):
                    _sparse_part(model, grad, work.gs, c0, c1, state, opt, c[q, 2], c[q, 3], sp,
                                 j, idx, dU, Wp, kmid[q], True, False, 1.0, part)
                ph = team_step(sync, role, ph)
            if clipping:
                # (Each thread reads the whole gradient, which the updates
                # then change in place: both must have read it first.)
                f = clip_factor(combined_squares(grad, work.gs, c0, c1, cfrom), opt.clip)
                ph = team_step(sync, role, ph)
            for part in range(p0, p1):
                if sparse:
                    sq = _sparse_part(model, grad, work.gs, c0 * f, c1 * f, state, opt,
                                      c[q, 2], c[q, 3], sp, j, idx, dU, Wp, kmid[q],
                                      not clipping, True, f, part)
                else:
                    sq = _update_part(model, grad, work.gs, c0 * f, c1 * f, state, opt,
                                      c[q, 2], c[q, 3], part)
                res[q, part, 2] = sq
            ph = team_step(sync, role, ph)
        team_finish(sync, role)
        swap_fp_mode(own)
    for q in range(nrun):
        out[q, 0] = c[q, 0] * res[q, 0, 0] + c[q, 1] * res[q, 1, 0]
        out[q, 1] = 0.5 * c[q, 2] * (res[q, 0, 2] + res[q, 1, 2])
        out[q, 2] = res[q, 0, 1] + res[q, 1, 1]


@jit
def pad_first_layer(model, work):
    """Refresh the padded copy of the first layer's W that row-split
    batches with a sparse first layer read (when W's rows are not aligned);
    :func:`split_run` keeps it current after that."""
    W = layer_W(model.theta, model.sizes, model.poff, 0)
    if not is_aligned(W):
        pad_rows_into(W, work.wa)


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
def prepare_sparse_batches(sp, order, batch_size):
    """(Re)build the per-batch CSC blocks for the visiting ``order``."""
    batch_nnz_offsets(sp.indptr, order, batch_size, sp.base)
    batch_csc_build(sp.indptr, sp.indices, sp.values, order, batch_size, sp.base, sp.colptr,
                    sp.rowpos, sp.cvals)


@jit
def epoch_begin(order, rng_state, shuffle, sp, csc_ready, batch_size):
    """Choose the epoch's visiting ``order`` and, for a sparse first layer,
    (re)build its per-batch CSC blocks unless ``csc_ready`` (same order as
    the last epoch)."""
    if shuffle:
        # Each epoch's permutation depends only on the generator state, so
        # fit(epochs=2) and two fit(epochs=1) calls visit the same batches.
        for i in range(order.shape[0]):
            order[i] = i
        shuffle_inplace(order, rng_state)
    if is_sparse(sp) and (shuffle or not csc_ready):
        prepare_sparse_batches(sp, order, batch_size)


@jit(fastmath=FASTMATH_NO_REASSOC)
def add_run_sums(run, j0, j1, batch_size, n, loss_sum, pen_sum, correct):
    """The running sums plus those of batches ``j0..j1-1`` (``run[q]``:
    batch ``j0 + q``'s mean loss, penalty and n_correct), batch by batch in
    order. Without reassociation: a sum vectorised over a run of batches
    rounds differently from the same batches added one call at a time."""
    for q in range(j1 - j0):
        r = min(n, (j0 + q + 1) * batch_size) - (j0 + q) * batch_size
        loss_sum += run[q, 0] * r
        pen_sum += run[q, 1] * r
        correct += np.int64(run[q, 2])
    return loss_sum, pen_sum, correct


@jit
def train_batches(data, model, head, grad, state, opt, sp, work, bufs, first, last, plan):
    """Mini-batches ``first..last-1`` of the epoch set up by
    :func:`epoch_begin` (batch ``j`` is rows ``data.order[j*batch_size:...]``;
    the last one may be shorter), updating ``model`` in place. Returns (sum
    of per-row losses, sum of per-row L2 penalties, number of rows
    predicted right), each measured on a batch just before its update.

    With ``data.shuffle`` each batch is gathered into ``bufs``; without it
    batches are zero-copy slices. A sparse first layer reads its batch
    straight from the CSR form, so X is never gathered.

    Or, when ``plan.rates`` is not empty (:class:`.bundles.EpochPlan`),
    ``len(plan.rates)`` whole epochs, epoch ``e`` at the learning rate
    ``plan.rates[e]``: :func:`epoch_begin` then every batch, as the Python
    epoch loop would run them one call each (the same order, so the same
    parameters). For short epochs, where a call per epoch costs more than
    the epoch (iris: ~30 us of Python and dispatch around ~40 us of
    kernels). ``plan.sums[e]`` gets epoch ``e``'s sums. Stops after the
    first epoch whose loss sums or parameters are not finite (the caller
    restores its snapshot and re-runs the epochs before that one);
    ``plan.status`` gets (epochs run, whether the last one diverged), and
    the sums returned are zeros. Without rates, a ``plan.sums`` of one row
    holds the epoch's running sums, which the batches continue (see below)
    and which are returned.

    One driver with one batch loop: a second driver calling this one, or a
    batch loop called from two places, is compiled and linked again,
    lengthening a cold fit by a fifth.
    """
    X, labels, T, order, w = data.X, data.labels, data.T, data.order, data.w
    n = order.shape[0]
    k = plan.rates.shape[0]
    nb = (n + data.batch_size - 1) // data.batch_size
    ready = plan.csc_ready
    plan.status[0] = k
    plan.status[1] = 0
    # Batches of the current epoch continue the running sums in
    # plan.sums[0] (when it has that row): added batch by batch in order,
    # an epoch's sums do not depend on how its batches were cut into calls
    # (chunks, thread probes) or whether it ran ahead. (Adding each call's
    # sums in Python rounded differently: the same fit twice could report
    # losses a last bit apart, and the tol rule compares them.)
    running = k == 0 and plan.sums.shape[0] > 0
    loss_sum = plan.sums[0, 0] if running else 0.0
    pen_sum = plan.sums[0, 1] if running else 0.0
    correct = np.int64(plan.sums[0, 2]) if running else np.int64(0)
    o = opt
    if is_sparse(sp) and work.gs.shape[0] > 0:
        pad_first_layer(model, work)
    run = np.empty((nb if k > 0 else max(last - first, 0), 3))
    for e in range(max(k, 1)):
        j0, j1 = first, last
        if k > 0:
            epoch_begin(order, plan.rng_state, data.shuffle, sp, ready, data.batch_size)
            ready = not data.shuffle
            o = Optimizer(opt.kind, plan.rates[e], opt.momentum, opt.nesterov, opt.beta1,
                          opt.beta2, opt.eps, opt.l2, opt.l2_per_row, opt.decay, opt.dropout,
                          opt.drop_seed, opt.clip)
            j0, j1 = 0, nb
            loss_sum = 0.0
            pen_sum = 0.0
            correct = np.int64(0)
        j = j0
        while j < j1:
            s = j * data.batch_size
            e_ = min(n, s + data.batch_size)
            rows = e_ - s
            if splits(work, sp, rows):
                # The run of split batches from j (all but perhaps a short last one).
                jr = j + 1
                while jr < j1 and splits(work, sp, min(n, (jr + 1) * data.batch_size)
                                         - jr * data.batch_size):
                    jr += 1
                split_run(data, model, head, grad, state, o, sp, work, bufs, j, jr, run)
                loss_sum, pen_sum, correct = add_run_sums(run, j, jr, data.batch_size, n,
                                                          loss_sum, pen_sum, correct)
                j = jr
                continue
            idx = order[s:e_]
            xb, lb, tb, wb = batch_views(data, bufs, sp, s, e_)
            if data.shuffle:
                if not is_sparse(sp):
                    gather_rows(X, idx, xb)
                if labels.shape[0] > 0:
                    gather_labels(labels, idx, lb)
                if T.shape[0] > 0:
                    gather_rows(T, idx, tb)
                if w.shape[0] > 0:
                    gather_labels(w, idx, wb)
            loss, c = forward_backward(model, head, xb, idx, j, lb, tb, wb, sp, grad, work,
                                       o.dropout, batch_key(o.drop_seed, state.step[0]))
            norm = float(rows)
            if wb.shape[0] > 0:
                norm = 0.0
                for i in range(wb.shape[0]):
                    norm += wb[i]
            pen = apply_update(model, grad, state, o, norm)
            loss_sum += loss * rows
            pen_sum += pen * rows
            correct += c
            j += 1
        if k > 0:
            plan.sums[e, 0] = loss_sum
            plan.sums[e, 1] = pen_sum
            plan.sums[e, 2] = correct
            if not (np.isfinite(loss_sum) and np.isfinite(pen_sum)
                    and all_finite(model.theta)):
                plan.status[0] = e + 1
                plan.status[1] = 1
                break
    if k > 0:
        return 0.0, 0.0, np.int64(0)
    if running:
        plan.sums[0, 0] = loss_sum
        plan.sums[0, 1] = pen_sum
        plan.sums[0, 2] = correct
    return loss_sum, pen_sum, correct


@jit
def all_finite(x):
    """Whether no element of the 1-d ``x`` is NaN or infinite."""
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return False
    return True


@jit
def evaluate_batches(X, sp, rows, labels, T, model, head, work):
    """(sum of per-row losses, n_correct) over X, ``cap`` rows at a time.
    With a sparse first layer the rows come from ``sp`` (CSR), and
    ``rows`` is ``arange(n)`` (X is not read)."""
    sizes = model.sizes
    cap = work.cap
    n = rows.shape[0] if is_sparse(sp) else X.shape[0]
    loss_sum = 0.0
    correct = 0
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(model, X[s:min(e, X.shape[0])], rows[s:e], sp, work,
                            np.empty(0, np.float64), np.uint64(0))
        dZ = layer_buf(work.dbuf, sizes, work.hoff, cap, sizes.shape[0] - 2, e - s)
        loss, c = loss_forward_backward(head, Z, labels[s:min(e, labels.shape[0])],
                                        T[s:min(e, T.shape[0])], np.empty(0, np.float64), dZ,
                                        np.bool_(False))
        loss_sum += loss * (e - s)
        correct += c
    return loss_sum, correct


@jit
def predict_batches(X, sp, rows, model, head, work, out):
    """Logits (``head.code < 0``) or the head's output (probabilities, or values
    for regression) of every row into ``out``; returns the number of NaN/inf
    values found in a dense X (the caller raises; not checked again before).
    Dense X: :func:`predict_rows`. Sparse first layer: rows from ``sp``
    (CSR) with ``rows = arange(n)``, ``cap`` rows at a time."""
    if not is_sparse(sp):
        return predict_rows(X, model, head.code, out)
    cap = work.cap
    n = rows.shape[0]
    for s in range(0, n, cap):
        e = min(n, s + cap)
        Z = network_forward(model, X[:0], rows[s:e], sp, work, np.empty(0, np.float64),
                            np.uint64(0))
        if head.code < 0:
            out[s:e, :] = Z
        else:
            head_output(head.code, Z, out[s:e])
    return 0


@jit
def aligned_zeros(n, like):
    """n zeros of ``like``'s dtype starting on a 64-byte boundary."""
    per = 64 // like.itemsize
    raw = np.zeros(n + per, like.dtype)
    off = (64 - raw.ctypes.data % 64) % 64 // like.itemsize
    return raw[off:off + n]


@jit
def padded_first_layer(model, like):
    """(W1, b1, W2) for predict_rows: the first layer's weights and bias
    with their width padded to a whole number of vectors and W1's rows
    vector-aligned (copies, unless W1 is so already), and the second
    layer's weights with zero rows for the padding columns (W1 again for a
    one-layer network). (Kept out of the parallel function: there, Numba's
    parallel transforms of these copies read uninitialised memory.)

    Why vectors on AVX2, not ALIGN_ELEMENTS: the gathered tiles load whole
    vectors, so its 8 float32 lanes pad 100 columns to 104, not 112: 7%
    fewer multiply-adds in the first layer and fewer rows of the second."""
    sizes = model.sizes
    L = sizes.shape[0] - 1
    W1 = layer_W(model.theta, sizes, model.poff, 0)
    b1 = layer_b(model.theta, sizes, model.poff, 0)
    W2 = layer_W(model.theta, sizes, model.poff, min(1, L - 1))
    d, N1 = W1.shape
    if AVX512:  # 64-byte rows (float64: 100 -> 112 elements)
        per = ALIGN_ELEMENTS
        in_place = is_aligned(W1)
    else:
        per = VW32 if like.itemsize == 4 else VW64
        in_place = N1 % per == 0 and W1.ctypes.data % (per * like.itemsize) == 0
    if in_place:
        return W1, b1, W2
    Np = (N1 + per - 1) // per * per
    Wp = aligned_zeros(d * Np, like).reshape((d, Np))
    copy_rows_auto(W1, Wp)
    bp = np.zeros(Np, like.dtype)
    for j in range(N1):
        bp[j] = b1[j]
    if L == 1:
        return Wp, bp, Wp
    W2p = np.zeros((Np, sizes[2]), like.dtype)
    for k in range(N1):
        for j in range(sizes[2]):
            W2p[k, j] = W2[k, j]
    return Wp, bp, W2p


@jit_parallel
def predict_rows(X, model, head, out):
    """``predict_batches`` for dense X (``head``: the head's code, or -1 for
    the logits) in one parallel region: each task
    takes blocks of ``INFER_ROWS`` rows through every layer and the head
    (:func:`predict_task`), the block's activations in task-local scratch
    (no join per layer, and a layer's output is still in cache for the
    next). Returns the number of NaN/inf values in X.

    The first layer's width is padded to a multiple of 16 with 64-byte
    aligned rows, as its tiles load whole vectors (a copy of W and b when
    they are not so already; the second layer's W then gets zero rows for
    the padding columns, whose values it so ignores)."""
    W1, b1, W2 = padded_first_layer(model, out)
    nblk = (X.shape[0] + INFER_ROWS - 1) // INFER_ROWS
    ntask = min(nblk, NTASK)
    bad = 0
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    # The task's work in a function of its own: Numba's parallel passes on
    # a loop body this large adds seconds to a cold compile per dtype.
    for task in prange(ntask):
        own = swap_fp_mode(fp)
        bad += predict_task(X, model, head, out, W1, b1, W2,
                            task * nblk // ntask, (task + 1) * nblk // ntask)
        swap_fp_mode(own)
    return bad


@jit
def predict_task(X, model, head, out, W1, b1, W2, blk0, blk1):
    """Row blocks ``blk0..blk1-1`` of :func:`predict_rows`; returns their
    count of NaN/inf values. The first layer reads X in place,
    ``GATHER_MR`` rows at a time: one pass over them counts NaN/inf and
    lists the columns where any is non-zero, and the tiles step over those
    only (``sparse.active_columns`` and ``gathered_first_layer``; dense data
    lists them all). On AVX2 a block of sparse rows goes one row per tile
    instead, each row listed alone (``gathered_row``; see
    layout.ROW_GATHER_NV)."""
    sizes = model.sizes
    theta, poff, acts = model.theta, model.poff, model.acts
    L = sizes.shape[0] - 1
    n = X.shape[0]
    Np = W1.shape[1]
    width = Np + sizes[L]
    for l in range(1, L):
        width += sizes[l + 1]
    RB = INFER_ROWS
    noh = np.empty((0, 0), out.dtype)
    scratch = np.empty(RB * width, out.dtype)
    ks, orv = column_scratch(X)
    nb = 0
    for blk in range(blk0, blk1):
        s = blk * RB
        e = min(n, s + RB)
        m = e - s
        H = scratch[:m * Np].reshape((m, Np))
        by_row = False
        if ROW_GATHER_NV:  # the block's first group chooses (layout.ROW_GATHER_RATIO)
            g = min(GATHER_MR, m)
            per_row = 0
            for r in range(s, s + g):
                per_row += active_columns(X, r, 1, orv, ks)[0]
            by_row = per_row <= ROW_GATHER_RATIO * active_columns(X, s, g, orv, ks)[0]
            if by_row:
                for r in range(s, e):
                    c, nf = active_columns(X, r, 1, orv, ks)
                    nb += nf
                    gathered_row(X, r, ks, c, W1, b1, acts[0], H, r - s)
        if not by_row:
            for r0 in range(s, e, GATHER_MR):
                rows = min(GATHER_MR, e - r0)
                c, nf = active_columns(X, r0, rows, orv, ks)
                nb += nf
                gathered_first_layer(X, r0, rows, ks, c, W1, b1, acts[0], H, r0 - s)
        o = RB * Np
        for l in range(1, L):
            Nl = sizes[l + 1]
            W = W2 if l == 1 else layer_W(theta, sizes, poff, l)
            Z = scratch[o:o + m * Nl].reshape((m, Nl))
            o += RB * Nl
            gemm_nn_fused_serial(H, W, Z, layer_b(theta, sizes, poff, l), acts[l], noh,
                                 IDENTITY)
            H = Z
        if H.shape[1] != sizes[L]:  # one layer, padded: its real columns
            Z = scratch[o:o + m * sizes[L]].reshape((m, sizes[L]))
            for i in range(m):
                for j in range(sizes[L]):
                    Z[i, j] = H[i, j]
            H = Z
        if head < 0:
            out[s:e, :] = H
        else:
            head_output(head, H, out[s:e])
    return nb


@jit
def full_batch_gradient(X, labels, T, w, model, head, work, grad, total):
    """Mean loss over every row of X (weighted by ``w`` unless it is empty),
    and its gradient into ``total`` (``grad`` is per-chunk scratch): the
    objective of full-batch solvers such as L-BFGS, computed ``work.cap``
    rows at a time with the training kernels (dense first layer)."""
    n = X.shape[0]
    no_rows = np.empty(0, np.int64)
    none32 = np.empty(0, np.int32)
    nonex = np.empty(0, X.dtype)
    # bundles.no_sparse(X.dtype): the dense first layer's argument
    dense = SparseInput(no_rows, none32, nonex, no_rows, np.empty((0, 0), np.int64), none32, nonex)
    weighted = w.shape[0] > 0
    w_total = 0.0
    if weighted:
        for i in range(n):
            w_total += w[i]
    for i in range(total.shape[0]):
        total[i] = 0
    loss = 0.0
    for s in range(0, n, work.cap):
        e = min(n, s + work.cap)
        wc = w[s:e] if weighted else w
        chunk_loss, _ = forward_backward(model, head, X[s:e], no_rows, np.int64(0),
                                         labels[s:min(e, labels.shape[0])],
                                         T[s:min(e, T.shape[0])], wc, dense, grad, work,
                                         np.empty(0, np.float64), np.uint64(0))
        if weighted:
            part = 0.0
            for i in range(wc.shape[0]):
                part += wc[i]
            share = part / w_total if w_total > 0 else 0.0
        else:
            share = (e - s) / n
        loss += chunk_loss * share
        for i in range(total.shape[0]):
            total[i] += grad[i] * share
    return loss
