"""Tile shapes, work splits and size thresholds of the kernels, in one place.

Each value was chosen by measurement on 2 cores (the why is next to it);
:mod:`.matmul` and :mod:`.sparse` use them, :mod:`fastnn.engine.memory` sizes the
scratch buffers with :func:`packed_size` and :func:`tn_packed_size`.
"""
from .._config import AVX512, TARGET_ISA, jit  # noqa: F401 (TARGET_ISA: for reports)

# --- dense register tiles (matmul.py) --------------------------------------
# A tile is MR rows x NR columns of accumulators held in vector registers
# (intrinsics.tile_fma): each step of the reduction loads NR/VW vectors of B
# and broadcasts MR values of A. Chosen per instruction set, measured with
# `python bench/gemm_isa.py` against np.matmul (2 threads, float32 unless
# said; AVX2 = real AVX2 code built on an AVX-512 host, NUMBA_CPU_NAME=haswell
# and NUMBA_CPU_FEATURES without avx512*, against OpenBLAS's own Haswell
# kernels, OPENBLAS_CORETYPE=Haswell):
# * AVX-512 (32 zmm): 8 x 48 float32, 4 x 48 float64 (24 accumulators).
#   16 x 24 and 12 x 32 ran 0.55-0.93 where 8 x 48 ran 0.95-1.1.
# * AVX2 (16 ymm): 6 x 16 float32, 3 x 16 float64 (12 accumulators, the
#   shape BLAS kernels use). Each element of B loaded feeds MR
#   multiply-adds: the former 2 x 48 tile streamed three cache lines of B
#   per step for 12 FMAs, and ran at 0.50-0.53 of np.matmul on 512^3 and
#   256x1024x1024; 6 x 16 runs at 0.85-0.98 there (1.1-1.2 on the classic
#   100x784x100); 4 x 24 0.87-0.92; 3 x 32 0.63-0.69. float64 3 x 16
#   0.60-0.96 (was 0.49-0.72). On a real AVX2 host (AMD EPYC, Zen 2) the
#   float64 3 x 16 tile spilled (12 accumulators + 4 vectors of B + a
#   broadcast: 17 registers) and ran at 0.46-0.49 of np.matmul on 512^3 and
#   256x1024x1024 (2 x 16: 0.79-0.84); with tile_fma loading B one vector
#   at a time after the broadcasts (16 registers) 3 x 16 runs at 0.93-1.27.
NR = 48 if AVX512 else 16
MR32 = 8 if AVX512 else 6
MR64 = 4 if AVX512 else 3
# Elements per vector register: 512-bit zmm, else the 256-bit ymm of AVX2
# (SSE-only CPUs: LLVM splits each in two; correct, not tuned).
VEC_BYTES = 64 if AVX512 else 32
VW32 = VEC_BYTES // 4
VW64 = VEC_BYTES // 8
# Outputs of at most this many columns get tiles this wide (matmul's
# _narrow_nn/_narrow_tn): one float32 vector, two float64 ones.
NARROW_NR = VW32
MAX_MR = max(MR32, MR64)  # the largest MR: scratch for packed row tiles is sized with it
# Remainder columns: an output of one or two full tiles plus at most REM_MAX
# columns (the classic and digits hidden layers: 50 = 48 + 2, 100 = 96 + 4)
# gets those columns from short vectorised dot products (nn) or row updates
# (tn) instead of a whole extra tile shifted to end at N, which computed
# 48 columns for 2. Measured (1 thread, 2-core AVX-512 Xeon): 200x64 @ 64x50
# 22 -> 12 us. Wider outputs keep the shifted tile (its waste is a small
# share of their work, the remainder loops would run on one thread).
# Outputs up to 96 columns + REM_MAX (AVX-512: 48 or 96 + <= 16; AVX2: 16..96
# + <= 5): on AVX2 the digits layer's 50 = 48 + 2 had a fourth, shifted
# 16-column tile (7.5 us of a 30 us 100x64 @ 64x50 float64 product). On AVX2
# the remainder columns come from the narrow tiles (matmul._rem_product), so
# they round as the shifted tile did (AVX-512's dot products, tried here
# first, sent the classic float32 lr-0.5 run off course at epoch ~15). AMD
# EPYC Zen 2, digits MLPClassifier((50,)) fit, four alternating runs: one
# thread 331-371 -> 313-323 ms, two 188-251 -> 177-249; training otherwise
# bit for bit as before (classic: the same parameters after an epoch).
REM_MAX = NR // 3
REM_MAX_TILES = 96 // NR
# Parallel tasks per product, each a contiguous run of tiles in column-panel
# order: consecutive tiles reuse one K x NR panel of B from L2 while A stays
# cached. (Row-major order streamed all of B per row block; with B larger
# than L2, e.g. 1024 x 1024, that ran at half speed.) Also the task count
# of the sparse kernels.
NTASK = 32
# Rows of B prefetched ahead by the tiles (see intrinsics.py).
PF = 12

