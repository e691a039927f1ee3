"""Matrix multiply kernels: the register-tiled fast path.

Training needs three orientations of one product:

* ``gemm_nn``: ``C = A @ B``    forward ``U = X @ W``
* ``gemm_tn``: ``C = A.T @ B``  weight gradient ``dW = X.T @ dU``
* ``gemm_nt``: ``C = A @ B.T``  input gradient ``dX = dU @ W.T``

The tests hold each to a naive triple loop (``tests/naive.py``) and NumPy.

The fast path computes C in register tiles of ``MR`` rows x ``NR`` columns,
shaped per instruction set (``layout``: AVX-512 8 x 48 float32 / 4 x 48
float64, 24 zmm of partial sums; AVX2 6 x 16 / 3 x 16, 12 ymm). For one
tile the loop over the reduction index ``k`` is outermost, so each loaded
row segment of B feeds ``MR`` fused multiply-adds and C is written once; it
is written with explicit vectors (``intrinsics.tile_fma``), the epilogue
(``store_tile``) in plain loops. Why the details matter (measured; see bench/
and README):

* LLVM must use 512-bit vectors on AVX-512 (set in ``_config``); with its
  default 256-bit preference the tiles spill and run at half speed.
* Outputs narrower than a tile are computed by padding B to one tile, or
  to ``NARROW_NR`` columns on tiles that wide when it has at most that many
  (``_narrow_nn``/``_narrow_tn``: a 10-class output layer). On AVX-512,
  serial products of 32-47 columns, or of a multiple of 32 that is not one
  of 48, run on tiles 32 wide (``_make_mid``) on B in place.
* Column indices into B and C in the epilogue are unsigned (``np.uint64``).
  With signed indices Numba emits a negative-index wrap-around check per
  element that stops LLVM from vectorising the loop; unsigned ran ~2x faster.
* The last column tile is shifted left to end exactly at ``N`` (it overlaps
  its neighbour) and stores only the columns its neighbour did not, so every
  tile is full width and no two threads write the same cell. Where that
  would compute 48 columns for the last 16 or 32, the parallel drivers
  cover them with 32-wide tiles instead (``_tail_start``), except where A
  is packed (tn) or each task packs its own panel of B.
* Rows past ``M`` are clamped to row ``M-1`` (computed, never stored), so the
  row remainder needs no separate code path.
* Tiles are visited in column-panel order and the next rows of B's panel are
  prefetched, so a panel is reused from L2 across row tiles.

Tiles are independent: ``NTASK`` parallel tasks take contiguous runs of
them, all writes disjoint. ``gemm_nt`` transposes B into scratch (blocked,
parallel; from ``NT_PACK_MIN_N`` output columns: straight into packed
panels, each task its own) and reuses the ``nn`` tile.

Three regimes, chosen per call by size (measured on 2 cores):

* small (at most ``SERIAL_MAX_MACS`` multiply-adds over whole tiles): the
  tiles run on the calling thread with a stack accumulator; starting and
  joining a parallel region cost more than the second thread saved;
* medium: the parallel tiles read B in place;
* wide (N >= ``PACK_MIN_N``): B is first packed into contiguous 48-column
  panels (and, for ``tn``, A into contiguous row tiles), then the parallel
  tiles read the packed copies; with rows of B hundreds of elements apart
  the in-place tiles ran at half speed. ``gemm_nt_fused_into`` packs W.T
  straight from W instead of transposing it first.

The fused variants run an *epilogue* on each finished tile while it is still
in registers: ``bias + activation`` for a dense forward, and multiplication
by the activation derivative for a dense backward.
"""
import numpy as np
from numba import carray, prange, types, uint64
from numba.extending import overload

from .._config import AVX512, CACHE, jit, jit_inline, jit_parallel
from .activations import IDENTITY, RELU, SIGMOID, TANH, act_forward, act_grad
from .intrinsics import fp_mode, stack_buffer, swap_fp_mode, tile_fma
from .layout import (DOT_MAX_N, MID_NR, MR32, MR64, NARROW_NR, NR,  # noqa: F401
                     NT_PACK_MIN_N, NTASK, PACK_MIN_N, PACK_ROWS_K, PF, REM_MAX, REM_MAX_TILES,
                     SERIAL_MAX_MACS, SMALL_COPY_ELEMENTS, TASK_PACK, TASK_PACK_MIN_PANELS,
                     THIN_K, VW32, VW64, packed_size, tile_macs, tn_packed_size)
from .layout import tn_packs_jit as tn_packs

# ---------------------------------------------------------------------------
# register tiles (one set of functions per tile shape, generated at import)
# ---------------------------------------------------------------------------
@jit_inline
def _rem_start(N):
    """First output column left to the remainder kernels (:func:`_rem_nn`,
    :func:`_rem_tn`), N if none: see ``layout.REM_MAX``."""
    nfull = N // NR
    w = N - nfull * NR
    if 1 <= nfull <= REM_MAX_TILES and 0 < w <= REM_MAX:
        return nfull * NR
    return N


@jit_inline
def _tail_start(N):
    """First output column that the parallel nn and tn tiles (in place,
    and nn, nt from packed panels) compute on MID_NR-wide tiles (N if none):
    the last 16 < w <= 32 columns past the full tiles, or those w <= 16 and
    the last full tile's 48 (two such tiles), where a tile shifted to end
    at N would compute 48 columns for them. Tiles of every width sum each
    element over k in the same order, so the results do not change."""
    nfull = N // NR
    w = N - nfull * NR
    if MID_NR == 0 or nfull == 0 or w == 0 or w > MID_NR or _rem_start(N) != N:
        return N
    return (nfull - 1) * NR if w <= NR - MID_NR else nfull * NR


@jit_inline
def _grid(M, N, MR):
    """Tile grid of an (M, N) output: full column tiles, column tiles
    (the last one shifted left to end at N, unless the remainder kernels
    compute those columns), row tiles."""
    nfull = N // NR
    partial = 1 if N % NR and _rem_start(N) == N else 0
    return nfull, nfull + partial, (M + MR - 1) // MR


