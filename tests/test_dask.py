"""fastnn.dask on a LocalCluster of two single-threaded worker processes."""
import os
import signal

import numpy as np
import pytest

import fastnn

pytestmark = pytest.mark.both_backends

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
fd = pytest.importorskip("fastnn.dask")


@pytest.fixture(scope="module")
def client(fastnn_backend):
    cluster = fd.local_cluster(2)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def data(n=600, d=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.7)
    return x, y


@pytest.mark.parametrize("options", [dict(optimizer="sgd", momentum=0.9, lr=0.05),
                                     dict(optimizer="adam", lr=0.01)])
def test_one_chunk_synced_every_batch_equals_network_fit(client, options):
    x, y = data()
    a = fastnn.Network([10, 16, 3], seed=1)
    b = fastnn.Network([10, 16, 3], seed=1)
    ha = a.fit(x, y, epochs=3, batch_size=32, **options)
    hb = fd.fit(b, da.from_array(x, chunks=(600, 10)), y, client=client, epochs=3,
                batch_size=32, sync_every=1, **options)
    np.testing.assert_array_equal(a.theta, b.theta)
    # The same batches, the same updates: bit-identical parameters. The
    # epoch's loss is the same per-batch values summed in another grouping
    # (Network.fit adds a run of batches inside one compiled call, the
    # rounds add them one by one): equal to rounding.
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-13)
    assert ha["accuracy"] == hb["accuracy"]
    # The shuffling stream continues as after Network.fit.
    np.testing.assert_array_equal(a.engine.shuffle_state, b.engine.shuffle_state)


@pytest.mark.parametrize("options", [dict(optimizer="sgd", lr=0.2, l2=1e-3),
                                     dict(optimizer="sgd", momentum=0.9, nesterov=True,
                                          lr=0.05)])