# Products of at most this many multiply-adds (counted over whole tiles) run
# on the calling thread: below it, starting and joining a parallel region
# costs more than the second thread saves (measured: 100x10x50 7 us
# parallel vs 3 us serial; break-even near 100x100x50).
SERIAL_MAX_MACS = 400_000

# Wide products read B from packed column panels: B's rows are N elements
# apart, and for N in the hundreds or more (a multiple of 1024 float32 is
# the worst case: every row a new 4 KiB page, all in one L1 set) the tiles
# walking a panel row by row ran at half speed. Packing each 48-column panel
# contiguously restored it: 256x1024 @ 1024x1024 ~130 -> ~260 GFLOP/s.
PACK_MIN_N = 256
# The input gradient dU @ W.T packs W.T's panels straight from W, each task
# its own (pack_panels_transposed), from this many output columns (columns
# left to the remainder kernels read W.T in place). Below PACK_MIN_N it used
# to transpose W into a (K, N) copy in parallel and run the nn tiles on it:
# each task then read a panel whose rows both threads had written, and on a
# real AVX2 host (AMD EPYC, Zen 2: moving a written cache line to the other
# core is slow) nt 100x784x100 ran at 0.56-0.60 of np.matmul (transpose 40
# us + tiles 130 us alone, 290 us in sequence); packed 0.73-0.99. AVX-512 keeps the
# transpose there (1.02-1.22 on the Xeon; not re-measured packed).
NT_PACK_MIN_N = PACK_MIN_N if AVX512 else 2 * NR
# Packed products with at least TASK_PACK_MIN_PANELS column panels pack them
# per task, each panel right before that task's row tiles read it, into the
# task's own slot (matmul.tiles_task_packed), instead of packing all of B
# first and then running the tiles: a panel is then read from L2 where it
# was just written, not back from L3 (B: 4 MiB at 1024 x 1024), and the
# scratch touched is 32 slots of K x NR, not a copy of B. Measured on the
# AMD EPYC (AVX2, 2 threads), old and new paths in one process, interleaved,
# best of 16 rounds, as a share of np.matmul: nt 256x1024x1024 0.84-0.87 ->
# 0.88-0.92, tn 512^3 0.80 -> 0.87, nn and tn 256x1024x1024 unchanged
# (0.83-0.88, 0.78-0.80); results bit for bit the same. Tasks own whole
# panels (none packed twice), so it needs enough panels to balance two
# threads: below 16, B is packed first as before. AVX-512 (48-column panels,
# 22 at N = 1024) keeps packing first: not measured on such a host yet.
TASK_PACK = not AVX512
TASK_PACK_MIN_PANELS = 16

# Copies and transposes of at most this many elements stay on the calling
# thread: a parallel region costs more than moving a few thousand values.
SMALL_COPY_ELEMENTS = 16384

