"""A Dask cluster started as users start one: ``dask scheduler`` and two
``dask worker`` processes from their command lines on the loopback address,
each worker with its own empty kernel cache (a new machine). The client
connects by address; fit, predict and a grid search run there, and the cold
workers train on the NumPy backend while their kernels compile, instead of
waiting minutes for the compiler before the first round.
"""
import sys
import time

import pytest

import fastnn

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
fd = pytest.importorskip("fastnn.dask")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="finds the workers' compile helpers in /proc")


def _load_bench(name):
    """A script of bench/ as a module (the cluster tooling lives there)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_bench = _load_bench("dask_scaling")
_helpers_for = _bench.compile_helpers


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    with _bench.command_line_cluster(str(root)) as address:
        client = distributed.Client(address, timeout=60)
        try:
            client.wait_for_workers(2, timeout=120)
            yield client, root
        finally:
            client.close()


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
