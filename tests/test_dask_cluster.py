"""A Dask cluster started as users start one: ``dask scheduler`` and two
``dask worker`` processes from their command lines on the loopback address,
each worker with its own empty kernel cache (a new machine). The client
connects by address; fit, predict and a grid search run there, and the cold
workers train on the NumPy backend while their kernels compile, instead of
waiting minutes for the compiler before the first round.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
fd = pytest.importorskip("fastnn.dask")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="finds the workers' compile helpers in /proc")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _helpers_for(path):
    """PIDs of fastnn compile helpers whose environment mentions ``path``."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"fastnn.runtime.cold_start" not in f.read():
                        continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if path.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "FASTNN_BACKEND", "FASTNN_BACKGROUND_COMPILE")}
    log = open(root / "cluster.log", "w")
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              stdout=log, stderr=log, env=env)]
    for i in range(2):
        cache = root / f"cache{i}"  # a new machine's empty kernel cache
        cache.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
             "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard",
             "--name", f"w{i}"],
            stdout=log, stderr=log,
            env=dict(env, NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="1",
                     OMP_NUM_THREADS="1")))
    client = None
    try:
        client = distributed.Client(address, timeout=60)
        client.wait_for_workers(2, timeout=120)
        yield client, root
    finally:
        if client is not None:
            client.close()
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # The workers' compile helpers outlive them by design (a cache
        # finished for next time); this cache is thrown away, so stop them.
        for pid in _helpers_for(str(root)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()


def test_fit_predict_and_search_on_a_cluster_started_from_the_command_line(cli_cluster):
    client, root = cli_cluster
    (x, y), (xt, yt) = fastnn.load_mnist()
    x, y, xt, yt = x[:6000], y[:6000], xt[:2000], yt[:2000]
    X = da.from_array(x, chunks=(3000, 784))
    net = fastnn.Network([784, 100, 50, 10], seed=8)
    t0 = time.perf_counter()
    first = []
    hist = fd.fit(net, X, y, client=client, epochs=3, lr=0.5, batch_size=100,
                  callbacks=[lambda n, h: first.append(time.perf_counter() - t0) and False])
    print(f"cold workers: first epoch (one round) {first[0]:.1f} s after fit started")
    assert hist["loss"][-1] < hist["loss"][0]
    acc = float((fd.predict(net, da.from_array(xt, chunks=(1000, 784))).compute() == yt).mean())
    assert acc > 0.85
    # The workers trained on NumPy meanwhile: their caches are still being filled.
    helpers = _helpers_for(str(root))
    assert helpers, "no compile helper: did a worker compile in-process before training?"

    pytest.importorskip("sklearn")
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(fastnn.MLPClassifier(hidden_layer_sizes=(16,), max_iter=20,
                                               random_state=0),
                          {"alpha": [1e-4, 1e-2]}, cv=2)
    with parallel_backend("dask"):
        search.fit(x[:600], y[:600])
    assert set(search.cv_results_["param_alpha"]) == {1e-4, 1e-2}
    assert search.best_score_ > 0.5
