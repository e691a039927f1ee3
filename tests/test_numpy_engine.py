"""fastnn.engine.numpy_engine against the compiled drivers it stands in for: the
same arguments, the same in-place changes, equal results to rounding."""
import numpy as np
import pytest

import fastnn
from fastnn.engine import numpy_engine as NE
from fastnn.engine import training
from fastnn.kernels import train as K
from fastnn.kernels.bundles import no_sparse
from conftest import DTYPES, assert_close

HEADS = {"softmax": 3, "sigmoid": 2, "identity": 2, "poisson": 2}


def _targets(rng, output, n, k):
    if output == "softmax":
        return rng.integers(0, k, n)
    if output == "sigmoid":
        return (rng.random((n, k)) < 0.5).astype(float)
    if output == "poisson":
        return rng.poisson(1.0, (n, k)).astype(float)
    return rng.standard_normal((n, k))


def _copy(trainer, state):
    """The arrays one epoch changes, copied."""
    return ([trainer.model.theta.copy(), trainer.data.order.copy(),
             trainer.engine.shuffle_state.copy()] + [a.copy() for a in state])


def _restore(trainer, state, saved):
    for dst, src in zip([trainer.model.theta, trainer.data.order,
                         trainer.engine.shuffle_state] + list(state), saved):
        dst[...] = src


def _assert_engines_agree(results, dtype):
    """The compiled drivers' and NumPy's epochs (:func:`_epochs` of each):
    the same visiting order and shuffle stream, sums, optimizer state and
    parameters equal to rounding."""
    (ks, kafter), (ns, nafter) = results[K], results[NE]
    assert np.array_equal(kafter[1], nafter[1])  # the same visiting order
    assert np.array_equal(kafter[2], nafter[2])  # the same shuffle stream
    assert_close(ns, ks, dtype, what="sums")
    for a, b, what in zip(nafter[3:], kafter[3:], ["vel", "sq", "step"]):
        assert_close(a, b, dtype, what=what)
    assert_close(nafter[0], kafter[0], dtype, what="parameters")


def _epochs(engine, trainer, state, opt, epochs, calls=1):
    """``epochs`` epochs of ``engine`` (the compiled drivers or NumPy's), each
    in ``calls`` calls (runs of consecutive batches, continuing the epoch's
    running sums); returns (their sums, the arrays they changed)."""
    data, sums = trainer.data, []
    nb = trainer.n_batches
    cuts = np.linspace(0, nb, calls + 1).round().astype(int)
    for _ in range(epochs):
        engine.epoch_begin(data.order, trainer.engine.shuffle_state, data.shuffle, trainer.sp,
                           False, data.batch_size)
        if engine is NE and trainer.sparse:  # for K's next use
            K.prepare_sparse_batches(trainer.sp, data.order, data.batch_size)
        trainer.no_plan.sums[0] = 0.0
        for first, last in zip(cuts[:-1], cuts[1:]):
            r = engine.train_batches(data, trainer.model, trainer.head, trainer.grad, state, opt,
                                     trainer.sp, trainer.work, trainer.bufs, int(first),
                                     int(last), trainer.no_plan)
        sums.append(r)
    return np.array(sums, np.float64), _copy(trainer, state)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", list(HEADS))
@pytest.mark.parametrize("opt", [dict(name="sgd"), dict(name="sgd", momentum=0.9),
                                 dict(name="sgd", momentum=0.9, nesterov=True, l2=0.1),
                                 dict(name="adam", lr=0.01, l2=0.05, l2_per_row=True)])
@pytest.mark.parametrize("sparse,shuffle,weighted", [(False, True, False), (True, True, True),
                                                     (False, False, True), (True, False, False)])