# --- sparse first layer (sparse.py) ----------------------------------------
# Columns computed per pass over a row's non-zeros: one loop of SPARSE_GROUP
# iterations (vectorised into 7 zmm accumulators). 112 = 7 cache lines of
# float32: the classic 100-wide layer reads 7 lines of W per non-zero, not
# the 9 a 3 x 48 group read (forward 37 -> 31 us per classic batch).
SPARSE_GROUP = 112
# Readable elements needed after the last row of an aligned copy: the last
# column group may reach up to SPARSE_GROUP - 1 elements past its row.
SLACK = SPARSE_GROUP
# Row alignment of the sparse kernels' operands, in elements (64 bytes of
# float32: cache-line-split loads ran ~1.8x slower).
ALIGN_ELEMENTS = 16

# --- inference (infer.py) ---------------------------------------------------
# First layer of a prediction: tiles of GATHER_MR rows x GATHER_NV vectors of
# columns that step only over the input columns where one of their rows is
# non-zero (intrinsics.tile_fma_gather). Few rows per tile skip more: on
# MNIST's test set 19% of the (row, column) steps of 1-row tiles are
# non-zero, 34% of 3-row ones' and 45% of 8-row ones'; wide rows of
# accumulators load each row of W once per tile. Measured (AVX-512, 2
# threads, first layer 10000x784 @ 784x100 incl. the input scan, ms):
# 3 x 112 3.96, 2 x 112 4.51, 6 x 64 4.46, 8 x 48 4.91, 4 x 112 8.0 (28
# accumulators + 7 loads of W: spills); np.matmul 6.0-7.0. AVX2 (16 ymm):
# 3 x 24 6.94, 2 x 32 7.08, 3 x 32 7.57, 1 x 96 7.97, 2 x 48 8.41, 4 x 24
# 8.76, 5 x 16 8.80; np.matmul (OpenBLAS Haswell) 9.1-9.9.
GATHER_MR = 3
GATHER_NV = 7 if AVX512 else 3
# AVX2: sparse rows one per tile, ROW_GATHER_NV vectors wide (13 x 8 = 104
# columns: the classic 100-wide layer in one pass; 13 accumulators + a
# broadcast of 16 ymm, W's vectors read as memory operands). A row steps
# over its own non-zeros only (19% of MNIST's columns, against 34% for a
# 3-row union) and is listed in the same pass that checks it (intrinsics.
# compress_nonzero8); but each step's vectors of W serve one row, not
# three. So a block of INFER_ROWS rows goes row by row when its first group
# of GATHER_MR rows has at most ROW_GATHER_RATIO times as many non-zeros,
# counted row by row, as its union has columns. AMD EPYC Zen 2, one thread,
# 10000 x 784 -> 100-50-10 predict_proba, ms, 3-row tiles / row tiles:
# MNIST (ratio 1.65) 18.7-19.6 / 15.5-15.8; uniform random non-zeros at
# density 0.2 (ratio 1.23) 23.7-24.4 / 17.0-17.4, 0.4 (1.53) 31.7-32.4 /
# 25.6-26.9, 0.6 (1.92) 35.1-36.0 / 32.2-33.1, 0.8 (2.42) 36.9-39.1 /
# 41.0-43.0, 1.0 (3) 37.3-38.3 / 47.9-50.1; the same columns non-zero in
# every row (3) at 0.2 15.1-15.4 / 16.5-17.1, 0.4 22.3-23.0 / 26.1-26.3.
# With the 3-row tiles: 3 x 24 18.8, 3 x 32 18.4, 2 x 48 18.2 on MNIST.
# AVX-512 keeps its 3-row tiles (not measured there): 0 turns this off.
ROW_GATHER_NV = 0 if AVX512 else 13
ROW_GATHER_RATIO = 2.0
# Rows per inference task block: the first layer's output for them stays in
# L1/L2 while the next layers run on it (serial tiles inside the task).
INFER_ROWS = 60


