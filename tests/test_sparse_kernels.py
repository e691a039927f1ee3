"""The sparse first-layer kernels (kernels/sparse.py) on their own, against
NumPy: CSR construction, the input scan, the per-batch CSC form, the
forward product and the weight gradient, on awkward shapes in both dtypes."""
import numpy as np
import pytest

from conftest import DTYPES, assert_close
from fastnn.engine import inputs
from fastnn.kernels import sparse as S
from fastnn.kernels.activations import CODES, IDENTITY
from fastnn.kernels.layout import SLACK, SPARSE_GROUP, padded_width
from fastnn.engine.memory import aligned_zeros

SHAPES = [(1, 1), (7, 3), (33, 130), (64, 784), (5, 17)]  # (rows, features)


def _sparse_matrix(rng, n, d, dtype, density=0.3):
    x = rng.standard_normal((n, d)).astype(dtype)
    x[rng.random((n, d)) >= density] = 0
    return x


def _csr(x):
    sp, _, _ = inputs.prepare(x, x.dtype, x.shape[0], False, None, max_density=1.0)
    return sp


def _aligned_copy(A):
    """A in a 64-byte aligned buffer with padded rows and slack after it."""
    R, N = A.shape
    buf = aligned_zeros(R * padded_width(N) + SLACK, A.dtype)
    return S.pad_rows_into(np.ascontiguousarray(A), buf)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", SHAPES)