def test_an_epoch_matches_the_compiled_drivers(rng, monkeypatch, dtype, output, opt, sparse,
                                               shuffle, weighted):
    k = HEADS[output]
    hidden = {"softmax": "relu", "sigmoid": "tanh", "identity": "sigmoid",
              "poisson": "relu"}[output]
    net = fastnn.Network([7, 9, 6, k], hidden=hidden, output=output, seed=3, dtype=dtype)
    n = 45
    x = rng.standard_normal((n, 7))
    if sparse:
        x[rng.random(x.shape) < 0.7] = 0
    monkeypatch.setattr(fastnn.engine.inputs, "SPARSE_MAX_DENSITY", 1.0 if sparse else 0.0)
    X = net._check_x(x.astype(dtype))
    labels, T = net._check_y(_targets(rng, output, n, k), n)
    w = rng.random(n) + 0.5 if weighted else None
    trainer = net._trainer(X, labels, T, 8, shuffle, w)
    assert trainer.sparse == sparse
    o = dict(opt)
    o = training.optimizer(o.pop("name"), lr=o.pop("lr", 0.1), **o)
    state = training.fresh_state(o.kind, net.theta)
    before = _copy(trainer, state)
    results = {}
    for engine in (K, NE):
        _restore(trainer, state, before)
        results[engine] = _epochs(engine, trainer, state, o, 2)
        # The same two epochs in one call (an EpochPlan): exactly the same.
        _restore(trainer, state, before)
        plan = trainer.no_plan._replace(rates=np.full(2, o.lr), sums=np.empty((2, 3)),
                                        csc_ready=False)
        assert engine.train_batches(trainer.data, trainer.model, trainer.head, trainer.grad,
                                    state, o, trainer.sp, trainer.work, trainer.bufs, 0, 0,
                                    plan) == (0.0, 0.0, 0)
        assert list(plan.status) == [2, 0]
        assert np.array_equal(plan.sums, results[engine][0])
        for a, b in zip(_copy(trainer, state), results[engine][1]):
            assert np.array_equal(a, b)
        # And cut into calls of a batch or two: the same sums, bit for bit
        # (the calls continue the epoch's running sums).
        _restore(trainer, state, before)
        chunked = _epochs(engine, trainer, state, o, 2, calls=4)
        assert np.array_equal(chunked[0], results[engine][0])
        for a, b in zip(chunked[1], results[engine][1]):
            assert np.array_equal(a, b)
    _assert_engines_agree(results, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_a_softmax_on_the_pool_matches_the_numpy_engine(rng, dtype, weighted):
    # 120 rows x 300 classes: past losses.PARALLEL_SOFTMAX_MIN logits, the
    # whole batch's softmax runs on the pool (a 400 x 400 layer: whole
    # batches, not row-split halves).
    from fastnn.kernels.layout import row_split
    from fastnn.kernels.losses import PARALLEL_SOFTMAX_MIN
    n, k, batch = 360, 300, 120
    layers = [11, 400, 400, k]
    assert batch * k >= PARALLEL_SOFTMAX_MIN and not row_split(layers, batch)
    net = fastnn.Network(layers, seed=4, dtype=dtype)
    X = net._check_x(rng.standard_normal((n, 11)).astype(dtype))
    labels, T = net._check_y(rng.integers(0, k, n), n)
    w = rng.random(n) + 0.5 if weighted else None
    trainer = net._trainer(X, labels, T, batch, True, w)
    _assert_epochs_agree(net, trainer, dtype, training.optimizer("sgd", lr=0.1), 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", list(HEADS))
@pytest.mark.parametrize("sparse", [False, True])
def test_predict_and_evaluate_match_the_compiled_drivers(rng, dtype, output, sparse):
    k = HEADS[output]
    net = fastnn.Network([6, 8, k], output=output, seed=4, dtype=dtype)
    x = rng.standard_normal((37, 6))
    x[rng.random(x.shape) < 0.6] = 0
    if sparse:
        sp = pytest.importorskip("scipy.sparse")
        x = sp.csr_matrix(x)
    X = net._check_x(x)
    labels, T = net._check_y(_targets(rng, output, 37, k), 37)
    Xd, spi, rows, work = fastnn.engine.inputs.for_inference(X, net.layout, net.theta, 10)
    for head in (net.head._replace(code=-1), net.head):
        outs = [np.empty((37, k), dtype) for _ in range(2)]
        for engine, out in zip((K, NE), outs):
            assert engine.predict_batches(Xd, spi, rows, net._model(), head, work, out) == 0
        assert_close(outs[1], outs[0], dtype, what=f"head {head}")
    if not sparse:  # the non-finite count of a dense X (predict raises on it)
        Xbad = Xd.copy()
        Xbad[3, 1], Xbad[36, 5] = np.nan, -np.inf
        for engine in (K, NE):
            assert engine.predict_batches(Xbad, spi, rows, net._model(), net.head, work, out) == 2
    ev = [np.array(e.evaluate_batches(Xd, spi, rows, labels, T, net._model(), net.head, work),
                   np.float64) for e in (K, NE)]
    assert_close(ev[1], ev[0], dtype, what="evaluate")


def test_the_shuffle_is_the_kernels_stream(rng):
    for n in (0, 1, 2, 17, 1000):
        a, b = np.arange(n), np.arange(n)
        sa, sb = np.array([12345], np.uint64), np.array([12345], np.uint64)
        for _ in range(3):
            K.epoch_begin(a, sa, True, no_sparse(np.float32), False, 4)
            NE.epoch_begin(b, sb, True, no_sparse(np.float32), False, 4)
            assert np.array_equal(a, b) and sa[0] == sb[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_the_full_batch_gradient_matches_the_compiled_driver(rng, dtype, weighted):
    net = fastnn.Network([5, 7, 3], seed=5, dtype=dtype)
    X = net._check_x(rng.standard_normal((23, 5)).astype(dtype))
    labels, T = net._check_y(rng.integers(0, 3, 23), 23)
    w = rng.random(23) if weighted else np.empty(0)
    work = fastnn.engine.memory.work_buffers(net.layout, 10, np.dtype(dtype))
    res = []
    for engine in (K, NE):
        grad = np.empty_like(net.theta)
        total = np.empty_like(net.theta)
        loss = engine.full_batch_gradient(X, labels, T, w, net._model(), net.head, work, grad,
                                          total)
        res.append((loss, total))
    assert_close(res[1][0], res[0][0], dtype, what="loss")
    assert_close(res[1][1], res[0][1], dtype, what="gradient")


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_first_run_builds_the_same_inputs_in_numpy(rng, monkeypatch, dtype):
    """Input scan and CSR build while their kernels compile (NumPy) against
    the compiled ones: same non-zero counts, NaN check, CSR arrays."""
    from fastnn.runtime import cold_start
    from fastnn.engine import inputs, validation

    x = rng.standard_normal((1500, 800)).astype(dtype)  # above validation.NUMPY_SCAN_MAX
    x[rng.random(x.shape) < 0.8] = 0
    assert x.size > validation.NUMPY_SCAN_MAX
    built = {}
    for compiled in (True, False):
        monkeypatch.setattr(cold_start, "ready", lambda calls, memo=None, then=(): compiled)
        built[compiled] = inputs.prepare(x, np.dtype(dtype), 64, True, None)[0]
        bad = x.copy()
        bad[700, 3] = np.nan
        with pytest.raises(ValueError, match="x contains NaN"):
            validation.scan_matrix("x", bad)
    for name in ("indptr", "indices", "values"):
        a, b = getattr(built[True], name), getattr(built[False], name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("switch", [False, True])
def test_a_fit_on_the_numpy_engine_matches_a_compiled_fit(rng, monkeypatch, sparse, switch):
    """What a first run does: every epoch on NumPy (or the first two, then
    the kernels, as when they become ready mid-fit), validation and predict
    included, against the same fit compiled throughout (float64)."""
    from fastnn.runtime import cold_start

    x = rng.standard_normal((150, 12))
    if sparse:
        x[rng.random(x.shape) < 0.85] = 0
    y = rng.integers(0, 4, 150)
    results = []
    for numpy_first in (False, True):
        epochs_asked = []

        def fake_ready(calls, memo=None, then=()):
            if not numpy_first:
                return True
            if calls[0][0] == "epoch_begin":  # a training epoch: ready from the third on
                epochs_asked.append(1)
                return switch and len(epochs_asked) > 2
            return False

        monkeypatch.setattr(cold_start, "ready", fake_ready)
        net = fastnn.Network([12, 10, 4], seed=1, dtype="float64")
        h = net.fit(x, y, epochs=4, batch_size=16, optimizer="adam", lr=0.01,
                    validation_split=0.2)
        results.append((h["loss"], h["val_loss"], net.predict_proba(x), net.theta.copy()))
    for a, b in zip(*results):
        assert_close(b, a, np.float64)


def test_one_blas_thread_while_a_helper_compiles_and_restored_after():
    blas = NE._openblas()
    if blas is None:
        pytest.skip("no OpenBLAS found in this process (not Linux, or another BLAS)")
    set_n, get_n = blas
    before = get_n()
    with NE.one_blas_thread():
        assert get_n() == 1
    assert get_n() == before
    with pytest.raises(KeyboardInterrupt):
        with NE.one_blas_thread():
            raise KeyboardInterrupt
    assert get_n() == before


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", list(HEADS))
@pytest.mark.parametrize("shuffle,weighted", [(True, False), (False, True), (True, True)])
# narrow; whole tiles + remainders; a hidden W past SMALL_COPY_ELEMENTS, not
# a multiple of the transpose's 8 x 8 blocks
@pytest.mark.parametrize("hidden_sizes", [(12, 7), (70, 50), (150, 130)])
def test_row_split_batches_match_the_numpy_engine(rng, dtype, output, shuffle, weighted,
                                                  hidden_sizes):
    """Batches of at least 2 x SPLIT_MIN_ROWS rows of a small dense network
    train as two row halves (one per thread) whose gradients are combined:
    the same epochs as NumPy's whole-batch math, to rounding. 290 rows in
    batches of 131: two split batches (66 + 65 rows), then 28 rows whole."""
    from fastnn.kernels.layout import SPLIT_MIN_ROWS
    k = HEADS[output]
    hidden = {"softmax": "relu", "sigmoid": "tanh", "identity": "sigmoid",
              "poisson": "relu"}[output]
    net = fastnn.Network([9, *hidden_sizes, k], hidden=hidden, output=output, seed=3,
                         dtype=dtype)
    n, batch = 290, 131
    assert 2 * SPLIT_MIN_ROWS <= batch and n % batch < 2 * SPLIT_MIN_ROWS
    X = net._check_x(rng.standard_normal((n, 9)).astype(dtype))
    labels, T = net._check_y(_targets(rng, output, n, k), n)
    w = rng.random(n) + 0.5 if weighted else None
    if weighted:
        w[:40] = 0.0  # a half with little weight
    trainer = net._trainer(X, labels, T, batch, shuffle, w)
    assert trainer.work.gs.size == net.theta.size  # the batches are split
    _assert_adam_epochs_agree(net, trainer, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", list(HEADS))
@pytest.mark.parametrize("shuffle,weighted", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("hidden_sizes", [(12, 7), (32, 5), (130,)])
def test_row_split_batches_with_a_sparse_first_layer_match_the_numpy_engine(
        rng, dtype, output, shuffle, weighted, hidden_sizes):
    """With a sparse first layer, fits whose batches have at least 2 x
    SPLIT_MIN_ROWS_SPARSE rows split every batch: the halves run the CSR
    forward and leave their scaled dE/dU rows; the first layer's weight
    gradient is the whole batch's, split by rows of W between the threads,
    from the epoch's CSC blocks, or (shuffled) from the batch's non-zeros
    sorted on the spot. First layers 12 (a padded copy of W), 32 (W read in
    place when aligned) and 130 wide (two column groups); 263 rows of 90%
    zeros in batches of 131: two batches, then one row (an empty half)."""
    from fastnn.kernels.layout import SPLIT_MIN_ROWS_SPARSE
    k = HEADS[output]
    hidden = {"softmax": "relu", "sigmoid": "tanh", "identity": "sigmoid",
              "poisson": "relu"}[output]
    net = fastnn.Network([40, *hidden_sizes, k], hidden=hidden, output=output, seed=3,
                         dtype=dtype)
    n, batch = 263, 131
    assert n % batch == 1 and 2 * SPLIT_MIN_ROWS_SPARSE <= batch
    x = rng.standard_normal((n, 40)) * (rng.random((n, 40)) < 0.1)
    x[5] = 0.0  # an all-zero row
    X = net._check_x(x.astype(dtype))
    labels, T = net._check_y(_targets(rng, output, n, k), n)
    w = rng.random(n) + 0.5 if weighted else None
    if weighted:
        w[:40] = 0.0  # a half with little weight
    trainer = net._trainer(X, labels, T, batch, shuffle, w)
    assert trainer.sparse and trainer.work.gs.size == net.theta.size  # split, sparse
    assert (trainer.sp.colptr.shape[0] == 0) == shuffle  # no CSC blocks when shuffled
    _assert_adam_epochs_agree(net, trainer, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_sparse_split_divides_w_where_it_halves_the_batchs_non_zeros(rng, dtype):
    """The threads of a sparse split batch divide the first layer's W (its
    forward product, weight gradient and update) at the column that halves
    the batch's non-zeros, rounded up to a row whose start is aligned:
    non-zeros crowded into the first columns move the split there, and the
    epochs still agree with NumPy's."""
    net = fastnn.Network([40, 20, 3], seed=3, dtype=dtype)
    n, batch = 262, 131
    x = rng.standard_normal((n, 40)) * (rng.random((n, 40)) < 0.1)
    x[:, :6] = rng.standard_normal((n, 6))  # most non-zeros in columns 0..5
    X = net._check_x(x.astype(dtype))
    labels, T = net._check_y(rng.integers(0, 3, n), n)
    trainer = net._trainer(X, labels, T, batch, False, None)
    assert trainer.sparse and trainer.work.gs.size == net.theta.size
    K.prepare_sparse_batches(trainer.sp, trainer.data.order, batch)
    from fastnn.kernels.layout import ALIGN_ELEMENTS
    step = ALIGN_ELEMENTS // np.gcd(20, ALIGN_ELEMENTS)  # rows between aligned row starts
    for j in range(2):
        idx = trainer.data.order[j * batch:(j + 1) * batch]
        nz = np.count_nonzero(x[idx], axis=0)
        kmid = K.first_layer_split(trainer.model.sizes, trainer.sp, j)
        # the fewest first columns holding half the non-zeros
        k = int(np.searchsorted(np.cumsum(nz), nz.sum() // 2)) + 1
        assert kmid % step == 0 and kmid - step < k <= kmid < 20
    _assert_adam_epochs_agree(net, trainer, dtype)


def _assert_adam_epochs_agree(net, trainer, dtype):
    """Three Adam epochs (L2 per row) of ``trainer`` on both engines agree."""
    _assert_epochs_agree(net, trainer, dtype,
                         training.optimizer("adam", lr=0.01, l2=0.05, l2_per_row=True), 3)


def _assert_epochs_agree(net, trainer, dtype, o, epochs):
    """``epochs`` epochs of ``trainer`` with optimizer ``o``, from the same
    start, agree on both engines."""
    state = training.fresh_state(o.kind, net.theta)
    before = _copy(trainer, state)
    results = {}
    for engine in (K, NE):
        _restore(trainer, state, before)
        results[engine] = _epochs(engine, trainer, state, o, epochs)
    _assert_engines_agree(results, dtype)


def test_row_split_results_do_not_depend_on_the_thread_count(rng):
    """The halves are fixed by the batch's rows: one thread or two, the
    same parameters bit for bit."""
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    x = rng.standard_normal((400, 20))
    y = rng.integers(0, 4, 400)
    sparse_x = x * (rng.random((400, 20)) < 0.15)  # a sparse first layer, also split
    for data, batch in ((x, 200), (sparse_x, 100)):
        thetas = []
        for threads in (1, 2):
            net = fastnn.Network([20, 30, 4], seed=0, dtype="float64")
            previous = numba.get_num_threads()
            fastnn.set_num_threads(threads)
            try:
                net.fit(data, y, epochs=3, batch_size=batch, optimizer="adam", lr=0.01)
            finally:
                fastnn.set_num_threads(previous)
            thetas.append(net.theta.copy())
        assert np.array_equal(thetas[0], thetas[1])