def padded_width(n):
    """Row stride of the aligned copies: n rounded up to ALIGN_ELEMENTS."""
    return (n + ALIGN_ELEMENTS - 1) // ALIGN_ELEMENTS * ALIGN_ELEMENTS


# The same for the kernels. (Python callers keep the plain function: a
# compiled one called from memory.work_buffers compiled in the first fit,
# a cold first fit 0.6 -> 1.1 s.)
padded_width_jit = jit(padded_width)


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


# Row-split batches: a dense network whose weight matrices are at most
# SPLIT_MAX_WEIGHTS elements each (each fits a core's L2 however it is read)
# trains batches of at least 2 x SPLIT_MIN_ROWS rows as two halves side by
# side, one per thread, each through every layer with serial products, and
# adds the two gradients. Per product the pool lost: each region moved the
# layer's data between the cores (MLPClassifier((50,)) on digits, batch
# 200, float64: a batch 104 us on one thread, 111 us on two; as halves ~61 us).
# Measured per epoch (2 threads, AVX-512, Adam, dense inputs), whole ->
# halves: 64-50-10 f64 b200 4.6 -> 4.1 ms; 100-100-10 f32 b200 8.2 -> 5.4,
# f64 11.0 -> 5.3, b1000 4.2 -> 2.5; 200-128-10 b256 6.8 -> 4.7;
# 300-256-64-10 b256 21.3 -> 16.0; 784-100-10 b128 20.0 -> 15.0; but
# 784-100-50-10 b100 (50-row halves) 21.9 -> 23.3, 512-512-10 b256 37.2 ->
# 38.0 and 784-1024-10 b256 97 -> 129 (a 3 MB W streamed unpacked by each
# thread). Decided by the shapes alone, never by the thread count, so a
# fit's result does not depend on the threads it ran on. The transposed
# W of every layer above the first is rebuilt per half and batch: those
# stay within SMALL_COPY_ELEMENTS.
SPLIT_MIN_ROWS = 64
SPLIT_MAX_WEIGHTS = 131072
# A sparse first layer (MNIST) splits too, every batch of a fit whose batch
# size is at least 2 x SPLIT_MIN_ROWS_SPARSE: each half runs the CSR forward
# of its rows; the first layer's weight gradient is the whole batch's,
# formed after the halves by rows of W, a range per thread, and each thread
# updates its rows (kernels.train.sparse_split_update): no second gradient
# of W to combine across the cores. Measured per epoch (2 threads, AVX-512,
# SGD, MNIST unshuffled, whole -> halves): 784-100-50-10 b16 0.286 -> 0.256 s,
# b64 0.126 -> 0.107, b100 0.107 -> 0.094, b256 0.088 -> 0.079; 784-64-10 b32
# 0.118 -> 0.108; 784-160-10 b128 0.124 -> 0.120; but 784-256-10 b128 0.184
# -> 0.191 and 784-512-10 0.300 -> 0.330 (SPLIT_MAX_WEIGHTS holds). AVX2
# code: 784-100-50-10 b16 0.310 -> 0.263, b100 0.133 -> 0.113; 784-160-10
# b128 0.146 -> 0.136.
SPLIT_MIN_ROWS_SPARSE = 8


def row_split(layers, batch_size, sparse=False):
    """Whether batches of ``batch_size`` rows of a network of widths
    ``layers`` (the first layer ``sparse`` or dense) train as two row
    halves (see SPLIT_MAX_WEIGHTS)."""
    if batch_size < 2 * (SPLIT_MIN_ROWS_SPARSE if sparse else SPLIT_MIN_ROWS):
        return False
    for l in range(len(layers) - 1):
        k, n = int(layers[l]), int(layers[l + 1])
        if k * n > SPLIT_MAX_WEIGHTS or (l > 0 and k * n > SMALL_COPY_ELEMENTS):
            return False
    return True