@pytest.mark.parametrize("rows", [(150, 150, 150, 150), (100, 250, 130, 77, 43)])
def test_chunks_synced_every_step_are_network_fit_on_the_same_batches(client, options, rows):
    """The default: every step takes its share of one batch from each chunk
    and the changes are averaged, which is one step on that batch's rows.
    With shuffling off, the batches are known: Network.fit on the rows in
    that order must land on the same parameters, to rounding."""
    x, y = data(sum(rows))
    X = da.from_array(x, chunks=(rows, 10))
    a = fastnn.Network([10, 16, 3], seed=1)
    b = fastnn.Network([10, 16, 3], seed=1)
    hb = fd.fit(b, X, y, client=client, epochs=3, batch_size=32, shuffle=False, **options)
    cut, shares = fd.batch_shares(len(x), len(rows), 32)
    starts = np.cumsum([0] + cut[:-1])
    order = [start + np.arange(j * share, min(size, (j + 1) * share))
             for j in range(-(-len(x) // 32))
             for start, size, share in zip(starts, cut, shares)]
    order = np.concatenate(order)
    assert sorted(order) == list(range(len(x)))
    ha = a.fit(x[order], y[order], epochs=3, batch_size=32, shuffle=False, **options)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-4)


def test_batch_shares_make_every_step_a_whole_batch():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, k, b = int(rng.integers(1, 5000)), int(rng.integers(1, 40)), int(rng.integers(1, 300))
        rows, shares = fd.batch_shares(n, k, b)
        assert sum(rows) == n and min(rows) > 0 and len(rows) == len(shares) <= min(k, b)
        assert max(shares) - min(shares) <= 1
        steps = -(-n // b)
        taken = np.zeros(steps, int)
        for r, s in zip(rows, shares):
            for j in range(-(-r // s)):
                taken[j] += min(s, r - j * s)
        assert (taken[:-1] == b).all() and taken[-1] == n - (steps - 1) * b


def test_model_averaging_is_deterministic_and_learns(client):
    x, y = data(2000)
    X = da.from_array(x, chunks=(500, 10))
    runs = []
    for _ in range(2):
        net = fastnn.Network([10, 32, 3], seed=2)
        h = fd.fit(net, X, y, client=client, epochs=8, batch_size=32, lr=0.2,
                   sync_every=8, validation_data=(x[:200], y[:200]))
        runs.append((net.theta.copy(), h))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    h = runs[0][1]
    assert len(h["val_loss"]) == 8 and h["loss"][-1] < 0.9 * h["loss"][0]
    # y given with other chunks is realigned to X's: same result.
    net = fastnn.Network([10, 32, 3], seed=2)
    fd.fit(net, X, da.from_array(y, chunks=300), client=client, epochs=8, batch_size=32,
           lr=0.2, sync_every=8, validation_data=(x[:200], y[:200]))
    np.testing.assert_array_equal(net.theta, runs[0][0])


def test_predict_matches_the_network(client, fastnn_backend):
    x, y = data(700)
    net = fastnn.Network([10, 8, 3], seed=3)
    net.fit(x, y, epochs=2, batch_size=50)
    X = da.from_array(x, chunks=(128, 5))  # column chunks are merged
    p = fd.predict_proba(net, X)
    assert p.chunks[0] == X.chunks[0]
    if fastnn_backend == "compiled":  # each row computed alike, whatever the rows beside it
        np.testing.assert_array_equal(p.compute(), net.predict_proba(x))
    else:  # NumPy's matmul rounds by the matrix's shape: 128-row blocks vs 700 rows
        np.testing.assert_allclose(p.compute(), net.predict_proba(x), rtol=1e-6)
    np.testing.assert_array_equal(fd.predict(net, X).compute(), net.predict(x))
    reg = fastnn.Network([10, 4, 2], output="identity", seed=3)
    np.testing.assert_array_equal(fd.predict(reg, x).compute(), reg.predict(x))


def test_clear_errors(client):
    x, y = data(100)
    net = fastnn.Network([10, 4, 3], seed=0)
    with pytest.raises(ValueError, match="100 samples but y has 99"):
        fd.fit(net, x, y[:99], client=client)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        X = da.from_array(x, chunks=(50, 10))
        fd.fit(net, X[X[:, 0] > 0.5], y, client=client)
    with pytest.raises(ValueError, match="sync_every"):
        fd.fit(net, x, y, client=client, sync_every=0)
    with pytest.raises(ValueError, match="expects 10"):
        fd.predict(net, x[:, :3])
    with pytest.raises(ValueError, match="x is empty"):
        fd.fit(net, x[:0], y[:0], client=client)
    with pytest.raises(ValueError, match="x is empty"):
        fd.fit(net, da.zeros((0, 10), chunks=5), da.zeros((0,), chunks=5, dtype=int),
               client=client)
    closed = distributed.Client(client.cluster, set_as_default=False)
    closed.close()
    with pytest.raises(ValueError, match="client is closed"):
        fd.fit(net, x, y, client=closed)


@pytest.mark.parametrize("bad", ["nan", "label"])
def test_a_bad_chunk_is_reported_at_once_with_its_rows(client, bad):
    """Bad data fails the same way on every rerun, so the worker returns the
    error (a raised one would be retried, as for a lost worker, then
    surface without the chunk's rows)."""
    x, y = data(100)
    if bad == "nan":
        x[70, 1] = np.nan
    else:
        y[70] = 9
    net = fastnn.Network([10, 4, 3], seed=0)
    with pytest.raises(ValueError, match="chunk 1 \\(rows 50-99\\)") as e:
        fd.fit(net, da.from_array(x, chunks=(50, 10)), da.from_array(y, chunks=50),
               client=client)
    assert ("NaN" in str(e.value)) if bad == "nan" else ("labels" in str(e.value))


def test_a_killed_worker_does_not_change_the_result(patient_cluster, own_client):
    client = own_client
    x, y = data(3000)
    X = da.from_array(x, chunks=(1500, 10))

    def run(kill):
        net = fastnn.Network([10, 32, 3], seed=4)

        def killer(net_, history):
            if kill and len(history["loss"]) == 1:
                # SIGKILL one worker between rounds: its chunk and the next
                # round's task must be recomputed elsewhere / after restart.
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)

        fd.fit(net, X, y, client=client, epochs=3, batch_size=32, lr=0.1, sync_every=16,
               callbacks=[killer])
        return net.theta.copy()

    np.testing.assert_array_equal(run(True), run(False))


def test_a_worker_that_lost_its_chunk_trainers_gets_the_network_again(client):
    """Rounds after the first go without the network; a worker without the
    chunk's trainer (restarted, or a rerun elsewhere) asks for it back."""
    x, y = data(1200)
    X = da.from_array(x, chunks=(300, 10))

    def run(forget):
        def drop(net_, history):
            if forget:
                client.run(lambda: fd._TRAINERS.clear())
        net = fastnn.Network([10, 16, 3], seed=5)
        fd.fit(net, X, y, client=client, epochs=3, batch_size=40, lr=0.1, momentum=0.5,
               sync_every=5, callbacks=[drop])
        return net.theta.copy()

    np.testing.assert_array_equal(run(True), run(False))


@pytest.mark.parametrize("dtype, rows, tight", [("float64", 400, True), ("float32", 250, False)])
def test_lbfgs_over_chunks_equals_the_single_process_fit(client, dtype, rows, tight):
    optimize = pytest.importorskip("scipy.optimize")
    from fastnn.engine import training

    x, y = data(1000)
    x = x.astype(dtype)
    one = fastnn.Network([10, 16, 3], seed=3, dtype=dtype)
    X = one._check_x(x)
    labels, T = one._check_y(y, len(x))
    # The estimators' solver="lbfgs" in one process: the same objective, all rows at once.
    r = optimize.minimize(training.full_batch_objective(one, X, labels, T, l2=1e-3),
                          one.theta.astype(np.float64), method="L-BFGS-B", jac=True,
                          options={"maxiter": 20, "maxfun": 15000, "gtol": 1e-4})
    one.theta[...] = r.x
    net = fastnn.Network([10, 16, 3], seed=3, dtype=dtype)
    h = fd.fit(net, da.from_array(x, chunks=(rows, 10)), y, client=client, optimizer="lbfgs",
               epochs=20, l2=1e-3)
    assert len(h["loss"]) == h["n_iter"] and h["loss"][-1] < h["loss"][0]
    if tight:  # float64: chunk sums differ from one sum in the last bits only
        # (over 20 iterations that stays ~1e-12; by 40 the line searches can part)
        assert h["n_iter"] == r.nit
        np.testing.assert_allclose(h["loss"][-1], r.fun, rtol=1e-10)
        np.testing.assert_allclose(net.theta, one.theta, rtol=1e-6, atol=1e-9)
    else:  # float32 rounding, compounded over the iterations: close, not equal
        np.testing.assert_allclose(h["loss"][-1], r.fun, rtol=2e-2)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_estimator_lbfgs_on_dask_arrays_equals_the_in_memory_fit(client, kind):
    """MLPClassifier/MLPRegressor(solver="lbfgs").fit(dask X, dask y): each
    chunk's loss and gradient on its worker, the same objective as the
    in-memory fit (labels, class and sample weights, alpha, the regressor's
    per-output scale), so the same iterations and model to rounding."""
    pytest.importorskip("scipy.optimize")
    pytest.importorskip("sklearn")
    x, y = data(500)
    x = x.astype(np.float64)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(x))
    names = np.array(["ant", "bee", "cat"])
    if kind == "regression":
        est = lambda: fastnn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs",
                                          max_iter=30, alpha=1e-3, random_state=0)
        y = np.stack([x[:, 0] + x[:, 1], x[:, 2] * 2], axis=1)
        fit_kw = {}
    else:
        est = lambda: fastnn.MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs",
                                           max_iter=30, alpha=1e-3, random_state=0,
                                           class_weight="balanced")
        y = names[np.minimum(y, 1 if kind == "binary" else 2)]
        fit_kw = dict(sample_weight=sw)
    a = est().fit(x, y, **fit_kw)
    X = da.from_array(x, chunks=(130, 10))
    Y = da.from_array(y, chunks=(200,) + ((2,) if y.ndim == 2 else ()))
    kw = {k: da.from_array(v, chunks=170) for k, v in fit_kw.items()}
    b = est().fit(X, Y, **kw)  # on the current client: the module's cluster
    assert b.n_iter_ == a.n_iter_ and b.n_features_in_ == 10
    np.testing.assert_allclose(b.loss_, a.loss_, rtol=1e-9)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(wb, wa, rtol=1e-6, atol=1e-9)
    if kind != "regression":
        assert list(b.classes_) == list(a.classes_)
        assert (b.predict(x) == a.predict(x)).all()


