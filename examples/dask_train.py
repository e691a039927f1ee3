"""Train, predict and search on Dask
=================================

A LocalCluster on this machine.

Run it::

    pip install "fastnn[dask,sklearn]"
    python examples/dask_train.py

On a real cluster, connect a distributed.Client to its scheduler instead of
starting a LocalCluster; the calls are the same.
"""
import warnings

import distributed
import numpy as np
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV

import fastnn
from fastnn import dask as fd


def main():
    warnings.filterwarnings("ignore", message="Stochastic Optimizer")  # 20 iterations: a demo
    cluster = fd.local_cluster()  # one single-threaded worker process per core
    client = distributed.Client(cluster)
    print("dashboard:", client.dashboard_link)
    try:
        (x, y), (xt, yt) = fastnn.load_mnist()
        import dask.array as da

        X = da.from_array(x, chunks=(len(x) // len(client.scheduler_info()["workers"]), 784))
        net = fastnn.Network([784, 100, 50, 10], seed=8)
        hist = fd.fit(net, X, y, client=client, epochs=5, batch_size=100, lr=0.5,
                      validation_data=(xt[:2000], yt[:2000]), verbose=True)
        print(f"trained by model averaging over {X.numblocks[0]} chunks; "
              f"last val_accuracy {hist['val_accuracy'][-1]:.4f}")
        labels = fd.predict(net, da.from_array(xt, chunks=(2500, 784))).compute()
        print(f"test accuracy (predicted on the workers): {np.mean(labels == yt):.4f}")
        grid = GridSearchCV(fastnn.MLPClassifier(max_iter=20, random_state=0),
                            {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-3]},
                            cv=3)
        with parallel_backend("dask"):
            grid.fit(x[:3000], y[:3000])
        print("search on the workers: best", grid.best_params_,
              f"cv accuracy {grid.best_score_:.4f}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
