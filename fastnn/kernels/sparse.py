"""First-layer kernels for sparse inputs (most pixels of MNIST are zero).

81% of MNIST's input values are exactly zero (about 150 non-zeros of 784
per image), and the first layer's forward product and weight gradient are
~90% of an epoch's FLOPs. Both can skip the zeros:

* forward ``Y = act(X[rows] @ W + b)`` reads X in CSR form (built once per
  ``fit``): per batch row, each non-zero ``(k, v)`` adds ``v * W[k]`` to
  partial sums held in registers (_G = 112 columns at a time; the
  accumulators live in a stack buffer, see :mod:`.intrinsics`, or LLVM
  would reload and store them at every non-zero).
* weight gradient ``dW = X_batch.T @ dU`` reads the batch in CSC form
  (:func:`batch_csc_build`, once per epoch, or once per ``fit`` without
  shuffling; a shuffled fit of row-split batches sorts each batch's
  non-zeros as it goes, ``train._csc_rows_grad``): row k of dW gathers
  ``v * dU[r]`` over column k's non-zeros, again in registers, and is
  written once; tasks own disjoint rows of dW.
* a split batch (two threads, ``train._partial_part``) divides the
  forward by rows of W instead: :func:`sparse_partial_rows` sums each row's
  non-zeros in one range of columns k, and :func:`add_partials` adds the
  two threads' sums, so each thread reads only the rows of W it updates.

Inference reads dense X in place instead (no CSR to build for one pass):
:func:`active_columns` scans a tile's few rows once, counting NaN/inf (the
input check, fused into the product's own read of X) and listing the
columns where any of them is non-zero; :func:`gathered_first_layer` runs
register tiles over those columns only (``intrinsics.tile_fma_gather``).
Dense data simply lists every column.

``rows`` lists which rows of the CSR matrix form the batch, so shuffled
batches need no gather. Results equal the dense kernels' up to summation
order (zeros contribute nothing).

Why not skip zeros inside the dense tiles: a per-step "all zero?" branch is
unpredictable on images and cost more than the FMAs it saved (measured);
scattering ``v * dU[r]`` into dW rows from CSR loads and stores a row of dW
per non-zero (2.7x slower than the CSC gather, see :func:`sparse_weight_grad`).
"""
import numpy as np
from numba import carray, prange, types, uint64
from numba.extending import overload

from .._config import AVX512, CACHE, FASTMATH_NO_REASSOC, jit, jit_inline, jit_parallel
from .activations import IDENTITY, RELU, act_forward
from .intrinsics import (compress_nonzero8, compress_nonzero16, fp_mode, prefetch, stack_buffer,
                         swap_fp_mode, tile_fma_gather)
from .layout import ALIGN_ELEMENTS, NTASK, SLACK, SMALL_COPY_ELEMENTS, padded_width  # noqa: F401
from .layout import GATHER_MR, GATHER_NV, PF, ROW_GATHER_NV, ROW_PREFETCH, VW32, VW64
from .matmul import store_tile
from .layout import SPARSE_GROUP as _G
from .rng import GOLDEN_GAMMA, splitmix64_mix


@jit_parallel
def _scan(X, B, ka, kb, counts, rowhash):
    n, d = X.shape
    bad = 0
    for i in prange(n):
        c = np.int32(0)
        nb = np.int32(0)
        # Two hash words of the values' width, in a stack buffer: the
        # stores keep them that width, so the loop vectorises on 32-bit
        # lanes for float32 (float tests and 32-bit counters, for the same
        # reason: 64-bit sums of the bits halve the lanes).
        h = carray(stack_buffer(2, B), (2,))
        h[0] = 0
        h[1] = 0
        for k in range(d):
            v = X[i, k]
            b = B[i, k]
            c = np.int32(c + np.int32(v != 0))
            nb = np.int32(nb + np.int32(not np.isfinite(v)))
            # Exact bits, mixed with random keys per position: any change
            # of one value, or of the order of a row's values, changes
            # both words (XOR then add, add then XOR).
            h[0] += b ^ ka[k]
            h[1] ^= b + kb[k]
        counts[i] = c
        if B.itemsize == 4:
            rowhash[i] = (np.uint64(h[0]) << np.uint64(32)) | np.uint64(h[1])
        else:
            rowhash[i] = np.uint64(h[0]) ^ (np.uint64(h[1]) * np.uint64(0x9E3779B97F4A7C15))
        bad += nb
    return bad