def test_estimator_on_dask_arrays_needs_lbfgs(client):
    pytest.importorskip("sklearn")
    x, y = data(100)
    X = da.from_array(x, chunks=(50, 10))
    with pytest.raises(ValueError, match="solver='lbfgs'"):
        fastnn.MLPClassifier(solver="adam").fit(X, y)
    with pytest.raises(ValueError, match="1-D class labels"):
        fastnn.MLPClassifier(solver="lbfgs").fit(X, da.zeros((100, 2), chunks=50))


def test_lbfgs_refuses_the_stochastic_options(client):
    x, y = data(100)
    net = fastnn.Network([10, 4, 3], seed=0)
    for option in (dict(dropout=0.2), dict(sync_every=2), dict(clip_norm=1.0)):
        with pytest.raises(ValueError, match=next(iter(option))):
            fd.fit(net, x, y, client=client, optimizer="lbfgs", **option)


def _round_marker(directory):
    """A worker plugin that writes ``<pid>.<n>`` into ``directory`` when a
    training round's task starts executing on its worker: the moment a
    test can kill the worker inside the round."""
    class RoundMarker(distributed.WorkerPlugin):
        name = "fastnn-round-marker"

        def setup(self, worker):
            self.count = 0

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and "fastnn-round" in str(key):
                self.count += 1
                open(os.path.join(directory, f"{os.getpid()}.{self.count}"), "w").close()

    return RoundMarker()