def test_scan_and_csr_match_numpy(rng, dtype, n, d):
    x = _sparse_matrix(rng, n, d, dtype)
    counts = np.empty(n, np.int64)
    rowhash = np.empty(n, np.uint64)
    assert S.scan_rows(x, counts, rowhash) == 0
    np.testing.assert_array_equal(counts, (x != 0).sum(axis=1))
    sp = _csr(x)
    for i in range(n):
        cols = sp.indices[sp.indptr[i]:sp.indptr[i + 1]]
        np.testing.assert_array_equal(cols, np.flatnonzero(x[i]))
        np.testing.assert_array_equal(sp.values[sp.indptr[i]:sp.indptr[i + 1]], x[i, cols])
    x[n // 2, d // 2] = np.nan
    assert S.scan_rows(x, counts, rowhash) == 1


def test_fingerprint_changes_with_any_value_or_order(rng):
    x = _sparse_matrix(rng, 20, 30, np.float64)

    def fp(a):
        counts = np.empty(a.shape[0], np.int64)
        rowhash = np.empty(a.shape[0], np.uint64)
        S.scan_rows(a, counts, rowhash)
        return int(S.fingerprint(rowhash))

    base = fp(x)
    y = x.copy()
    y[3] = y[3, ::-1]
    z = x.copy()
    z[0, np.flatnonzero(z[0])[0]] *= 1 + 1e-15
    assert len({base, fp(y), fp(z), fp(x.copy())}) == 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("width", [1, 100, 113, 300])
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
def test_forward_matches_numpy(rng, dtype, n, d, width, act):
    x = _sparse_matrix(rng, n, d, dtype)
    W = rng.standard_normal((d, width)).astype(dtype)
    b = rng.standard_normal(width).astype(dtype)
    sp = _csr(x)
    rows = rng.permutation(n).astype(np.int64)[:max(1, n - 1)]
    Y = np.empty((rows.size, width), dtype)
    S.sparse_dense_forward(sp.indptr, sp.indices, sp.values, rows, _aligned_copy(W), b,
                           CODES[act], Y)
    u = x[rows].astype(np.float64) @ W + b
    expected = {"relu": np.maximum(u, 0), "tanh": np.tanh(u), "identity": u}[act]
    assert_close(Y, expected, dtype, scale=np.abs(x[rows]) @ np.abs(W) + 1, what="forward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("width", [1, 100, 113, 300])
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
def test_partial_products_split_by_input_columns_add_up_to_the_forward(rng, dtype, n, d, width,
                                                                       act):
    """A split batch's first layer: each thread's product over its rows of
    W (input columns k0..k1-1; a split at 0, at d, and inside), then their
    sum through the activation, for rows s.. of the batch."""
    x = _sparse_matrix(rng, n, d, dtype)
    W = rng.standard_normal((d, width)).astype(dtype)
    b = rng.standard_normal(width).astype(dtype)
    sp = _csr(x)
    rows = rng.permutation(n).astype(np.int64)[:max(1, n - 1)]
    Wa = _aligned_copy(W)
    u = x[rows].astype(np.float64) @ W + b
    expected = {"relu": np.maximum(u, 0), "tanh": np.tanh(u), "identity": u}[act]
    scale = np.abs(x[rows]) @ np.abs(W) + 1
    for kmid in sorted({0, d // 3, d}):
        P = [np.full((rows.size + 2, padded_width(width)), np.nan, dtype) for _ in range(2)]
        for P_, (k0, k1) in zip(P, ((0, kmid), (kmid, d))):
            S.sparse_partial_rows(sp.indptr, sp.indices, sp.values, rows, Wa, k0, k1, width, P_)
            part = x[rows][:, k0:k1].astype(np.float64) @ W[k0:k1]
            assert_close(P_[:rows.size, :width], part, dtype, scale=scale,
                         what=f"partial {k0}:{k1}")
        s = rows.size // 2
        Y = np.full((rows.size - s, width), np.nan, dtype)
        S.add_partials(P[0], P[1], b, CODES[act], Y, s)
        assert_close(Y, expected[s:], dtype, scale=scale[s:], what=f"sum, split at {kmid}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("width", [1, 50, 112, 250])
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_batch_csc_and_weight_gradient_match_numpy(rng, dtype, n, d, width, batch_size):
    from fastnn.kernels.train import prepare_sparse_batches

    x = _sparse_matrix(rng, n, d, dtype)
    sp, _, _ = inputs.prepare(x, x.dtype, batch_size, True, None, max_density=1.0)
    order = rng.permutation(n).astype(np.int64)
    prepare_sparse_batches(sp, order, batch_size)
    for b in range(-(-n // batch_size)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        dU = rng.standard_normal((idx.size, width)).astype(dtype)
        dW = np.full((d, width), np.nan, dtype)
        S.sparse_weight_grad(sp.colptr[b], sp.rowpos, sp.cvals, _aligned_copy(dU), dW)
        expected = x[idx].astype(np.float64).T @ dU
        assert_close(dW, expected, dtype, scale=np.abs(x[idx]).T @ np.abs(dU) + 1,
                     what=f"dW of batch {b}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 50, 112, 250])
@pytest.mark.parametrize("padded", [False, True])
def test_weight_gradient_tiles_take_the_sgd_step(rng, dtype, width, padded):
    """With a learning rate the gradient tiles step W instead of storing
    dW: the same bits as storing dW and then W -= lr * dW, and the padded
    copy (when given) gets W's new rows, pad columns untouched."""
    from fastnn.kernels.train import prepare_sparse_batches
    from fastnn.kernels.optim import sgd_range

    n, d, bs = 64, 130, 64
    x = _sparse_matrix(rng, n, d, dtype)
    sp, _, _ = inputs.prepare(x, x.dtype, bs, True, None, max_density=1.0)
    prepare_sparse_batches(sp, np.arange(n, dtype=np.int64), bs)
    dU = _aligned_copy(rng.standard_normal((n, width)).astype(dtype))
    W0 = rng.standard_normal((d, width)).astype(dtype)
    lr = dtype(0.37)
    ngroup = -(-width // SPARSE_GROUP)
    dW = np.full((d, width), np.nan, dtype)
    S.sparse_grad_tiles(sp.colptr[0], sp.rowpos, sp.cvals, dU, dW, 0, d * ngroup)
    expected = W0.ravel().copy()
    sgd_range(expected, dW.ravel(), lr, np.uint64(0), np.uint64(expected.size))
    W = W0.copy()
    Wp = _aligned_copy(np.full((d, width), np.nan, dtype)) if padded else W[:0]
    # two runs of tiles, as the two threads of a split batch take them
    mid = (d // 2) * ngroup
    for t0, t1 in ((0, mid), (mid, d * ngroup)):
        S.sparse_grad_step_tiles(sp.colptr[0], sp.rowpos, sp.cvals, dU, W, t0, t1, True, lr,
                                 Wp)
    np.testing.assert_array_equal(W.ravel(), expected)
    if padded:
        np.testing.assert_array_equal(Wp[:, :width], W)
        assert np.all(Wp[:, width:] == 0)


def test_unaligned_operands_are_detected(rng):
    W = aligned_zeros(64 * 32 + 16, np.float32)
    assert S.is_aligned(W[:64 * 32].reshape(64, 32))
    assert not S.is_aligned(W[1:1 + 64 * 32].reshape(64, 32))
    assert not S.is_aligned(W[:64 * 30].reshape(64, 30))
    assert IDENTITY == CODES["identity"]


# --- inference: the first layer over active columns (predict_rows) ---------
def _predict_reference(net, x, head):
    from fastnn import reference as R

    params = [(W.astype(np.float64), b.astype(np.float64))
              for W, b in zip(net.weights, net.biases)]
    z = R.forward(params, x.astype(np.float64), net.hidden)[-1]
    return z if head < 0 else R.output_probabilities(z, net.output)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layers", [[784, 100, 50, 10], [5, 1], [17, 16, 3], [16, 17, 2],
                                    [33, 113, 7, 4], [1, 48, 1], [40, 130, 200, 5]])
@pytest.mark.parametrize("density", [0.0, 0.15, 1.0])
def test_predict_rows_matches_the_reference(rng, dtype, layers, density):
    import fastnn
    from fastnn.kernels import train as K

    hidden = ("relu", "tanh", "sigmoid", "identity")[len(layers) % 4]
    net = fastnn.Network(layers, hidden=hidden, seed=3, dtype=dtype)
    for n in (1, 2, 3, 4, 61, 250):  # partial tiles and row blocks
        x = _sparse_matrix(rng, n, layers[0], dtype, density)
        if density == 1.0:
            x[0, 0] = -0.0  # a signed zero is a zero
        for head in (-1, net.head.code):
            out = np.full((n, layers[-1]), np.nan, dtype)
            assert K.predict_rows(x, net._model(), head, out) == 0
            assert_close(out, _predict_reference(net, x, head), dtype,
                         what=f"{layers} n={n} head={head}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_rows_chooses_row_or_union_tiles_per_block(rng, dtype):
    """Blocks of INFER_ROWS rows whose first rows are sparse, dense, or
    sparse with the same columns in every row (row tiles and 3-row union
    tiles on AVX2, layout.ROW_GATHER_RATIO), and a dense first group before
    sparse rows: every block matches the reference whichever tiles run."""
    import fastnn
    from fastnn.kernels import train as K
    from fastnn.kernels.layout import INFER_ROWS

    net = fastnn.Network([200, 100, 9], seed=5, dtype=dtype)
    B = INFER_ROWS
    x = _sparse_matrix(rng, 5 * B + 7, 200, dtype, 0.1)
    x[B:2 * B] = rng.standard_normal((B, 200))                      # dense
    x[2 * B:3 * B] *= rng.random((1, 200)) < 0.5                    # same columns
    x[2 * B:3 * B] += (x[2 * B:3 * B] == 0) * (rng.random((1, 200)) < 0.5)
    x[3 * B:3 * B + 3] = rng.standard_normal((3, 200))              # dense first group
    x[4 * B + 1] = 0                                                 # an empty row
    for head in (-1, net.head.code):
        out = np.full((x.shape[0], 9), np.nan, dtype)
        assert K.predict_rows(x, net._model(), head, out) == 0
        assert_close(out, _predict_reference(net, x, head), dtype, what=f"head={head}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 8, 9, 17, 31, 784])
def test_active_columns_list_and_check_rows_and_groups(rng, dtype, d):
    """sparse.active_columns for one row (listed from its bits, 8 columns
    at a time, on AVX2) and for groups of 2-3 rows (their union): the
    non-zero columns in order (-0.0 is zero) and the count of NaN/inf."""
    from numba import njit

    @njit
    def listed(x, rows):
        ks, orv = S.column_scratch(x)
        lists, bad = [], 0
        for r0 in range(0, x.shape[0], rows):
            c, nf = S.active_columns(x, r0, min(rows, x.shape[0] - r0), orv, ks)
            lists.append(ks[:c].copy())
            bad += nf
        return lists, bad

    x = _sparse_matrix(rng, 9, d, dtype, 0.3)
    x[0, 0] = -0.0
    x[1, d - 1] = 2.0  # bits 0x40000000: zero once shifted twice
    x[2, d // 2] = -1.0
    x[3, d - 1] = np.nan
    x[4, 0] = np.inf
    x[5, d // 3] = -np.inf
    x[7] = 0
    for rows in (1, 2, 3):
        lists, bad = listed(x, rows)
        assert bad == 3
        for i, ks in enumerate(lists):
            want = np.flatnonzero((x[i * rows:(i + 1) * rows] != 0).any(axis=0))
            assert np.array_equal(ks, want), (rows, i)


def test_compress_nonzero8_lists_the_nonzero_columns(rng):
    from numba import njit

    from fastnn.kernels.intrinsics import compress_nonzero8

    table = S.compress_table()
    assert all(list(table[m, :bin(m).count("1")]) == [j for j in range(8) if m >> j & 1]
               for m in range(256))

    @njit
    def listed(flags, out, table):
        c = 0
        for k0 in range(0, flags.shape[0] - 8, 8):
            c, _ = compress_nonzero8(flags, k0, out, c, table, False)
        return c

    for dt in (np.uint32, np.uint64):
        for density in (0.0, 0.3, 1.0):
            flags = np.zeros(800 + 8, dt)
            flags[:800] = (rng.random(800) < density) * rng.integers(1, 2 ** 31, 800)
            flags[:800:97] = np.iinfo(dt).max  # every bit, the top one too
            out = np.zeros(808, np.int32)
            c = listed(flags, out, table)
            assert np.array_equal(out[:c], np.flatnonzero(flags[:800]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_rows_counts_nan_and_inf_of_every_row(rng, dtype):
    import fastnn
    from fastnn.kernels import train as K

    net = fastnn.Network([37, 20, 3], seed=0, dtype=dtype)
    x = _sparse_matrix(rng, 131, 37, dtype)
    bad = [(0, 0), (2, 36), (60, 5), (130, 36), (130, 0)]
    for i, (r, c) in enumerate(bad):
        x[r, c] = (np.nan, np.inf, -np.inf)[i % 3]
    out = np.empty((131, 3), dtype)
    assert K.predict_rows(x, net._model(), -1, out) == len(bad)


def test_compress_nonzero16_lists_the_nonzero_columns(rng):
    from numba import njit

    from fastnn.kernels.intrinsics import compress_nonzero16
    from fastnn.kernels.layout import AVX512

    if not AVX512:
        pytest.skip("vpcompressd: AVX-512 only (the AVX2 path lists columns in a scalar loop)")

    @njit
    def listed(flags, out):
        c = 0
        for k0 in range(0, flags.shape[0] - 16, 16):
            c = compress_nonzero16(flags, k0, out, c)
        return c

    for dt in (np.uint32, np.uint64):
        for density in (0.0, 0.3, 1.0):
            flags = np.zeros(800 + 16, dt)
            flags[:800] = (rng.random(800) < density) * rng.integers(1, 2 ** 31, 800)
            out = np.full(816 + 32, -7, np.int32)
            c = listed(flags, out)
            assert np.array_equal(out[:c], np.flatnonzero(flags[:800]))
            # Each step may write its 16 lanes (the contract: out writable
            # up to c + 16), never further.
            assert (out[c + 16:] == -7).all()
