"""Tiled matmul kernels against the naive loops and NumPy (in float64).

Shapes include 1, odd sizes, and sizes that are not multiples of the row
tile (``layout.MR32``/``MR64`` rows) or of the ``layout.NR``-column tile, both
narrower and wider than one tile, on each of the three regimes (serial,
parallel, packed).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import naive
from conftest import DTYPES, assert_close
from fastnn.kernels import matmul as mm
from fastnn.engine.registry import ACTIVATIONS
from fastnn.kernels.activations import CODES, IDENTITY

# Below SERIAL_MAX_MACS the products run on the serial drivers.
SHAPES = [(1, 1, 1), (1, 784, 100), (3, 5, 7), (4, 64, 64), (5, 63, 65),
          (7, 33, 129), (13, 17, 31), (2, 9, 200), (100, 784, 100),
          (100, 100, 50), (50, 10, 10), (9, 3, 33), (6, 2, 96),
          # one or two tiles plus <= REM_MAX columns: the remainder kernels
          # (AVX-512's 48-column tiles; then AVX2's 16-column ones)
          (40, 50, 60), (33, 20, 112), (3, 70, 97), (11, 30, 20), (40, 25, 35),
          # past SERIAL_MAX_MACS: the parallel drivers, narrow and wide
          (300, 100, 10), (130, 90, 47), (61, 200, 49), (200, 64, 50), (120, 80, 100),
          # (AVX-512: their last 48 + 8, 32, 48 + 16 and 24 columns on 32-wide
          # tiles)
          (100, 70, 200), (150, 90, 128), (90, 60, 160), (200, 64, 72),
          # N >= PACK_MIN_N: B read from packed panels (AVX-512: the last
          # 48 + 12, 48 + 16 and 32 columns on 32-wide tiles)
          (61, 130, 300), (9, 257, 513), (100, 64, 256), (37, 50, 272),
          # K <= THIN_K, N >= NR: gemm_nt builds rows of C from the K rows of W.T
          (300, 2, 256), (17, 7, 16), (64, 1, 33), (130, 4, 1030),
          # tn from TN_PACK_MIN_N columns and TN_PACK_MIN_KM inputs: packed
          (300, 256, 100), (257, 600, 130),
          # tn with A of TN_PACK_MIN_BYTES: packed from TN_PACK_MIN_MN columns, the
          # columns past one or two full tiles on the narrower tail tiles
          (1024, 512, 100), (520, 1010, 64), (701, 750, 110),
          # N <= DOT_MAX_N: dot products along K, serial at every size
          (257, 130, 3), (1000, 500, 1), (3001, 200, 2), (45, 33, 4)]


def _data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _scale(A, B):
    # Magnitude of each output's sum of products: the natural error scale.
    return np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64)) + 1e-300


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_nn(rng, dtype, M, K, N):
    A, B = _data(rng, (M, K), dtype), _data(rng, (K, N), dtype)
    expected = A.astype(np.float64) @ B.astype(np.float64)
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_nn(A, B, C)
    assert_close(C, expected, dtype, _scale(A, B), "gemm_nn")
    Cn = np.full((M, N), np.nan, dtype)
    naive.gemm_nn_naive(A, B, Cn)
    assert_close(Cn, expected, dtype, _scale(A, B), "gemm_nn_naive")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_tn(rng, dtype, M, K, N):
    # C (M, N) = A.T @ B with A (K, M): the weight-gradient orientation.
    A, B = _data(rng, (K, M), dtype), _data(rng, (K, N), dtype)
    expected = A.T.astype(np.float64) @ B.astype(np.float64)
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_tn(A, B, C)
    assert_close(C, expected, dtype, _scale(A.T, B), "gemm_tn")
    Cn = np.full((M, N), np.nan, dtype)
    naive.gemm_tn_naive(A, B, Cn)
    assert_close(Cn, expected, dtype, _scale(A.T, B), "gemm_tn_naive")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_nt(rng, dtype, M, K, N):
    # C (M, N) = A @ B.T with B (N, K): the input-gradient orientation.
    A, B = _data(rng, (M, K), dtype), _data(rng, (N, K), dtype)
    expected = A.astype(np.float64) @ B.T.astype(np.float64)
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_nt(A, B, C, np.empty((K, N), dtype))
    assert_close(C, expected, dtype, _scale(A, B.T), "gemm_nt")
    Cn = np.full((M, N), np.nan, dtype)
    naive.gemm_nt_naive(A, B, Cn)
    assert_close(Cn, expected, dtype, _scale(A, B.T), "gemm_nt_naive")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(CODES))
@pytest.mark.parametrize("M,K,N", [(1, 3, 1), (5, 63, 65), (100, 784, 100), (3, 7, 10),
                                   (300, 100, 10), (70, 90, 260), (200, 64, 50), (9, 5, 50),
                                   (300, 2, 256), (17, 7, 16)])
def test_fused_bias_activation_epilogue(rng, dtype, act, M, K, N):
    A, B, b = _data(rng, (M, K), dtype), _data(rng, (K, N), dtype), _data(rng, N, dtype)
    f = ACTIVATIONS[act].forward
    expected = f(A.astype(np.float64) @ B.astype(np.float64) + b)
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_nn_fused(A, B, C, b, CODES[act], np.empty((0, 0), dtype), IDENTITY)
    assert_close(C, expected, dtype, _scale(A, B) + np.abs(b), f"forward epilogue {act}")


@pytest.mark.parametrize("dtype", DTYPES)
# (GELU and SiLU take their derivative from the kept input, after the matmul.)
@pytest.mark.parametrize("act", [a for a in CODES if not ACTIVATIONS[a].from_input])
@pytest.mark.parametrize("M,K,N", [(1, 3, 1), (5, 63, 65), (100, 50, 100), (3, 7, 10),
                                   (300, 100, 10), (70, 90, 260), (200, 64, 50), (9, 5, 50),
                                   (300, 2, 256), (17, 7, 16)])
def test_fused_activation_derivative_epilogue(rng, dtype, act, M, K, N):
    f, fgrad = ACTIVATIONS[act].forward, ACTIVATIONS[act].derivative
    A, B = _data(rng, (M, K), dtype), _data(rng, (K, N), dtype)
    H = f(_data(rng, (M, N), dtype)).astype(dtype)
    expected = (A.astype(np.float64) @ B.astype(np.float64)) * fgrad(H.astype(np.float64))
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_nn_fused(A, B, C, np.empty(0, dtype), IDENTITY, H, CODES[act])
    assert_close(C, expected, dtype, _scale(A, B), f"backward epilogue {act}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("M,K,N", [(5, 7, 9), (100, 50, 30), (300, 100, 10), (100, 784, 100),
                                   (120, 80, 100), (256, 100, 128), (61, 130, 300),
                                   (512, 2, 256), (1024, 7, 1024), (40, 1, 17)])
@pytest.mark.parametrize("scratch", ["packed_size", "none"])
def test_gemm_nt_fused_derivative_epilogue(rng, dtype, act, M, K, N, scratch):
    """The input gradient as training runs it, dX = (dU @ W.T) * act'(H):
    small (serial), transposed into ``WT`` (parallel nn tiles) or, from
    layout.NT_PACK_MIN_N columns, W.T packed per task; packing scratch of
    the size memory.pack_scratch_size gives, or none (allocated)."""
    from fastnn.kernels.layout import packed_size

    f, fgrad = ACTIVATIONS[act].forward, ACTIVATIONS[act].derivative
    dU, W = _data(rng, (M, K), dtype), _data(rng, (N, K), dtype)
    H = f(_data(rng, (M, N), dtype)).astype(dtype)
    expected = (dU.astype(np.float64) @ W.T.astype(np.float64)) * fgrad(H.astype(np.float64))
    C = np.full((M, N), np.nan, dtype)
    bp = np.full(packed_size(K, N) if scratch == "packed_size" else 0, np.nan, dtype)
    mm.gemm_nt_fused_into(dU, W, C, np.empty(0, dtype), IDENTITY, H, CODES[act],
                          np.full((K, N), np.nan, dtype), bp)
    assert_close(C, expected, dtype, _scale(dU, W.T), f"nt backward epilogue {act}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["identity", "relu", "tanh"])
@pytest.mark.parametrize("M,K,N", [(64, 1, 33), (130, 3, 256), (9, 7, 16), (40, 8, 50),
                                   (5, 2, 7), (17, 32, 32), (25, 64, 64), (13, 9, 40)])
def test_input_grad_serial(rng, dtype, act, M, K, N):
    """A row-split half's input gradient: (dU @ W.T) * act'(H) from W.T,
    on rows of W.T up to THIN_K terms, else on the serial tiles."""
    f, fgrad = ACTIVATIONS[act].forward, ACTIVATIONS[act].derivative
    dU, WT = _data(rng, (M, K), dtype), _data(rng, (K, N), dtype)
    H = f(_data(rng, (M, N), dtype)).astype(dtype)
    expected = (dU.astype(np.float64) @ WT.astype(np.float64)) * fgrad(H.astype(np.float64))
    C = np.full((M, N), np.nan, dtype)
    mm.input_grad_serial(dU, WT, C, H, CODES[act])
    assert_close(C, expected, dtype, _scale(dU, WT), f"input gradient {act}")
    C = np.full((M, N), np.nan, dtype)
    mm.input_grad_serial(dU, WT, C, np.empty((0, 0), dtype), IDENTITY)
    assert_close(C, dU.astype(np.float64) @ WT, dtype, _scale(dU, WT), "no derivative")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", [(256, 256, 2), (7, 3, 1), (33, 70, 4), (16, 64, 5),
                                   (130, 9, 3),
                                   # MID_NR-wide tiles (AVX-512), the last one
                                   # shifted; rows not a multiple of the tile's
                                   (16, 32, 32), (13, 50, 40), (70, 64, 64), (9, 100, 128),
                                   (30, 20, 256), (5, 7, 160), (25, 1, 47), (1, 3, 32)])
def test_serial_products_of_narrow_outputs(rng, dtype, M, K, N):
    """A row-split half's products: the serial forward (bias and
    activation epilogue) and weight gradient, on the dot products up to
    DOT_MAX_N columns, the narrow tiles above, and the MID_NR-wide tiles
    (N a multiple of MID_NR but not of NR, or between the two)."""
    A, B = _data(rng, (M, K), dtype), _data(rng, (K, N), dtype)
    b = _data(rng, (N,), dtype)
    expected = np.maximum(A.astype(np.float64) @ B + b, 0)
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_nn_fused_serial(A, B, C, b, CODES["relu"], np.empty((0, 0), dtype), IDENTITY)
    assert_close(C, expected, dtype, _scale(A, B) + np.abs(b), "forward")
    D = _data(rng, (M, N), dtype)
    G = np.full((K, N), np.nan, dtype)
    mm.gemm_tn_serial(A, D, G)
    assert_close(G, A.T.astype(np.float64) @ D, dtype, _scale(A.T, D), "weight gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K,N", [(1, 1), (3, 5), (8, 8), (9, 17), (16, 7), (150, 130),
                                 (256, 2), (64, 64), (200, 100)])
def test_transposes(rng, dtype, K, N):
    """The blocked serial transpose (full 8 x 8 blocks, then the remainder
    rows and columns) and transpose_into, which picks it or the parallel
    one by size, are exact copies."""
    B = _data(rng, (K, N), dtype)
    for fn in (mm.transpose_serial, mm.transpose_into):
        BT = np.full((N, K), np.nan, dtype)
        fn(B, BT)
        np.testing.assert_array_equal(BT, B.T, err_msg=fn.__name__)


@settings(max_examples=40, deadline=None)
@given(M=st.integers(1, 70), K=st.integers(1, 90), N=st.integers(1, 150),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2 ** 31))
def test_gemm_random_shapes(M, K, N, dtype, seed):
    rng = np.random.default_rng(seed)
    A, B = _data(rng, (M, K), dtype), _data(rng, (K, N), dtype)
    expected = A.astype(np.float64) @ B.astype(np.float64)
    C = np.full((M, N), np.nan, dtype)
    mm.gemm_nn(A, B, C)
    assert_close(C, expected, dtype, _scale(A, B), "gemm_nn")
    C2 = np.full((K, N), np.nan, dtype)
    D = _data(rng, (M, N), dtype)
    mm.gemm_tn(A, D, C2)
    assert_close(C2, A.T.astype(np.float64) @ D, dtype, _scale(A.T, D), "gemm_tn")


def test_tile_shapes_follow_numbas_target_not_the_host(monkeypatch):
    """NUMBA_CPU_NAME alone keeps the host's features (Numba's rule); the
    features decide the ISA, so AVX2 code never gets AVX-512 tiles."""
    from fastnn import _config

    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx,+avx2,+fma,-avx512f")
    assert _config._target_isa() == "AVX2"
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2,+fma,+avx512f")
    assert _config._target_isa() == "AVX-512"
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+sse4.2")
    assert _config._target_isa() == "SSE"
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    host = _config._target_isa()
    monkeypatch.delenv("NUMBA_CPU_NAME")
    assert _config._target_isa() == host