def _wait_for(predicate, timeout=120.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def own_client(fastnn_backend):
    """A cluster of its own, for a test that kills a worker or a client:
    what that leaves behind (a worker restarting, a dead one the scheduler
    still lists, a round still running) then delays no other test. (On the
    module's shared cluster, the next test waited up to minutes in cold
    CI runs.)"""
    with fd.local_cluster(2) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture
def patient_cluster():
    """The nanny restarts a killed worker; LocalCluster gives up on it (and
    closes the nanny for good) unless the new process registers within
    lost-worker-timeout, 15 s by default, which a busy 2-core runner misses."""
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "300s"}):
        yield


def test_a_worker_killed_inside_a_round_changes_nothing(patient_cluster, own_client, tmp_path):
    import threading

    client = own_client
    # Rounds long enough to be inside: 2 chunks of 6000 rows, one round an epoch.
    x, y = data(12000, d=10)
    X = da.from_array(x, chunks=(6000, 10))
    try:
        def run(kill):
            for p in os.listdir(tmp_path):
                os.unlink(tmp_path / p)
            client.register_plugin(_round_marker(str(tmp_path)))  # counts from 0 again
            net = fastnn.Network([10, 256, 256, 3], seed=4)
            killed = []
            if kill:
                def killer():
                    # Round 2's first task to start: kill its worker now.
                    _wait_for(lambda: any(p.endswith(".2") for p in os.listdir(tmp_path)))
                    pid = int(next(p for p in os.listdir(tmp_path) if p.endswith(".2"))[:-2])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                t = threading.Thread(target=killer, daemon=True)
                t.start()
            fd.fit(net, X, y, client=client, epochs=3, batch_size=16, lr=0.05,
                   sync_every=750)  # each chunk's whole pass of 8-row shares
            if kill:
                t.join(5)
                assert killed, "no worker was killed"
            return net.theta.copy()

        clean = run(False)
        np.testing.assert_array_equal(run(True), clean)
    finally:
        client.unregister_worker_plugin("fastnn-round-marker")