@jit
def _position_keys(d, like):
    """Two rows of d fixed pseudo-random keys of ``like``'s width
    (SplitMix64 from a constant seed)."""
    keys = np.empty((2, d), like.dtype)
    s = np.uint64(0x243F6A8885A308D3)  # any fixed seed (pi's digits)
    for k in range(d):
        for r in range(2):
            s += GOLDEN_GAMMA
            keys[r, k] = splitmix64_mix(s)
    return keys


@jit
def scan_rows(X, counts, rowhash):
    """One parallel pass over X: ``counts[i]`` = non-zeros of row i, and
    ``rowhash[i]`` a hash of row i's bits. Returns the number of NaN/inf
    values. (Validates inputs, sizes the sparse path and recognises data
    seen by an earlier ``fit``, all in one read of the data.)"""
    B = _bits(X)
    keys = _position_keys(X.shape[1], B)
    return _scan(X, B, keys[0], keys[1], counts, rowhash)


def _bits(X):
    """X's values as unsigned integers of the same width (a view)."""
    raise NotImplementedError  # only callable from compiled code


@overload(_bits, jit_options=dict(cache=CACHE))
def _bits_typed(X):
    # Chosen at typing time: a run-time `if X.itemsize == 4` compiled the
    # scan for both widths, lengthening a cold start.
    u = np.uint32 if X.dtype == types.float32 else np.uint64
    return lambda X: X.view(u)


@jit
def fingerprint(rowhash):
    h = np.uint64(1469598103934665603)
    for i in range(rowhash.shape[0]):
        h = (h ^ rowhash[i]) * np.uint64(1099511628211)
    return h


@jit_parallel
def csr_fill(X, indptr, indices, values):
    """Column indices and values of each row's non-zeros, in column order."""
    for i in prange(X.shape[0]):
        p = indptr[i]
        for k in range(X.shape[1]):
            v = X[i, k]
            if v != 0:
                indices[p] = k
                values[p] = v
                p += 1


@jit
def is_aligned(A):
    """Rows of A start on 64-byte boundaries (as the aligned copies'),
    so the sparse kernels can read A in place."""
    return A.shape[1] % ALIGN_ELEMENTS == 0 and A.ctypes.data % 64 == 0


@jit
def pad_rows_into(A, buf):
    """Copy A (R, N) into the first R rows of ``buf`` viewed as (R, Np) with
    Np = padded_width(N), and return that view. ``buf`` is 64-byte aligned
    and zeroed once by its owner; the pad columns are never written, so
    they stay zero. Small copies (a batch's dU) stay on this thread."""
    R, N = A.shape
    Np = (N + ALIGN_ELEMENTS - 1) // ALIGN_ELEMENTS * ALIGN_ELEMENTS
    out = buf[:R * Np].reshape((R, Np))
    copy_rows_auto(A, out)
    return out


@jit
def copy_rows_auto(A, out):
    """out[:, :N] = A: on the calling thread when small, else in parallel."""
    if A.shape[0] * A.shape[1] <= SMALL_COPY_ELEMENTS:
        copy_rows(A, out)
    else:
        _copy_rows_parallel(A, out)


@jit
def copy_rows(A, out):
    """out[:, :N] = A on the calling thread."""
    for r in range(A.shape[0]):
        for j in range(uint64(A.shape[1])):
            out[r, j] = A[r, j]