def _make_tiles(MR, VW):
    """The tile functions for MR-row tiles of VW-element vectors (one
    dtype's: see layout.MR32/VW32). Each tile's products run in
    :func:`intrinsics.tile_fma` (explicit vectors) into a stack accumulator
    (``acc``, MR x NR), which the epilogue (:func:`store_tile`) writes out."""
    ACC = MR * NR  # a compile-time constant for stack_buffer
    # Tiles of the few columns past the full ones (see _rem_start): whole
    # vectors, at least REM_MAX wide.
    NRT = (REM_MAX + VW - 1) // VW * VW
    ACCT = MR * NRT

    @jit_inline
    def tile_nn(A, B, C, i0, j0, jlo, bias, act, H, dact):
        """C[i0:i0+MR, j0:j0+NR] = epilogue(A[rows] @ B[:, cols]).

        Stores columns >= jlo only. ``bias`` (len 0 = none) and ``act`` give
        the forward epilogue; ``H``/``dact`` (H.size 0 = none) multiply by
        ``act_grad(H)`` for the backward epilogue.
        """
        M, K = A.shape
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        p = stack_buffer(ACC, C)
        tile_fma(p, A, i0 * sa0, M - i0, sa0, sa1, B, j0, B.strides[0] // B.itemsize, K,
                 MR, NR, VW, PF)
        store_tile(carray(p, (MR, NR)), C, i0, j0, jlo, bias, act, H, dact)

    @jit_inline
    def tile_tn(A, B, C, i0, j0, jlo, bias0, h0):
        """C[i0:i0+MR, j0:j0+NR] = A[:, rows].T @ B[:, cols]."""
        K, M = A.shape
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        p = stack_buffer(ACC, C)
        tile_fma(p, A, i0 * sa1, M - i0, sa1, sa0, B, j0, B.strides[0] // B.itemsize, K,
                 MR, NR, VW, PF)
        store_tile(carray(p, (MR, NR)), C, i0, j0, jlo, bias0, IDENTITY, h0, IDENTITY)

    # Tail tiles (see _tail_start): MID_NR columns, as many accumulators as
    # a full tile (see _make_mid).
    NRM = max(MID_NR, VW)
    MRM = max(1, MR * NR // NRM)

    @jit_inline
    def tail_grid(M, N):
        """(first tail column, full-width column tiles, tiles in all)."""
        nfull, ncol, nrow = _grid(M, N, MR)
        jt = _tail_start(N)
        nwide = ncol if jt == N else jt // NR
        return jt, nwide, nrow * nwide + (M + MRM - 1) // MRM * ((N - jt + NRM - 1) // NRM)

    @jit_inline
    def tail_tile(u, jt, M, N):
        """Tail tile ``u``: (first column, first stored column, first row);
        the last is shifted left to end at N."""
        nrowm = (M + MRM - 1) // MRM
        jlo = jt + (u // nrowm) * NRM
        return min(jlo, N - NRM), jlo, (u % nrowm) * MRM

    @jit_inline
    def tail_nn(A, B, C, i0, j0, jlo, bias, act, H, dact):
        """tile_nn on an MRM x NRM tail tile."""
        M, K = A.shape
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        p = stack_buffer(ACC, C)
        tile_fma(p, A, i0 * sa0, M - i0, sa0, sa1, B, j0, B.strides[0] // B.itemsize, K,
                 MRM, NRM, VW, PF)
        store_tile(carray(p, (MRM, NRM)), C, i0, j0, jlo, bias, act, H, dact)

    @jit_inline
    def tail_tn(A, B, C, i0, j0, jlo, bias0, h0):
        """tile_tn on an MRM x NRM tail tile."""
        K, M = A.shape
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        p = stack_buffer(ACC, C)
        tile_fma(p, A, i0 * sa1, M - i0, sa1, sa0, B, j0, B.strides[0] // B.itemsize, K,
                 MRM, NRM, VW, PF)
        store_tile(carray(p, (MRM, NRM)), C, i0, j0, jlo, bias0, IDENTITY, h0, IDENTITY)

    @jit_parallel
    def tiles_nn(A, B, C, bias, act, H, dact):
        M = A.shape[0]
        N = B.shape[1]
        nfull, ncol, nrow = _grid(M, N, MR)
        jt, nwide, ntile = tail_grid(M, N)
        ntask = min(ntile, NTASK)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            for t in range(task * ntile // ntask, (task + 1) * ntile // ntask):
                if t < nrow * nwide:
                    j0, jlo = _col_tile(t // nrow, nfull, N)
                    tile_nn(A, B, C, (t % nrow) * MR, j0, jlo, bias, act, H, dact)
                else:
                    j0, jlo, i0 = tail_tile(t - nrow * nwide, jt, M, N)
                    tail_nn(A, B, C, i0, j0, jlo, bias, act, H, dact)
            swap_fp_mode(own)

    @jit_parallel
    def tiles_tn(A, B, C):
        M = A.shape[1]
        N = B.shape[1]
        nfull, ncol, nrow = _grid(M, N, MR)
        jt, nwide, ntile = tail_grid(M, N)
        ntask = min(ntile, NTASK)
        bias0 = np.empty(0, C.dtype)
        h0 = np.empty((0, 0), C.dtype)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            for t in range(task * ntile // ntask, (task + 1) * ntile // ntask):
                if t < nrow * nwide:
                    j0, jlo = _col_tile(t // nrow, nfull, N)
                    tile_tn(A, B, C, (t % nrow) * MR, j0, jlo, bias0, h0)
                else:
                    j0, jlo, i0 = tail_tile(t - nrow * nwide, jt, M, N)
                    tail_tn(A, B, C, i0, j0, jlo, bias0, h0)
            swap_fp_mode(own)

    @jit
    def tiles_nn_serial(A, B, C, bias, act, H, dact):
        """tiles_nn on the calling thread, for products too small to pay
        for a parallel region (its start and join cost more than the
        work)."""
        M = A.shape[0]
        N = B.shape[1]
        nfull, ncol, nrow = _grid(M, N, MR)
        for t in range(nrow * ncol):
            j0, jlo = _col_tile(t // nrow, nfull, N)
            tile_nn(A, B, C, (t % nrow) * MR, j0, jlo, bias, act, H, dact)

    @jit
    def tiles_tn_serial(A, B, C):
        M = A.shape[1]
        N = B.shape[1]
        nfull, ncol, nrow = _grid(M, N, MR)
        bias0 = np.empty(0, C.dtype)
        h0 = np.empty((0, 0), C.dtype)
        for t in range(nrow * ncol):
            j0, jlo = _col_tile(t // nrow, nfull, N)
            tile_tn(A, B, C, (t % nrow) * MR, j0, jlo, bias0, h0)

    @jit_parallel
    def tiles_nn_packed(A, Bp, C, bias, act, H, dact):
        """tiles_nn reading B from column panels packed by pack_panels. The
        columns from :func:`_tail_start` on run on MRM x NRM tiles that read
        the same panels (a shifted last full-width tile would compute 48
        columns for the last 16 or 32)."""
        M, K = A.shape
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        N = C.shape[1]
        nfull, ncol, nrow = _grid(M, N, MR)
        jt, nwide, ntile = tail_grid(M, N)
        ntw = nrow * nwide
        ntask = min(ntile, NTASK)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            for t in range(task * ntile // ntask, (task + 1) * ntile // ntask):
                p = stack_buffer(ACC, C)
                if t < ntw:
                    c = t // nrow
                    j0, jlo = _col_tile(c, nfull, N)
                    i0 = (t % nrow) * MR
                    tile_fma(p, A, i0 * sa0, M - i0, sa0, sa1, Bp, c * K * NR, NR, K, MR, NR,
                             VW, 0)
                    store_tile(carray(p, (MR, NR)), C, i0, j0, jlo, bias, act, H, dact)
                else:
                    j0, jlo, i0 = tail_tile(t - ntw, jt, M, N)
                    # The panel holding columns j0..j0+NRM-1: a full one, or
                    # the last (shifted to end at N).
                    c = j0 // NR
                    off = j0 - c * NR
                    if c >= nfull or off + NRM > NR:
                        c = ncol - 1
                        off = j0 - (N - NR)
                    tile_fma(p, A, i0 * sa0, M - i0, sa0, sa1, Bp, c * K * NR + off, NR, K,
                             MRM, NRM, VW, 0)
                    store_tile(carray(p, (MRM, NRM)), C, i0, j0, jlo, bias, act, H, dact)
            swap_fp_mode(own)

    @jit_parallel
    def pack_rows_t(A, Ap):
        """Ap[t, k, r] = A[k, t*MR + r] (rows past M clamped): the tn
        orientation's row tiles made contiguous. Read in place, A's rows
        (K of them, often 4 KiB apart) all fall in one L1 set.

        Each task copies its run of tiles PACK_ROWS_K rows of A at a time:
        a tile's segment of a row is part of a cache line its neighbour
        reads next, and that line is still in L2 only if the rows between
        the two reads are few (K rows 4 KiB apart map to a few dozen L2
        sets)."""
        K, M = A.shape
        nt = Ap.shape[0]
        ntask = min(nt, NTASK)
        for task in prange(ntask):
            t0 = task * nt // ntask
            t1 = (task + 1) * nt // ntask
            for k0 in range(0, K, PACK_ROWS_K):
                k1 = min(K, k0 + PACK_ROWS_K)
                for t in range(t0, t1):
                    if (t + 1) * MR <= M:
                        c0 = uint64(t * MR)
                        for k in range(k0, k1):
                            for r in range(uint64(MR)):
                                Ap[t, k, r] = A[k, c0 + r]
                    else:
                        for k in range(k0, k1):
                            for r in range(MR):
                                Ap[t, k, r] = A[k, min(t * MR + r, M - 1)]

    @jit_parallel
    def tiles_tn_packed(Ap, Bp, C):
        """C = A.T @ B from A packed by pack_rows_t and B by pack_panels."""
        nrow, K, _ = Ap.shape
        N = C.shape[1]
        nfull = N // NR
        ntile = nrow * Bp.shape[0]
        ntask = min(ntile, NTASK)
        bias0 = np.empty(0, C.dtype)
        h0 = np.empty((0, 0), C.dtype)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            for t in range(task * ntile // ntask, (task + 1) * ntile // ntask):
                c = t // nrow
                j0, jlo = _col_tile(c, nfull, N)
                i0 = (t % nrow) * MR
                p = stack_buffer(ACC, C)
                tile_fma(p, Ap, (t % nrow) * K * MR, MR, 1, MR, Bp, c * K * NR, NR, K, MR, NR,
                         VW, 0)
                store_tile(carray(p, (MR, NR)), C, i0, j0, jlo, bias0, IDENTITY, h0, IDENTITY)
            swap_fp_mode(own)

    @jit_parallel
    def tiles_tn_tail(Ap, Bt, C):
        """C's columns from :func:`_rem_start` on, of C = A.T @ B with A
        packed by pack_rows_t and ``Bt`` (K, NRT) B's last NRT columns."""
        nrow, K, _ = Ap.shape
        N = C.shape[1]
        j1 = _rem_start(N)
        ntask = min(nrow, NTASK)
        bias0 = np.empty(0, C.dtype)
        h0 = np.empty((0, 0), C.dtype)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            for t in range(task * nrow // ntask, (task + 1) * nrow // ntask):
                p = stack_buffer(ACCT, C)
                tile_fma(p, Ap, t * K * MR, MR, 1, MR, Bt, 0, NRT, K, MR, NRT, VW, 0)
                store_tile(carray(p, (MR, NRT)), C, t * MR, N - NRT, j1, bias0, IDENTITY, h0,
                           IDENTITY)
            swap_fp_mode(own)

    @jit_parallel
    def tiles_task_packed(A, a_tile, a_rs, a_ks, B, transposed, C, bias, act, H, dact, Bs):
        """C = epilogue(A @ B), or A @ B.T from B = W (N, K) if ``transposed``,
        each task packing its own column panels of B, one at a time, into its
        slot ``Bs[task]`` (K, NR) right before its row tiles read it (see
        layout.TASK_PACK). Row tile ``t`` of A starts at A.flat[t * a_tile],
        its rows ``a_rs`` and its steps ``a_ks`` elements apart: A in place
        (nn, nt) or packed by pack_rows_t (tn). (No tail tiles here: a task
        is a whole panel, and one or two narrower ones left the busier
        thread's share the same.)"""
        M, N = C.shape
        K = Bs.shape[1]
        nfull, ncol, nrow = _grid(M, N, MR)
        ntask = min(ncol, NTASK)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            for c in range(task * ncol // ntask, (task + 1) * ncol // ntask):
                j0, jlo = _col_tile(c, nfull, N)
                _pack_panel(B, Bs[task], j0, transposed)
                for t in range(nrow):
                    i0 = t * MR
                    p = stack_buffer(ACC, C)
                    tile_fma(p, A, t * a_tile, M - i0, a_rs, a_ks, Bs, task * K * NR, NR, K,
                             MR, NR, VW, 0)
                    store_tile(carray(p, (MR, NR)), C, i0, j0, jlo, bias, act, H, dact)
            swap_fp_mode(own)

    @jit
    def gemm_nn_packed(A, B, C, bias, act, H, dact, bp, transposed):
        """C = epilogue(A @ B) (A @ B.T from B = W (N, K) if ``transposed``)
        from B's packed column panels: packed per task where layout.TASK_PACK
        says so, else all first (``bp`` as scratch, allocated if too
        small)."""
        K = A.shape[1]
        N = C.shape[1]
        if _task_pack(N):
            sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
            tiles_task_packed(A, MR * sa0, sa0, sa1, B, transposed, C, bias, act, H, dact,
                              _task_slots(K, N, bp))
        elif transposed:
            tiles_nn_packed(A, _panels_transposed(B, bp), C, bias, act, H, dact)
        else:
            tiles_nn_packed(A, _panels(B, bp), C, bias, act, H, dact)

    @jit
    def gemm_tn_packed(A, B, C, bp):
        """Both operands packed into ``bp`` (allocated if too small)."""
        K, M = A.shape
        N = B.shape[1]
        nrow = (M + MR - 1) // MR
        sb = packed_size(K, N)
        size = sb + nrow * K * MR
        if bp.shape[0] < size:
            bp = np.empty(size, B.dtype)
        Ap = bp[sb:size].reshape((nrow, K, MR))
        pack_rows_t(A, Ap)
        if _task_pack(N):
            tiles_task_packed(Ap, K * MR, 1, MR, B, False, C, np.empty(0, C.dtype), IDENTITY,
                              np.empty((0, 0), C.dtype), IDENTITY, _task_slots(K, N, bp))
        else:
            # Columns past one or two full tiles (100 = 96 + 4) come from
            # tiles NRT wide (a shifted third panel computed 144 columns),
            # over B's last NRT columns, copied where that panel would be.
            # (A second parallel region: with both kinds of tile in one, the
            # full tiles ran ~20% slower.)
            ncol = _grid(M, N, MR)[1]
            Bp = bp[:ncol * K * NR].reshape((ncol, K, NR))
            pack_panels(B, Bp)
            tiles_tn_packed(Ap, Bp, C)
            if _rem_start(N) < N:
                Bt = bp[ncol * K * NR:ncol * K * NR + K * NRT].reshape((K, NRT))
                for k in range(K):
                    for j in range(NRT):
                        Bt[k, j] = B[k, N - NRT + j]
                tiles_tn_tail(Ap, Bt, C)

    # Outputs of at most NARROW_NR columns (a 10-class output layer): tiles
    # that wide, with rows for half the accumulator registers (a 48-column
    # tile computed 48 columns for 10).
    NRN = NARROW_NR
    MRN = max(1, (MR * NR // VW) // (2 * (NRN // VW)))
    ACCN = MRN * NRN

    @jit_inline
    def narrow_rows(A, Bp, Cp, t0, t1, transposed):
        """Cp[rows of tiles t0..t1-1] = A @ Bp (A.T @ Bp if ``transposed``),
        Bp (K, NRN)."""
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        M = A.shape[1] if transposed else A.shape[0]
        K = A.shape[0] if transposed else A.shape[1]
        rs, ks = (sa1, sa0) if transposed else (sa0, sa1)
        p = stack_buffer(ACCN, Cp)
        acc = carray(p, (MRN, NRN))
        for t in range(t0, t1):
            i0 = t * MRN
            tile_fma(p, A, i0 * rs, M - i0, rs, ks, Bp, 0, NRN, K, MRN, NRN, VW, 0)
            for r in range(min(MRN, M - i0)):
                for j in range(NRN):
                    Cp[i0 + r, j] = acc[r, j]

    @jit
    def narrow_serial(A, Bp, Cp, transposed):
        narrow_rows(A, Bp, Cp, 0, (Cp.shape[0] + MRN - 1) // MRN, transposed)

    @jit_parallel
    def narrow_parallel(A, Bp, Cp, transposed):
        ntile = (Cp.shape[0] + MRN - 1) // MRN
        ntask = min(ntile, NTASK)
        fp = fp_mode()  # (see intrinsics.swap_fp_mode)
        for task in prange(ntask):
            own = swap_fp_mode(fp)
            narrow_rows(A, Bp, Cp, task * ntile // ntask, (task + 1) * ntile // ntask,
                        transposed)
            swap_fp_mode(own)

    return (tiles_nn, tiles_tn, tiles_nn_serial, tiles_tn_serial, gemm_nn_packed,
            gemm_tn_packed, narrow_serial, narrow_parallel)


@jit
def store_tile(acc, C, i0, j0, jlo, bias, act, H, dact):
    """Write tile rows < M and columns >= jlo, through the epilogue.

    Loop-invariant cases get their own loops over unsigned indices so each
    one vectorises; with a short reduction (small K) a scalar epilogue cost
    as much as the FMAs."""
    M = C.shape[0]
    MR, NRt = acc.shape
    lo = uint64(jlo - j0)
    u0 = uint64(j0)
    w = uint64(NRt) - lo
    has_b = bias.shape[0] > 0
    has_h = H.shape[0] > 0
    zero = C.dtype.type(0)
    for r in range(min(MR, M - i0)):
        i = i0 + r
        if has_h:
            # One loop per derivative so each vectorises (a per-element
            # act_grad() dispatch would not vectorise).
            if dact == RELU:
                for jj in range(w):
                    j = u0 + lo + jj
                    C[i, j] = acc[r, lo + jj] if H[i, j] > 0 else zero
            elif dact == SIGMOID:
                for jj in range(w):
                    j = u0 + lo + jj
                    C[i, j] = acc[r, lo + jj] * (H[i, j] * (1 - H[i, j]))
            elif dact == TANH:
                for jj in range(w):
                    j = u0 + lo + jj
                    C[i, j] = acc[r, lo + jj] * (1 - H[i, j] * H[i, j])
            else:
                for jj in range(w):
                    j = u0 + lo + jj
                    C[i, j] = acc[r, lo + jj] * act_grad(H[i, j], dact)
        elif act == IDENTITY:
            if has_b:
                for jj in range(w):
                    C[i, u0 + lo + jj] = acc[r, lo + jj] + bias[u0 + lo + jj]
            else:
                for jj in range(w):
                    C[i, u0 + lo + jj] = acc[r, lo + jj]
        elif act == RELU:
            for jj in range(w):
                v = acc[r, lo + jj]
                if has_b:
                    v += bias[u0 + lo + jj]
                C[i, u0 + lo + jj] = max(v, zero)
        else:
            for jj in range(w):
                v = acc[r, lo + jj]
                if has_b:
                    v += bias[u0 + lo + jj]
                C[i, u0 + lo + jj] = act_forward(v, act)



_nn32, _tn32, _nn32s, _tn32s, _nn32p, _tn32p, _nar32s, _nar32 = _make_tiles(MR32, VW32)
_nn64, _tn64, _nn64s, _tn64s, _nn64p, _tn64p, _nar64s, _nar64 = _make_tiles(MR64, VW64)


def _make_mid(MR, VW):
    """Serial tiles MID_NR columns wide, with as many accumulators as the
    MR x NR tiles (MR * NR // MID_NR rows), reading B in place: for the
    serial products whose N :func:`_mid` picks (see layout.MID_NR). The
    last column tile is shifted left to end at N, as the wide tiles' is."""
    NRM = max(MID_NR, VW)
    MRM = max(1, MR * NR // NRM)
    ACCM = MRM * NRM

    @jit_inline
    def mid_grid(M, N):
        nfull = N // NRM
        return nfull, nfull + (1 if N % NRM else 0), (M + MRM - 1) // MRM

    @jit
    def mid(A, B, C, bias, act, H, dact, transposed):
        """C = epilogue(A @ B), or A.T @ B if ``transposed``."""
        sa0, sa1 = A.strides[0] // A.itemsize, A.strides[1] // A.itemsize
        rs, ks = (sa1, sa0) if transposed else (sa0, sa1)
        M = A.shape[1] if transposed else A.shape[0]
        K = A.shape[0] if transposed else A.shape[1]
        N = B.shape[1]
        sb = B.strides[0] // B.itemsize
        nfull, ncol, nrow = mid_grid(M, N)
        p = stack_buffer(ACCM, C)
        for t in range(nrow * ncol):
            j0, jlo = _tile_columns(t // nrow, nfull, N, NRM)
            i0 = (t % nrow) * MRM
            tile_fma(p, A, i0 * rs, M - i0, rs, ks, B, j0, sb, K, MRM, NRM, VW, PF)
            store_tile(carray(p, (MRM, NRM)), C, i0, j0, jlo, bias, act, H, dact)

    @jit
    def mid_nn(A, B, C, bias, act, H, dact):
        mid(A, B, C, bias, act, H, dact, False)

    @jit
    def mid_tn(A, B, C):
        mid(A, B, C, np.empty(0, C.dtype), IDENTITY, np.empty((0, 0), C.dtype), IDENTITY, True)

    return mid_nn, mid_tn


_mid_nn32, _mid_tn32 = _make_mid(MR32, VW32)
_mid_nn64, _mid_tn64 = _make_mid(MR64, VW64)


@jit_inline
def _mid(N):
    """Whether an N-column output runs on the MID_NR-wide serial tiles."""
    return MID_NR > 0 and (MID_NR <= N < NR or (N % MID_NR == 0 and N % NR != 0))


# Dispatch on C's dtype at typing time, so each specialisation compiles only
# its own tile shape. (A runtime `if C.itemsize == 4` compiled both tile
# drivers for both dtypes: twice the cold-start compile time.) One factory
# per argument list; each returns a function callable from compiled code.
def _by_dtype_nn(f32, f64):
    def run(A, B, C, bias, act, H, dact):
        raise NotImplementedError  # only callable from compiled code

    @overload(run, jit_options=dict(cache=CACHE))
    def _typed(A, B, C, bias, act, H, dact):
        f = f32 if C.dtype == types.float32 else f64
        return lambda A, B, C, bias, act, H, dact: f(A, B, C, bias, act, H, dact)

    return run


def _by_dtype_tn(f32, f64):
    def run(A, B, C):
        raise NotImplementedError  # only callable from compiled code

    @overload(run, jit_options=dict(cache=CACHE))
    def _typed(A, B, C):
        f = f32 if C.dtype == types.float32 else f64
        return lambda A, B, C: f(A, B, C)

    return run


def _by_dtype_packed(f32, f64):
    def run(A, B, C, bias, act, H, dact, bp, transposed):
        raise NotImplementedError  # only callable from compiled code

    @overload(run, jit_options=dict(cache=CACHE))
    def _typed(A, B, C, bias, act, H, dact, bp, transposed):
        f = f32 if C.dtype == types.float32 else f64
        return lambda A, B, C, bias, act, H, dact, bp, transposed: f(A, B, C, bias, act, H,
                                                                      dact, bp, transposed)

    return run


def _by_dtype_scratch(f32, f64):
    def run(A, B, C, bp):
        raise NotImplementedError  # only callable from compiled code

    @overload(run, jit_options=dict(cache=CACHE))
    def _typed(A, B, C, bp):
        f = f32 if C.dtype == types.float32 else f64
        return lambda A, B, C, bp: f(A, B, C, bp)

    return run


_tiles_nn = _by_dtype_nn(_nn32, _nn64)
_tiles_nn_serial = _by_dtype_nn(_nn32s, _nn64s)
_gemm_nn_packed = _by_dtype_packed(_nn32p, _nn64p)
_tiles_tn = _by_dtype_tn(_tn32, _tn64)
_tiles_tn_serial = _by_dtype_tn(_tn32s, _tn64s)
_gemm_tn_packed = _by_dtype_scratch(_tn32p, _tn64p)
# (A, padded B, C, transposed): the argument list of _by_dtype_scratch's
_narrow_tiles_serial = _by_dtype_scratch(_nar32s, _nar64s)
_narrow_tiles = _by_dtype_scratch(_nar32, _nar64)
_mid_nn = _by_dtype_nn(_mid_nn32, _mid_nn64)
_mid_tn = _by_dtype_tn(_mid_tn32, _mid_tn64)


@jit_inline
def _tile_columns(t, nfull, N, width):
    """Start column and first stored column of column tile ``t`` of tiles
    ``width`` wide (``nfull`` full ones, the last shifted to end at N)."""
    if t < nfull:
        return t * width, t * width
    return N - width, nfull * width


@jit
def _col_tile(t, nfull, N):
    """Start column and first stored column of column tile ``t``."""
    return _tile_columns(t, nfull, N, NR)


@jit
def _rem_product(A, B, j1, transposed):
    """AVX2's remainder columns ``j1:N`` of ``A @ B`` (``A.T @ B`` if
    ``transposed``): the first N - j1 columns of an (M, NARROW_NR) scratch,
    from the narrow tiles on those columns of B zero-padded, on the calling
    thread.

    Why tiles there: each element is then the same chain of fused
    multiply-adds over k as in a full tile, so these columns round exactly
    as the shifted 16-column tile they replace did. The dot products below
    (AVX-512's) round differently, and with them the classic float32 run
    (lr 0.5, tests/test_mnist_training.py) blew up at epoch ~15 on AVX2
    (test accuracy 97.7% -> 83%, ending at 96%)."""
    M = A.shape[1] if transposed else A.shape[0]
    Bp = _pad_columns(B[:, j1:], NARROW_NR)
    Cp = np.empty((M, NARROW_NR), A.dtype)
    _narrow_tiles_serial(A, Bp, Cp, transposed)
    return Cp


@jit
def _rem_nn(A, B, C, bias, act, H, dact, j1):
    """Columns ``j1:N`` of ``C = epilogue(A @ B)``. AVX2: the products of
    :func:`_rem_product` through :func:`store_tile`. AVX-512: per element a
    dot product of A's row with the column of B (copied contiguous), which
    LLVM vectorises over K, and the epilogue as in store_tile."""
    M, K = A.shape
    N = B.shape[1]
    w = N - j1
    if w == 0:
        return
    if not AVX512:
        store_tile(_rem_product(A, B, j1, False)[:, :w], C, 0, j1, j1, bias, act, H, dact)
        return
    Bt = np.empty((w, K), C.dtype)
    for k in range(K):
        for j in range(w):
            Bt[j, k] = B[k, j1 + j]
    has_b = bias.shape[0] > 0
    has_h = H.shape[0] > 0
    for i in range(M):
        for j in range(w):
            s = C.dtype.type(0)
            for k in range(uint64(K)):
                s += A[i, k] * Bt[j, k]
            if has_h:
                s *= act_grad(H[i, j1 + j], dact)
            else:
                if has_b:
                    s += bias[j1 + j]
                s = act_forward(s, act)
            C[i, j1 + j] = s


@jit
def _rem_tn(A, B, C, j1):
    """Columns ``j1:N`` of ``C = A.T @ B`` (A (K, M)). AVX2: from
    :func:`_rem_product`. AVX-512: each as a sum over k of ``B[k, j] *
    A[k, :]``, vectorised over A's contiguous rows, then stored into C's
    columns."""
    K, M = A.shape
    N = B.shape[1]
    w = N - j1
    if w == 0:
        return
    if not AVX512:
        Cp = _rem_product(A, B, j1, True)
        for i in range(M):
            for j in range(w):
                C[i, j1 + j] = Cp[i, j]
        return
    T = np.zeros((w, M), C.dtype)
    for k in range(K):
        for j in range(w):
            b = B[k, j1 + j]
            for i in range(uint64(M)):
                T[j, i] += b * A[k, i]
    for i in range(M):
        for j in range(w):
            C[i, j1 + j] = T[j, i]


# ---------------------------------------------------------------------------
# drivers
# ---------------------------------------------------------------------------
@jit
def _pad_columns(B, NRp):
    """B (K, N < NR) copied into a zero-padded (K, NR) scratch."""
    K, N = B.shape
    Bp = np.zeros((K, NRp), B.dtype)
    for k in range(K):
        for j in range(N):
            Bp[k, j] = B[k, j]
    return Bp


@jit
def _dot_rows(A, BT, Cp, i0, i1):
    """Cp[i0:i1] = A[i0:i1] @ BT.T, one dot product along K per cell, four
    rows of A against each row of BT at a time (so each BT vector loaded
    serves four sums)."""
    N, K = BT.shape
    kk = uint64(K)
    z = A.dtype.type(0)
    i = i0
    while i + 4 <= i1:
        for j in range(N):
            s0 = z
            s1 = z
            s2 = z
            s3 = z
            for k in range(kk):
                b = BT[j, k]
                s0 += A[i, k] * b
                s1 += A[i + 1, k] * b
                s2 += A[i + 2, k] * b
                s3 += A[i + 3, k] * b
            Cp[i, j] = s0
            Cp[i + 1, j] = s1
            Cp[i + 2, j] = s2
            Cp[i + 3, j] = s3
        i += 4
    for r in range(i, i1):
        for j in range(N):
            s = z
            for k in range(kk):
                s += A[r, k] * BT[j, k]
            Cp[r, j] = s


@jit
def _axpy_rows(A, B, CT, c0, c1):
    """CT[:, c0:c1] = (A[:, c0:c1].T @ B).T: each row r of A, times B[r, j],
    added to row j of CT, vectorised along the row (CT stays in L1)."""
    R = A.shape[0]
    N = B.shape[1]
    w = uint64(c1 - c0)
    s = uint64(c0)
    for j in range(N):
        for c in range(w):
            CT[j, s + c] = 0
    for r in range(R):
        for j in range(N):
            d = B[r, j]
            for c in range(w):
                CT[j, s + c] += A[r, s + c] * d


@jit
def _dot_product(A, B, Cp, M, K, transposed):
    """Cp (M, N) = A @ B (A.T @ B if ``transposed``) for N <= DOT_MAX_N:
    dot products along K, or for A.T row updates of C.T; on the calling
    thread, as at these widths even a 1024-row batch's product is a few
    microseconds (and a serial kernel may run inside a parallel region)."""
    N = B.shape[1]
    if transposed:
        CT = np.empty((N, M), A.dtype)
        _axpy_rows(A, B, CT, 0, M)
        for i in range(M):
            for j in range(N):
                Cp[i, j] = CT[j, i]
        return
    BT = np.empty((N, K), A.dtype)
    for k in range(K):
        for j in range(N):
            BT[j, k] = B[k, j]
    _dot_rows(A, BT, Cp, 0, M)


@jit
def _narrow_start(A, B, C, M, K, serial, transposed):
    """An output narrower than a tile: (Cp, Bp, done), Bp = B zero-padded
    to NARROW_NR columns if it has at most that many (then Cp = A @ Bp, or
    A.T @ Bp, is computed here on the narrow tiles: done) or else to one
    tile, Cp the (M, width) scratch for the product. At most DOT_MAX_N
    columns over at least one vector of K: Cp (M, N) from dot products
    instead (done). (Over fewer terms there is nothing to vectorise: the
    tiles keep one chain of fused multiply-adds per cell there.)"""
    if B.shape[1] <= DOT_MAX_N and K >= VW32:
        Cp = np.empty((M, B.shape[1]), C.dtype)
        _dot_product(A, B, Cp, M, K, transposed)
        return Cp, B, True
    width = NARROW_NR if B.shape[1] <= NARROW_NR else NR
    Cp = np.empty((M, width), C.dtype)
    Bp = _pad_columns(B, width)
    done = width == NARROW_NR and NARROW_NR < NR
    if done:
        if serial or M * K * width <= SERIAL_MAX_MACS:
            _narrow_tiles_serial(A, Bp, Cp, transposed)
        else:
            _narrow_tiles(A, Bp, Cp, transposed)
    return Cp, Bp, done


@jit
def _narrow_nn(A, B, C, bias, act, H, dact, serial):
    # Outputs narrower than a tile: B is zero-padded to one vector (at most
    # that many columns: the one-vector tiles) or to one tile, the product
    # computed into scratch, and the N real columns copied out through the
    # epilogue: ~3x faster than a plain row loop.
    M, K = A.shape
    N = B.shape[1]
    Cp, Bp, done = _narrow_start(A, B, C, M, K, serial, False)
    # The tile drivers directly, not gemm_nn_fused: a recursive call cycle
    # breaks Numba's on-disk cache (cached code segfaulted).
    nob = np.empty(0, C.dtype)
    noh = np.empty((0, 0), C.dtype)
    if not done:
        if serial or _small(M, K, NR):
            _tiles_nn_serial(A, Bp, Cp, nob, IDENTITY, noh, IDENTITY)
        else:
            _tiles_nn(A, Bp, Cp, nob, IDENTITY, noh, IDENTITY)
    if H.shape[0] == 0 and act == IDENTITY:
        # The common case (a softmax/linear output layer): no per-element
        # activation dispatch.
        if bias.shape[0] > 0:
            for i in range(M):
                for j in range(N):
                    C[i, j] = Cp[i, j] + bias[j]
        else:
            for i in range(M):
                for j in range(N):
                    C[i, j] = Cp[i, j]
        return
    for i in range(M):
        for j in range(N):
            v = Cp[i, j]
            if bias.shape[0] > 0:
                v += bias[j]
            v = act_forward(v, act)
            if H.shape[0] > 0:
                v *= act_grad(H[i, j], dact)
            C[i, j] = v


@jit
def _narrow_tn(A, B, C, serial):
    K, M = A.shape
    N = B.shape[1]
    Cp, Bp, done = _narrow_start(A, B, C, M, K, serial, True)
    if not done:
        if serial or _small(M, K, NR):
            _tiles_tn_serial(A, Bp, Cp)
        else:
            _tiles_tn(A, Bp, Cp)
    for i in range(M):
        for j in range(N):
            C[i, j] = Cp[i, j]


@jit
def _thin_nn(A, B, C, bias, act, H, dact):
    """C = epilogue(A @ B) for K <= THIN_K (the input gradient of an output
    layer of a few units): each row of C summed from the K rows of B in a
    one-row scratch, vectorised over its columns, then stored through the
    tiles' epilogue (:func:`store_tile`). The tiles' fixed work per tile
    outweighs K multiply-adds there."""
    M, K = A.shape
    N = B.shape[1]
    n = uint64(N)
    acc = np.empty((1, N), C.dtype)
    row = acc[0]
    for i in range(M):
        b = B[0]
        a = A[i, 0]
        for j in range(n):
            row[j] = a * b[j]
        for k in range(1, K):
            b = B[k]
            a = A[i, k]
            for j in range(n):
                row[j] += a * b[j]
        store_tile(acc, C, i, 0, 0, bias, act, H, dact)


@jit
def _small(M, K, N):
    return tile_macs(M, K, N) <= SERIAL_MAX_MACS


@jit_inline
def _pack_panel(B, Bs, j0, transposed):
    """Bs (K, NR) = B[:, j0:j0+NR], or W.T's columns from B = W (N, K) if
    ``transposed``.

    W is read 8 columns of a row at a time, the row's next 8 elements
    right after: rows a multiple of 1 KiB apart (1024 or 256 float32
    inputs) all fall in a few L1 sets, and read a column at a time across
    the NR rows each cache line was evicted before its next column was
    read (a 1024 x 1024 float32 W packed in 2.7 ms instead of 0.35 ms)."""
    K = Bs.shape[0]
    u0 = uint64(j0)
    if transposed:
        k8 = K // 8 * 8
        for k0 in range(0, k8, 8):
            for j in range(uint64(NR)):
                for kk in range(8):
                    Bs[k0 + kk, j] = B[u0 + j, k0 + kk]
        for k in range(k8, K):
            for j in range(uint64(NR)):
                Bs[k, j] = B[u0 + j, k]
    else:
        for k in range(K):
            for j in range(uint64(NR)):
                Bs[k, j] = B[k, u0 + j]


@jit_parallel
def pack_panels(B, Bp):
    """Bp[c, k, :] = B[k, j0(c):j0(c)+NR] for every column tile c (the last
    one shifted to end at N, as the tiles are)."""
    N = B.shape[1]
    nfull = N // NR
    for c in prange(Bp.shape[0]):
        j0, jlo = _col_tile(c, nfull, N)
        _pack_panel(B, Bp[c], j0, False)


@jit_parallel
def pack_panels_transposed(W, Bp):
    """Bp as pack_panels(W.T) would make it, read straight from W (N, K):
    Bp[c, k, j] = W[j0(c) + j, k]. Replaces a transpose plus a pack of the
    backward's W.T with one pass (its order of reads: :func:`_pack_panel`)."""
    N = W.shape[0]
    nfull = N // NR
    for c in prange(Bp.shape[0]):
        j0, jlo = _col_tile(c, nfull, N)
        _pack_panel(W, Bp[c], j0, True)


@jit
def _panels_transposed(W, bp):
    """W.T packed into ``bp`` (allocated if too small), as (ncol, K, NR)."""
    N, K = W.shape
    size = packed_size(K, N)
    if bp.shape[0] < size:
        bp = np.empty(size, W.dtype)
    Bp = bp[:size].reshape(((N + NR - 1) // NR, K, NR))
    pack_panels_transposed(W, Bp)
    return Bp


@jit_inline
def gemm_nt_fused_into(A, W, C, bias, act, H, dact, WT, bp):
    """C = epilogue(A @ W.T), W (N, K). Outputs of at least NT_PACK_MIN_N
    columns (layout.py) pack W.T straight from W, each task its panels;
    otherwise W is transposed into the scratch ``WT`` (K, N) and the nn
    kernel runs."""
    M, K = A.shape
    N = W.shape[0]
    if K <= THIN_K and N >= NR:
        transpose_into(W, WT)
        _thin_nn(A, WT, C, bias, act, H, dact)
    elif not _small(M, K, N) and N >= NT_PACK_MIN_N:
        _gemm_nn_packed(A, W, C, bias, act, H, dact, bp, True)
        # Columns the tiles leave to the remainder kernels (AVX2's 100 = 96
        # + 4), read from W.T's columns in place.
        _rem_nn(A, W.T, C, bias, act, H, dact, _rem_start(N))
    else:
        transpose_into(W, WT)
        gemm_nn_fused_into(A, WT, C, bias, act, H, dact, bp)


@jit
def _task_pack(N):
    """Whether an output of N columns packs B's panels per task
    (layout.TASK_PACK): by its count of column tiles."""
    return TASK_PACK and _grid(1, N, 1)[1] >= TASK_PACK_MIN_PANELS


@jit
def _task_slots(K, N, bp):
    """Per-task panel slots (ntask, K, NR) at the front of ``bp`` (allocated
    if too small): min(panels, NTASK) <= panels, so packed_size(K, N)
    elements always hold them."""
    ntask = min((N + NR - 1) // NR, NTASK)
    if bp.shape[0] < ntask * K * NR:
        bp = np.empty(ntask * K * NR, bp.dtype)
    return bp[:ntask * K * NR].reshape((ntask, K, NR))


@jit
def _panels(B, bp):
    """B packed into ``bp`` (allocated if too small), as (ncol, K, NR)."""
    K, N = B.shape
    size = packed_size(K, N)
    if bp.shape[0] < size:
        bp = np.empty(size, B.dtype)
    Bp = bp[:size].reshape(((N + NR - 1) // NR, K, NR))
    pack_panels(B, Bp)
    return Bp


@jit_inline
def gemm_nn_fused_into(A, B, C, bias, act, H, dact, bp):
    """C = epilogue(A @ B); see :func:`store_tile` for the epilogue. ``bp`` is
    scratch for packing B (see PACK_MIN_N); too small (e.g. empty) means
    allocate."""
    M, K = A.shape
    N = B.shape[1]
    if _mid(N) and _small(M, K, N):
        _mid_nn(A, B, C, bias, act, H, dact)
    elif N < NR:
        _narrow_nn(A, B, C, bias, act, H, dact, False)
    elif _small(M, K, N):
        _tiles_nn_serial(A, B, C, bias, act, H, dact)
        _rem_nn(A, B, C, bias, act, H, dact, _rem_start(N))
    elif N >= PACK_MIN_N:
        _gemm_nn_packed(A, B, C, bias, act, H, dact, bp, False)
    else:
        _tiles_nn(A, B, C, bias, act, H, dact)
        _rem_nn(A, B, C, bias, act, H, dact, _rem_start(N))


@jit_inline
def gemm_tn_into(A, B, C, bp):
    """C = A.T @ B, with A (K, M), B (K, N), C (M, N); ``bp`` as in
    :func:`gemm_nn_fused_into`."""
    K, M = A.shape
    N = B.shape[1]
    if _mid(N) and _small(M, K, N):
        _mid_tn(A, B, C)
    elif N < NR:
        _narrow_tn(A, B, C, False)
    elif _small(M, K, N):
        _tiles_tn_serial(A, B, C)
        _rem_tn(A, B, C, _rem_start(N))
    elif tn_packs(K, M, N, A.itemsize):
        _gemm_tn_packed(A, B, C, bp)
    else:
        _tiles_tn(A, B, C)
        _rem_tn(A, B, C, _rem_start(N))


@jit
def gemm_nn_fused(A, B, C, bias, act, H, dact):
    """C = epilogue(A @ B), packing scratch allocated when needed."""
    gemm_nn_fused_into(A, B, C, bias, act, H, dact, np.empty(0, C.dtype))


@jit
def gemm_tn(A, B, C):
    """C = A.T @ B, with A (K, M), B (K, N), C (M, N)."""
    gemm_tn_into(A, B, C, np.empty(0, C.dtype))


@jit_inline
def transpose_into(B, BT):
    """BT = B.T; small matrices on the calling thread (a parallel region
    costs more than transposing a few thousand elements)."""
    K, N = B.shape
    if K * N <= SMALL_COPY_ELEMENTS:
        transpose_serial(B, BT)
    else:
        _transpose_parallel(B, BT)


@jit
def transpose_serial(B, BT):
    """BT = B.T on the calling thread, in 8 x 8 blocks: a block's 8 source
    rows and 8 destination rows stay in L1, and LLVM turns the constant
    block into shuffles (256 x 256 float32: 18 us, a column walk 60 us)."""
    K, N = B.shape
    k8 = K // 8 * 8
    j8 = N // 8 * 8
    for k0 in range(0, k8, 8):
        for j0 in range(0, j8, 8):
            for j in range(8):
                for k in range(8):
                    BT[j0 + j, k0 + k] = B[k0 + k, j0 + j]
    for j in range(N):
        for k in range(k8, K):
            BT[j, k] = B[k, j]
    for j in range(j8, N):
        for k in range(k8):
            BT[j, k] = B[k, j]


@jit_parallel
def _transpose_parallel(B, BT):
    """BT = B.T (a packing step: lets gemm_nt reuse the row-major tile).

    Each task fills 8 rows of BT, walking B's columns in 128-row chunks: the
    8 source columns share cache lines and the 8 destination rows stream.
    Measured 9x faster than a plain loop at 1024^2 (rows of B 4 KiB apart
    all map to one L1 set, so naive column walks thrash)."""
    K, N = B.shape
    for bj in prange((N + 7) // 8):
        j0 = bj * 8
        j1 = min(N, j0 + 8)
        for k0 in range(0, K, 128):
            for j in range(j0, j1):
                for k in range(k0, min(K, k0 + 128)):
                    BT[j, k] = B[k, j]


@jit_inline
def gemm_nn_fused_serial(A, B, C, bias, act, H, dact):
    """gemm_nn_fused entirely on the calling thread (for use inside a
    parallel region)."""
    N = B.shape[1]
    if _mid(N):
        _mid_nn(A, B, C, bias, act, H, dact)
    elif N < NR:
        _narrow_nn(A, B, C, bias, act, H, dact, True)
    else:
        _tiles_nn_serial(A, B, C, bias, act, H, dact)
        _rem_nn(A, B, C, bias, act, H, dact, _rem_start(N))


@jit_inline
def input_grad_serial(dU, WT, dX, H, dact):
    """The input gradient dX = (dU @ W.T) * act'(H) (``dact``; H empty:
    none) on the calling thread, from W.T in ``WT``: rows from K <= THIN_K
    rows of W.T (:func:`_thin_nn`), else the serial tiles. (Only the input
    gradients take the thin path: in every matmul it lengthened a cold
    compile by a tenth.)"""
    nob = np.empty(0, dX.dtype)
    if WT.shape[0] <= THIN_K and WT.shape[1] >= NR:
        _thin_nn(dU, WT, dX, nob, IDENTITY, H, dact)
    else:
        gemm_nn_fused_serial(dU, WT, dX, nob, IDENTITY, H, dact)


@jit_inline
def gemm_tn_serial(A, B, C):
    """gemm_tn entirely on the calling thread."""
    N = B.shape[1]
    if _mid(N):
        _mid_tn(A, B, C)
    elif N < NR:
        _narrow_tn(A, B, C, True)
    else:
        _tiles_tn_serial(A, B, C)
        _rem_tn(A, B, C, _rem_start(N))


@jit
def gemm_nn(A, B, C):
    """C = A @ B, with A (M, K), B (K, N), C (M, N)."""
    gemm_nn_fused(A, B, C, np.empty(0, C.dtype), IDENTITY,
                  np.empty((0, 0), C.dtype), IDENTITY)


@jit
def gemm_nt(A, B, C, BT):
    """C = A @ B.T, with A (M, K), B (N, K), C (M, N); BT is (K, N) scratch
    (B.T, or for wide outputs B.T's packed panels: see gemm_nt_fused_into,
    whose non-packing branch does not use ``bp``)."""
    gemm_nt_fused_into(A, B, C, np.empty(0, C.dtype), IDENTITY, np.empty((0, 0), C.dtype),
                       IDENTITY, BT, BT.reshape(-1))
