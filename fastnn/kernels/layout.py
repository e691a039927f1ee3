"""Tile shapes, work splits and size thresholds of the kernels, in one place.

Each value was chosen by measurement on 2 cores (the why is next to it, the
figures on the documentation's performance page);
:mod:`.matmul` and :mod:`.sparse` use them, :mod:`fastnn.engine.memory` sizes the
scratch buffers with :func:`packed_size` and :func:`tn_packed_size`.
"""
from .._config import AVX512, TARGET_CPU, TARGET_ISA, ZEN, jit  # noqa: F401 (for reports)

# Each constant has a one-line reason; the measurements behind them are in
# docs/performance.md ("How the constants were chosen").

# --- dense register tiles (matmul.py) --------------------------------------
# A tile is MR rows x NR columns of accumulators in vector registers
# (intrinsics.tile_fma): each step loads NR/VW vectors of B, broadcasts MR of A.
NR = 48 if AVX512 else 16
# 24 accumulators of 32 zmm (AVX-512), 12 of 16 ymm (AVX2, the shape BLAS uses).
MR32 = 8 if AVX512 else 6
MR64 = 4 if AVX512 else 3
# Elements per vector register: 512-bit zmm, else the 256-bit ymm of AVX2
# (SSE-only CPUs: LLVM splits each in two; correct, not tuned).
VEC_BYTES = 64 if AVX512 else 32
VW32 = VEC_BYTES // 4
VW64 = VEC_BYTES // 8
# Outputs of at most this many columns get tiles one float32 vector wide.
NARROW_NR = VW32
# Serial products (row-split halves, small products) of MID_NR <= N < NR
# columns, or of a multiple of MID_NR that is not one of NR (64, 128, 256),
# run on tiles MID_NR wide: a 32-wide layer's products padded B and C to one
# 48-column tile, a 64-wide one's took a remainder kernel over padded
# copies, a 256-wide one's computed 288 columns. Zen 4, 20k rows, one
# thread: 50-32x8-3 b32 80 -> 37 ms/epoch, 8-64-64-1 b64 21 -> 15,
# 54-128-64-7 29 -> 25, 28-256-256-2 102 -> 95. 0: none (AVX2's tiles are
# 16 wide already).
MID_NR = 32 if AVX512 else 0
# ... and of at most this many, dot products along K instead (a tile one
# vector wide computes 16 columns for 1 or 2; 256x256x2 float32 on Zen 4:
# forward 21 -> 6 us, weight gradient 22 -> 8; at 7 columns the tiles tie).
DOT_MAX_N = 4
MAX_MR = max(MR32, MR64)  # sizes the scratch of packed row tiles
# Up to REM_MAX columns past one or two full tiles (50 = 48 + 2) come from
# short remainder kernels, not a whole shifted tile computing 48 columns for 2.
REM_MAX = NR // 3
REM_MAX_TILES = 96 // NR
# Tasks per product, each a run of tiles in column-panel order, so that
# consecutive tiles reuse one panel of B from L2. Also the sparse kernels'.
NTASK = 32
# Rows of B prefetched ahead by the tiles (see intrinsics.py).
PF = 12
# Batch rows whose CSR data the sparse first layer prefetches ahead
# (sparse_partial_rows; shuffled MNIST batches, one thread over both halves:
# 112 us a batch without, 103 at 2 rows ahead, 95 at 4).
ROW_PREFETCH = 4
# Products over at most this many terms (K) build each row of C in place
# from K rows of B instead of tiles: an output layer's input gradient.
THIN_K = 7
# Below this many multiply-adds a parallel region's start and join cost more
# than the second thread saves (break-even near 100x100x50).
SERIAL_MAX_MACS = 400_000

# From this width B's rows are far apart (a new page per row at 1024 float32)
# and tiles read it from packed contiguous panels instead.
PACK_MIN_N = 256
# X.T @ dU packs X's row tiles and dU's panels from 6 tiles wide (below
# PACK_MIN_N on AVX2 only) once X holds TN_PACK_MIN_KM elements: read in
# place, X's rows far apart thrash L1; narrower, packing X costs more.
TN_PACK_MIN_N = 6 * NR
TN_PACK_MIN_KM = 65536
# From TN_PACK_MIN_MN inputs and columns once X outgrows a core's L2: each
# column panel re-read X from L3, rows a power of two apart worst (float32
# X 1024 x 1024, 100 columns, 2 threads: 1.24-1.32 ms in place, 0.81-0.82
# packed; 512 x 512 still 164-175 us in place, 217-238 packed). Narrower
# X (short rows, read in order) or one tile and a few columns (packed X
# read twice) stay faster in place: 16384 x 32 x 100 1.05-1.11 ms against
# 1.18-1.20, 20000 x 100 x 50 2.12-2.14 against 2.56-2.57.
TN_PACK_MIN_BYTES = 2 << 20
TN_PACK_MIN_MN = 64
# Rows of A per step of packing its tn row tiles (matmul.pack_rows_t): a
# 1024 x 1024 float32 A packed in 179 us instead of 333-385 (2 threads).
PACK_ROWS_K = 64
# dU @ W.T packs W.T's panels from W per task; on AVX2 and AMD Zen hosts
# from 2 tiles wide, since a shared transposed copy moved written lines
# between cores (Zen 4, 100x784x100: 59-113 -> 126-129 GFLOP/s).
NT_PACK_MIN_N = PACK_MIN_N if AVX512 and not ZEN else 2 * NR
# AVX2 and Zen: each task packs a panel just before its tiles read it (from
# L2, not L3); needs enough panels to balance two threads.
TASK_PACK = not AVX512 or ZEN
TASK_PACK_MIN_PANELS = 16