@jit_parallel
def _copy_rows_parallel(A, out):
    R, N = A.shape
    for r0 in prange((R + 63) // 64):
        for r in range(r0 * 64, min(R, r0 * 64 + 64)):
            for j in range(uint64(N)):
                out[r, j] = A[r, j]


@jit_parallel(fastmath=FASTMATH_NO_REASSOC)
def sparse_dense_forward(indptr, indices, values, rows, W, b, act, Y):
    """Y[r] = act(X[rows[r]] @ W[:, :N] + b), X given in CSR form, N =
    Y.shape[1]; tiles (a row by a group of _G columns) split over the pool.

    W's rows are 64-byte aligned (:func:`is_aligned`, or an aligned padded
    copy from :func:`pad_rows_into`) and at least ``SLACK`` elements are
    readable after the last row's start + N (the owner of W allocates
    them)."""
    ntile = rows.shape[0] * ((Y.shape[1] + _G - 1) // _G)
    ntask = min(ntile, NTASK)
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for task in prange(ntask):
        own = swap_fp_mode(fp)
        sparse_forward_tiles(indptr, indices, values, rows, W, b, act, Y,
                             task * ntile // ntask, (task + 1) * ntile // ntask)
        swap_fp_mode(own)


@jit(fastmath=FASTMATH_NO_REASSOC)
def sparse_forward_tiles(indptr, indices, values, rows, W, b, act, Y, t0, t1):
    """Tiles ``t0..t1-1`` of :func:`sparse_dense_forward` on the calling
    thread (one task's run of them)."""
    N = Y.shape[1]
    # Column groups of _G starting at multiples of _G: with W's rows 64-byte
    # aligned every load is aligned (cache-line-split loads are ~1.8x
    # slower). Columns past N read the slack after the row (never stored).
    nb = rows.shape[0]
    zero = Y.dtype.type(0)
    acc = carray(stack_buffer(_G, Y), (_G,))
    for t in range(t0, t1):
        # Column-group-major: consecutive tiles reuse one K x _G slice of W.
        g = t // nb
        r = t % nb
        i = rows[r]
        u0 = uint64(g * _G)
        acc[:] = 0
        for p in range(indptr[i], indptr[i + 1]):
            v = values[p]
            k = indices[p]
            for j in range(uint64(_G)):
                acc[j] += v * W[k, u0 + j]
        # Stores written out here: passing `acc` to a helper would let
        # its address escape and cost the register promotion. One loop
        # per activation over unsigned indices, so each vectorises: a
        # per-element act_forward() dispatch was scalar and cost more
        # than the products (~14 cycles per non-zero at MNIST density).
        w = uint64(min(_G, N - g * _G))
        if act == RELU:
            for jj in range(w):
                v = acc[jj] + b[u0 + jj]
                Y[r, u0 + jj] = v if v > zero else zero
        elif act == IDENTITY:
            for jj in range(w):
                Y[r, u0 + jj] = acc[jj] + b[u0 + jj]
        else:
            for jj in range(w):
                Y[r, u0 + jj] = act_forward(acc[jj] + b[u0 + jj], act)


@jit
def first_at_least(indices, lo, hi, k):
    """First position p in lo..hi (sorted ``indices[lo:hi]``) with
    ``indices[p] >= k`` (hi if none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit(fastmath=FASTMATH_NO_REASSOC)
def sparse_partial_rows(indptr, indices, values, rows, W, k0, k1, N, P):
    """P[r, :N] = X[rows[r], k0:k1] @ W[k0:k1, :N] for every row r of a
    batch (X in CSR form; W's rows aligned with slack after them as in
    :func:`sparse_dense_forward`): one thread's
    share of a first layer split by input columns. Each thread then reads
    only its own rows of W, which it also updates (``train._sparse_part``):
    split by batch rows instead, every thread read all of W each batch,
    half of it just written by the other core.

    The CSR rows of row ``r + ROW_PREFETCH`` are prefetched: a shuffled
    batch's rows lie anywhere in memory, and each is a few cache lines the
    hardware prefetchers cannot guess."""
    acc = carray(stack_buffer(_G, P), (_G,))
    nb = rows.shape[0]
    for r in range(nb):
        if r + ROW_PREFETCH < nb:
            q = rows[r + ROW_PREFETCH]
            # (every 64 bytes of the narrower of the two arrays)
            for p in range(indptr[q], indptr[q + 1], 16):
                prefetch(indices, p)
                prefetch(values, p)
                if values.itemsize == 8:
                    prefetch(values, p + 8)
        i = rows[r]
        # (Each row's columns are sorted: its part in k0..k1-1 is one run.)
        p0 = first_at_least(indices, indptr[i], indptr[i + 1], k0)
        p1 = first_at_least(indices, p0, indptr[i + 1], k1)
        for g in range((N + _G - 1) // _G):
            u0 = uint64(g * _G)
            acc[:] = 0
            for p in range(p0, p1):
                v = values[p]
                k = indices[p]
                for j in range(uint64(_G)):
                    acc[j] += v * W[k, u0 + j]
            w = uint64(min(_G, N - g * _G))
            for jj in range(uint64(_G)):  # (masked: see sparse_grad_step_tiles)
                if jj < w:
                    P[r, u0 + jj] = acc[jj]


@jit
def add_partials(P0, P1, b, act, Y, s):
    """Y[r] = act(P0[s + r, :N] + P1[s + r, :N] + b) for the rows of Y (N
    columns): the first layer's output from both threads'
    :func:`sparse_partial_rows`."""
    zero = Y.dtype.type(0)
    n = uint64(Y.shape[1])
    for r in range(Y.shape[0]):
        a = P0[s + r]
        c = P1[s + r]
        y = Y[r]
        # One loop per activation, as in sparse_forward_tiles.
        if act == RELU:
            for j in range(n):
                v = a[j] + c[j] + b[j]
                y[j] = v if v > zero else zero
        elif act == IDENTITY:
            for j in range(n):
                y[j] = a[j] + c[j] + b[j]
        else:
            for j in range(n):
                y[j] = act_forward(a[j] + c[j] + b[j], act)


@jit
def batch_nnz_offsets(indptr, order, batch_size, base):
    """base[b] = first CSC slot of batch b (non-zeros of earlier batches)."""
    n = order.shape[0]
    base[0] = 0
    for b in range(base.shape[0] - 1):
        s = b * batch_size
        e = min(n, s + batch_size)
        tot = 0
        for r in range(s, e):
            i = order[r]
            tot += indptr[i + 1] - indptr[i]
        base[b + 1] = base[b] + tot


@jit_parallel
def batch_csc_build(indptr, indices, values, order, batch_size, base, colptr,
                    rowpos, cvals):
    """For every mini-batch b (rows ``order[b*bs:(b+1)*bs]``), the batch's
    non-zeros sorted by column (a counting sort): column k of batch b holds
    slots ``colptr[b, k]:colptr[b, k+1]``, each with the row's position in
    the batch (``rowpos``) and its value (``cvals``). Batches are
    independent, so they are built in parallel."""
    n = order.shape[0]
    K = colptr.shape[1] - 1
    for b in prange(colptr.shape[0]):
        s = b * batch_size
        e = min(n, s + batch_size)
        cur = np.zeros(K + 1, np.int64)
        for r in range(s, e):
            i = order[r]
            for p in range(indptr[i], indptr[i + 1]):
                cur[indices[p] + 1] += 1
        cur[0] = base[b]
        for k in range(K):
            cur[k + 1] += cur[k]
        for k in range(K + 1):
            colptr[b, k] = cur[k]
        for r in range(s, e):
            i = order[r]
            for p in range(indptr[i], indptr[i + 1]):
                k = indices[p]
                q = cur[k]
                rowpos[q] = r - s
                cvals[q] = values[p]
                cur[k] = q + 1


@jit_parallel(fastmath=FASTMATH_NO_REASSOC)
def sparse_weight_grad(colptr, rowpos, cvals, dU, dW):
    """dW = X_batch.T @ dU with the batch in CSC form (one row of
    ``colptr`` from :func:`batch_csc_build`); tiles (a row of dW by a group
    of _G columns) split over the pool.

    Row k of dW is ``sum over non-zeros (r, v) of column k of v * dU[r]``:
    it is accumulated in registers and written once, so tasks (runs of rows
    k and column groups) write disjoint cells; dU stays in L1. dU's rows are
    aligned with slack after them, as W's in :func:`sparse_dense_forward`.
    (Scattering ``v * dU[r]`` into dW's rows straight from the CSR rows
    needs no CSC form, but is ~2.7x slower: every non-zero loads and
    stores a row of dW from L2.)
    """
    ntile = dW.shape[0] * ((dW.shape[1] + _G - 1) // _G)
    ntask = min(ntile, NTASK)
    fp = fp_mode()  # (see intrinsics.swap_fp_mode)
    for task in prange(ntask):
        own = swap_fp_mode(fp)
        sparse_grad_tiles(colptr, rowpos, cvals, dU, dW,
                          task * ntile // ntask, (task + 1) * ntile // ntask)
        swap_fp_mode(own)


@jit
def sparse_grad_tiles(colptr, rowpos, cvals, dU, dW, t0, t1):
    """Tiles ``t0..t1-1`` of :func:`sparse_weight_grad` on the calling
    thread (all of them: one half of a row-split batch)."""
    sparse_grad_step_tiles(colptr, rowpos, cvals, dU, dW, t0, t1, False, dW.dtype.type(0),
                           dW[:0])


@jit(fastmath=FASTMATH_NO_REASSOC)
def sparse_grad_step_tiles(colptr, rowpos, cvals, dU, dW, t0, t1, step, lr, Wp):
    """:func:`sparse_grad_tiles`, or with ``step`` the plain SGD step on
    ``dW`` = the weights instead: ``W -= lr * dW`` as each tile of
    the gradient leaves the registers (and ``Wp``, when not empty, gets
    W's new rows: the padded copy the forward reads). The gradient is then
    never stored, and W is read and written once instead of the gradient
    written, read back and W updated in a second pass."""
    N = dW.shape[1]
    ngroup = (N + _G - 1) // _G
    acc = carray(stack_buffer(_G, dW), (_G,))
    for t in range(t0, t1):
        k = t // ngroup
        g = t % ngroup
        u0 = uint64(g * _G)
        acc[:] = 0
        for p in range(colptr[k], colptr[k + 1]):
            v = cvals[p]
            r = rowpos[p]
            for j in range(uint64(_G)):
                acc[j] += v * dU[r, u0 + j]
        # Stores over all _G lanes, masked past the group's w columns: a
        # loop of w iterations kept ``acc`` in memory through the products.
        w = uint64(min(_G, N - g * _G))
        if not step:
            for jj in range(uint64(_G)):
                if jj < w:
                    dW[k, u0 + jj] = acc[jj]
        elif Wp.shape[0] > 0:
            for jj in range(uint64(_G)):
                if jj < w:
                    x = dW[k, u0 + jj] - lr * acc[jj]
                    dW[k, u0 + jj] = x
                    Wp[k, u0 + jj] = x
        else:
            for jj in range(uint64(_G)):
                if jj < w:
                    dW[k, u0 + jj] -= lr * acc[jj]


def compress_table():
    """(256, 8) int32: row m lists the bits set in m, in order (the rest
    of the row is 0): the table of :func:`.intrinsics.compress_nonzero8`."""
    t = np.zeros((256, 8), np.int32)
    for m in range(256):
        bits = [j for j in range(8) if m >> j & 1]
        t[m, :len(bits)] = bits
    return t


_COMPRESS8 = compress_table()


@jit
def column_scratch(X):
    """(ks, orv): the scratch of :func:`active_columns` for X's columns,
    with room for whole 16-column groups (``orv``'s padding stays zero)."""
    d = X.shape[1]
    width = (d + 15) // 16 * 16 + 16
    return np.empty(width, np.int32), np.zeros(width, _bits(X).dtype)


@jit_inline
def active_columns(X, r0, rows, orv, ks):
    """Columns k where any of rows ``r0 .. r0+rows-1`` of X is non-zero,
    in order, into ``ks[:c]``; returns (c, number of NaN/inf values in
    those rows). ``ks``, ``orv``: from :func:`column_scratch`."""
    d = X.shape[1]
    B = _bits(X)
    bad = 0
    c = 0
    k0 = 0
    if rows == 1 and not AVX512:
        # One row (AVX2's tiles): listed straight from its bits, 8 columns
        # at a time, the last d % 8 below (a group there would read past
        # the row).
        row = B[r0]
        for k0 in range(0, d - 7, 8):
            c, nf = compress_nonzero8(row, k0, ks, c, _COMPRESS8, True)
            bad += nf
        k0 = d - d % 8
    for r in range(rows):
        first = r == 0
        for k in range(uint64(k0), uint64(d)):
            # Shifted out: the sign bit, so -0.0 counts as zero.
            bits = B[r0 + r, k] << 1
            orv[k] = bits if first else orv[k] | bits
            bad += not np.isfinite(X[r0 + r, k])
    if AVX512:
        for k1 in range(k0, d, 16):
            c = compress_nonzero16(orv, k1, ks, c)
    else:
        for k1 in range(k0, d, 8):
            c, _ = compress_nonzero8(orv, k1, ks, c, _COMPRESS8, False)
    return c, bad


def _make_gathered(VW, MR, NV):
    NRG = NV * VW
    ACC = MR * NRG
    V4, V2 = 4 * VW, 2 * VW  # tile widths must be compile-time constants
    ACC4 = MR * V4
    ACC2 = MR * V2
    ACC1 = MR * VW

    @jit_inline
    def gathered(X, r0, rows, ks, c, W, b, act, Y, y0):
        """Y[y0:y0+rows] = act(X[r0:r0+rows] @ W + b) over the columns
        ``ks[:c]`` of X (the others are zero), in tiles of MR rows x NV
        vectors. W (d, Np) and b (Np,) are padded to Np = Y.shape[1], a
        multiple of VW."""
        d = X.shape[1]
        Np = W.shape[1]
        noh = Y[:0]  # no activation-derivative input (an empty view: no allocation)
        a0 = r0 * d
        j0 = 0
        p = stack_buffer(ACC, Y)
        while j0 + NRG <= Np:
            tile_fma_gather(p, X, a0, rows, d, 1, W, j0, Np, ks, c, MR, NRG, VW, PF)
            store_tile(carray(p, (MR, NRG)), Y, y0, j0, j0, b, act, noh, IDENTITY)
            j0 += NRG
        # The rest (fewer than NV vectors) in tiles of 4, 2, 1 vectors.
        while j0 + V4 <= Np:
            p4 = stack_buffer(ACC4, Y)
            tile_fma_gather(p4, X, a0, rows, d, 1, W, j0, Np, ks, c, MR, V4, VW, PF)
            store_tile(carray(p4, (MR, V4)), Y, y0, j0, j0, b, act, noh, IDENTITY)
            j0 += V4
        if j0 + V2 <= Np:
            p2 = stack_buffer(ACC2, Y)
            tile_fma_gather(p2, X, a0, rows, d, 1, W, j0, Np, ks, c, MR, V2, VW, PF)
            store_tile(carray(p2, (MR, V2)), Y, y0, j0, j0, b, act, noh, IDENTITY)
            j0 += V2
        if j0 < Np:
            p1 = stack_buffer(ACC1, Y)
            tile_fma_gather(p1, X, a0, rows, d, 1, W, j0, Np, ks, c, MR, VW, VW, PF)
            store_tile(carray(p1, (MR, VW)), Y, y0, j0, j0, b, act, noh, IDENTITY)

    return gathered


_gathered32 = _make_gathered(VW32, GATHER_MR, GATHER_NV)
_gathered64 = _make_gathered(VW64, GATHER_MR, GATHER_NV)
_row32 = _make_gathered(VW32, 1, max(ROW_GATHER_NV, 1))
_row64 = _make_gathered(VW64, 1, max(ROW_GATHER_NV, 1))


def gathered_first_layer(X, r0, rows, ks, c, W, b, act, Y, y0):
    """First-layer rows through tiles over the active columns ``ks[:c]``
    (:func:`active_columns`); see ``_make_gathered``. Rows: at most
    GATHER_MR."""
    raise NotImplementedError  # only callable from compiled code


def gathered_row(X, r, ks, c, W, b, act, Y, y):
    """:func:`gathered_first_layer` for the one row r of X (into row y of
    Y), in tiles of one row x ROW_GATHER_NV vectors (layout.py)."""
    raise NotImplementedError  # only callable from compiled code


@overload(gathered_row, jit_options=dict(cache=CACHE))
def _gathered_row_typed(X, r, ks, c, W, b, act, Y, y):
    f = _row32 if Y.dtype == types.float32 else _row64
    return lambda X, r, ks, c, W, b, act, Y, y: f(X, r, 1, ks, c, W, b, act, Y, y)


@overload(gathered_first_layer, jit_options=dict(cache=CACHE))
def _gathered_typed(X, r0, rows, ks, c, W, b, act, Y, y0):
    f = _gathered32 if Y.dtype == types.float32 else _gathered64
    return lambda X, r0, rows, ks, c, W, b, act, Y, y0: f(X, r0, rows, ks, c, W, b, act, Y, y0)