def test_a_client_gone_mid_fit_leaves_no_task_running(own_client, tmp_path):
    import subprocess
    import sys

    client = own_client
    marks = tmp_path / "marks"
    marks.mkdir()
    client.register_plugin(_round_marker(str(marks)))
    script = (
        "import sys, numpy as np, distributed, fastnn; from fastnn import dask as fd\n"
        "c = distributed.Client(sys.argv[1])\n"
        "x = np.random.default_rng(0).random((12000, 10)).astype(np.float32)\n"
        "y = (x[:, 0] > 0.5).astype(np.int64)\n"
        "fd.fit(fastnn.Network([10, 256, 256, 2], seed=1), x, y, client=c, epochs=1000,"
        " batch_size=16, lr=0.05, sync_every=750)\n")
    # The same fit on the workers first: on an empty kernel cache they compile
    # (or fall back to NumPy) here, not while the test waits for the driver's rounds.
    x, y = data(64)
    fd.fit(fastnn.Network([10, 256, 256, 2], seed=1), x, (y > 0).astype(np.int64),
           client=client, epochs=1, batch_size=16)
    for p in os.listdir(marks):
        os.unlink(marks / p)
    # (cwd: a source checkout in the working directory would shadow the
    # fastnn under test, and its kernel cache is not the one warmed above.)
    driver = subprocess.Popen([sys.executable, "-c", script, client.scheduler.address],
                              cwd=tmp_path)
    try:
        _wait_for(lambda: len(os.listdir(marks)) >= 3 or driver.poll() is not None,
                  timeout=300)
        assert driver.poll() is None, "the driver exited early"
        driver.kill()  # the client disappears mid-fit, a round running
    finally:
        driver.kill()
        driver.wait()
    try:
        def idle():
            left = client.run_on_scheduler(
                lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks
                                        if "fastnn-round" in str(k)])
            running = client.run(lambda dask_worker: len(dask_worker.state.executing))
            return not left and not any(running.values())
        # A round already running finishes (Dask cannot stop a running task):
        # on an empty kernel cache a worker runs it on NumPy, which can take minutes.
        _wait_for(idle, timeout=300)
    finally:
        client.unregister_worker_plugin("fastnn-round-marker")


def test_grid_search_on_dask(client):
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    x, y = data(300)
    grid = GridSearchCV(fastnn.MLPClassifier(max_iter=30, random_state=0),
                        {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}, cv=2)
    with parallel_backend("dask"):
        grid.fit(x, y)
    serial = GridSearchCV(fastnn.MLPClassifier(max_iter=30, random_state=0),
                          {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}, cv=2)
    serial.fit(x, y)
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])


def test_from_npy_reads_chunks_on_the_workers(client, tmp_path):
    x, y = data(900)
    path = tmp_path / "x.npy"
    np.save(path, x)
    X = fd.from_npy(path, 300)
    assert X.chunks[0] == (300, 300, 300)
    a = fastnn.Network([10, 8, 3], seed=5)
    b = fastnn.Network([10, 8, 3], seed=5)
    fd.fit(a, X, y, client=client, epochs=2, batch_size=50)
    fd.fit(b, da.from_array(x, chunks=(300, 10)), y, client=client, epochs=2, batch_size=50)
    np.testing.assert_array_equal(a.theta, b.theta)


_USER_SCRIPT = '''
import numba
import numpy as np

import fastnn
from fastnn import dask as fd


def probe():
    net = fastnn.Network([4, 8, 2], seed=0)
    x = np.random.default_rng(0).random((64, 4)).astype(np.float32)
    net.fit(x, (x[:, 0] > 0.5).astype(np.int64), epochs=1, batch_size=16)

    @numba.njit
    def fresh(v):  # a compile: Numba reads its NUMBA_* variables again
        return v + 1

    fresh(1)
    return numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS


if __name__ == "__main__":
    import distributed
    with fd.local_cluster(2) as cluster, distributed.Client(cluster) as client:
        print(sorted(client.run(probe).values()))
'''


@pytest.mark.kernels
def test_a_script_that_imports_fastnn_gets_single_threaded_workers(tmp_path):
    """A worker process imports the user's script (and so fastnn) before
    Dask applies the cluster's NUMBA_NUM_THREADS=1: the workers still run
    one Numba thread each, and compile (Numba refuses to compile once its
    pool runs at another size than the environment says)."""
    import subprocess
    import sys

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the workers' default is one thread anyway")
    script = tmp_path / "train.py"
    script.write_text(_USER_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[(1, 1), (1, 1)]"