# Copies and transposes of at most this many elements stay on the calling
# thread: a parallel region costs more than moving a few thousand values.
SMALL_COPY_ELEMENTS = 16384

# --- sparse first layer (sparse.py) ----------------------------------------
# Columns per pass over a row's non-zeros: 112 = 7 cache lines of float32,
# so the classic 100-wide layer reads 7 lines of W per non-zero, not 9.
SPARSE_GROUP = 112
# Readable elements needed after the last row of an aligned copy: the last
# column group may reach up to SPARSE_GROUP - 1 elements past its row.
SLACK = SPARSE_GROUP
# Rows aligned to 64 bytes of float32: cache-line-split loads run ~1.8x slower.
ALIGN_ELEMENTS = 16

# --- inference (train.predict_rows) -----------------------------------------------------
# First layer of a prediction: GATHER_MR rows x GATHER_NV vectors stepping
# only over columns where one of the rows is non-zero; few rows skip more.
GATHER_MR = 3
GATHER_NV = 7 if AVX512 else 3
# AVX2: sparse rows go one per tile, 13 vectors (the 100-wide layer in one
# pass), each over its own non-zeros; 0 keeps AVX-512 on its 3-row tiles.
ROW_GATHER_NV = 0 if AVX512 else 13
# Row by row when a block's rows hold at most this many times as many
# non-zeros as their union has columns (the crossover measured on Zen 2).
ROW_GATHER_RATIO = 2.0
# Rows per inference task block: the first layer's output for them stays in
# L1/L2 while the next layers run on it (serial tiles inside the task).
INFER_ROWS = 60


def padded_width(n):
    """Row stride of the aligned copies: n rounded up to ALIGN_ELEMENTS."""
    return (n + ALIGN_ELEMENTS - 1) // ALIGN_ELEMENTS * ALIGN_ELEMENTS


def tn_packs(K, M, N, itemsize):
    """Whether X.T @ dU, X (K, M) and dU (K, N) of ``itemsize``-byte
    elements, reads packed operands (PACK_MIN_N, TN_PACK_MIN_N,
    TN_PACK_MIN_BYTES): the memory module sizes scratch for them."""
    return (N >= PACK_MIN_N or (N >= TN_PACK_MIN_N and K * M >= TN_PACK_MIN_KM)
            or (min(M, N) >= TN_PACK_MIN_MN and K * M * itemsize >= TN_PACK_MIN_BYTES))


# The same for the kernels. Python callers keep the plain functions, so that a
# cold first fit does not wait for these to compile.
padded_width_jit = jit(padded_width)
tn_packs_jit = jit(tn_packs)


@jit
def packed_size(K, N):
    """Elements of scratch pack_panels needs for a (K, N) matrix."""
    return (N + NR - 1) // NR * K * NR


@jit
def tile_macs(M, K, N):
    """Multiply-adds of an (M, K) @ (K, N) product counted over whole tiles."""
    return (M + MAX_MR - 1) // MAX_MR * MAX_MR * K * ((N + NR - 1) // NR * NR)


def tn_packed_size(K, M, N):
    """Scratch for a packed tn product, A (K, M) and B (K, N): B's panels
    plus A's row tiles (rows rounded up to MAX_MR)."""
    return packed_size(K, N) + (M + MAX_MR - 1) // MAX_MR * MAX_MR * K


# Row-split batches: a dense network whose weight matrices all fit a core's
# L2 trains batches of at least 2 x SPLIT_MIN_ROWS rows as two halves side by
# side, one per thread, with serial products, and adds the two gradients:
# cheaper than moving each layer's data between the cores per product.
# Decided by the shapes alone, never the thread count, so results do not
# depend on the threads. Each half rebuilds the transposed W of the layers
# above the first per batch (a blocked copy: 256 x 256 in ~18 us). The
# halves share no written data but the gradients, which matters most when a
# VM's two vCPUs sit on different core complexes (a cache line's round trip
# ~330 ns instead of ~60): 28-256-256-2 batch 512 runs 0.51 s/epoch split,
# 0.57 whole, and 0.61 against 0.90 in that placement (Zen 4). From 16
# rows a half: batch 32 runs 5-30% faster split than whole on one complex
# (50-32x5-3 48 -> 34 ms/epoch, 784-100-50-10 125 -> 103); on two only
# 64-50-10 loses (22 -> 27 ms), which the thread chooser catches.
SPLIT_MIN_ROWS = 16
SPLIT_MAX_WEIGHTS = 131072
# A sparse first layer splits from smaller batches: its weight gradient is
# formed once for the whole batch, by rows of W, so halves cost less there.
SPLIT_MIN_ROWS_SPARSE = 8


def row_split(layers, batch_size, sparse=False):
    """Whether batches of ``batch_size`` rows of a network of widths
    ``layers`` (the first layer ``sparse`` or dense) train as two row
    halves (see SPLIT_MAX_WEIGHTS)."""
    if batch_size < 2 * (SPLIT_MIN_ROWS_SPARSE if sparse else SPLIT_MIN_ROWS):
        return False
    for l in range(len(layers) - 1):
        k, n = int(layers[l]), int(layers[l + 1])
        if k * n > SPLIT_MAX_WEIGHTS:
            return False
    return True
