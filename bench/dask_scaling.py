"""fastnn.dask on a LocalCluster against a single-process fit, MNIST classic.

    python bench/dask_scaling.py                # 2 workers, 10 epochs
    python bench/dask_scaling.py --workers 2 --epochs 10 --sync-every 100

Reports, for the classic network (784-100-50-10, relu, softmax, SGD lr 0.5,
batch 100, float32) on the 60k MNIST training rows: seconds per epoch
(median) and test accuracy after the last epoch for a single-process
``Network.fit`` (all cores) and for ``fastnn.dask.fit`` on a LocalCluster of
single-threaded worker processes, the bytes sent per round, and an
estimate on paper for 8 and 64 workers on a 10 Gb/s network: each round
sends the parameters to every worker and back (2 x P bytes per worker,
through the client), while the compute per epoch divides by the worker
count; where the two meet, communication dominates.
The training data reaches the workers from a .npy file that each worker
memory-maps and reads its own rows of (``fastnn.dask.from_npy``): the client
never holds it.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--sync-every", type=int, default=None,
                   help="batches between averagings (default: once per local pass)")
    args = p.parse_args(argv)
    import distributed

    import fastnn
    from fastnn import dask as fd
    from fastnn._config import TARGET_ISA

    (x, y), (xt, yt) = fastnn.load_mnist()
    layers = [784, 100, 50, 10]
    opts = dict(batch_size=100, lr=0.5)

    net = fastnn.Network(layers, seed=8)
    net.fit(x[:1000], y[:1000], epochs=1, **opts)  # compile / load the kernels
    net = fastnn.Network(layers, seed=8)
    h = net.fit(x, y, epochs=args.epochs, **opts)
    single = statistics.median(h["seconds"])
    single_acc = net.evaluate(xt, yt)["accuracy"]

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.npy")
        np.save(path, x)
        cluster = fd.local_cluster(args.workers)
        client = distributed.Client(cluster)
        try:
            rows = -(-len(x) // args.workers)
            X = fd.from_npy(path, rows)
            warm = fastnn.Network(layers, seed=8)
            fd.fit(warm, X[:2000], y[:2000], client=client, epochs=1, **opts)  # workers warm
            net = fastnn.Network(layers, seed=8)
            t0 = time.perf_counter()
            h = fd.fit(net, X, y, client=client, epochs=args.epochs,
                       sync_every=args.sync_every, **opts)
            total = time.perf_counter() - t0
            per_epoch = statistics.median(h["seconds"])
            acc = net.evaluate(xt, yt)["accuracy"]
        finally:
            client.close()
            cluster.close()

    params = net.theta.nbytes
    batches = -(-rows // opts["batch_size"])
    rounds = -(-batches // (args.sync_every or batches))
    print(f"MNIST classic {layers}, {args.epochs} epochs, batch 100, lr 0.5, float32; "
          f"kernels for {TARGET_ISA}, {os.cpu_count()} cores")
    print(f"single process (Network.fit, {fastnn.get_num_threads()} threads): "
          f"{single:.3f} s/epoch, test accuracy {single_acc:.4f}")
    print(f"fastnn.dask, {args.workers} workers x 1 thread: {per_epoch:.3f} s/epoch "
          f"({total:.1f} s for {args.epochs}), test accuracy {acc:.4f} "
          f"({100 * (acc - single_acc):+.2f} pt)")
    print(f"per round: parameters {params / 1e6:.3f} MB to and from each worker "
          f"= {2 * params * args.workers / 1e6:.2f} MB; {rounds} round(s) per epoch")
    compute = single * 2  # one core's epoch: the single-process figure uses 2 cores
    print("on paper, 10 Gb/s network (1.25 GB/s through the client), same model:")
    for w in (8, 64):
        comm = 2 * params * w * rounds / 1.25e9
        print(f"  {w:3d} workers: compute {compute / w:.3f} s/epoch, communication "
              f"{comm:.3f} s/epoch")
    crossover = (compute / (2 * params * rounds / 1.25e9)) ** 0.5
    print(f"  communication exceeds compute beyond ~{crossover:.0f} workers "
          f"(compute/w = 2*P*w*rounds/bandwidth)")


if __name__ == "__main__":
    main()
