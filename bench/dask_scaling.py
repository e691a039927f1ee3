"""fastnn.dask on a LocalCluster against a single-process fit, MNIST.

    python bench/dask_scaling.py accuracy       # accuracy and speed against rounds per epoch
    python bench/dask_scaling.py scaling        # 1, 2, 4 workers; classic and wide
    python bench/dask_scaling.py cold           # empty kernel caches: time to the first round

``accuracy``: the classic network (784-100-50-10, relu, softmax, SGD lr 0.5,
batch 100, float32) on the first 20,000 MNIST training rows, cut into 2, 4,
8 and 16 chunks, on a LocalCluster of 2 single-threaded workers. For each
number of rounds per epoch (every step, the default; 10; 1) and each seed, a
10-epoch fit with the test set evaluated after every epoch; the table gives
the median over seeds of the test accuracy after epochs 3 and 10 (a constant
rate: the same as fits of 3 and 10 epochs) and of the seconds per epoch,
beside ``Network.fit`` in one process with the same seeds.

``scaling``: 1, 2 and 4 single-threaded workers against ``Network.fit`` on
all cores, for the classic network (60,000 rows) and a wide one
(784-1024-1024-10, 20,000 rows, lr 0.1): seconds per epoch, test accuracy,
and the wall time to reach the single-process fit's final accuracy. Then,
on paper, the traffic per round and where communication overtakes compute
on a 10 Gb/s network.

``cold``: a scheduler and 2 workers started from their command lines, each
worker with an empty kernel cache; the seconds from ``fd.fit`` to the end
of its first round, and which backend the workers trained on.
"""
import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

CLASSIC = [784, 100, 50, 10]
WIDE = [784, 1024, 1024, 10]


def _cluster(workers):
    import distributed

    from fastnn import dask as fd
    cluster = fd.local_cluster(workers)
    return cluster, distributed.Client(cluster)


def _median(values):
    return statistics.median(values) if values else float("nan")


def _dask_fit(client, x, y, xt, yt, chunks, seed, epochs, **opts):
    import dask.array as da

    import fastnn
    from fastnn import dask as fd
    rows = -(-len(x) // chunks)
    X = da.from_array(x, chunks=(rows, -1))
    Y = da.from_array(y, chunks=(rows,))
    net = fastnn.Network(opts.pop("layers", CLASSIC), seed=seed)
    t0 = time.perf_counter()
    h = fd.fit(net, X, Y, client=client, epochs=epochs, validation_data=(xt, yt), **opts)
    return h, time.perf_counter() - t0


def accuracy(args):
    import fastnn
    (x, y), (xt, yt) = fastnn.load_mnist()
    x, y = x[:args.rows], y[:args.rows]
    opts = dict(batch_size=100, lr=0.5)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    steps = -(-len(x) // opts["batch_size"])
    fastnn.Network(CLASSIC, seed=0).fit(x[:500], y[:500], epochs=1, **opts)  # warm
    single = [fastnn.Network(CLASSIC, seed=s).fit(x, y, epochs=args.epochs,
                                                  validation_data=(xt, yt), **opts)
              for s in seeds]
    rows = [("1 process", steps, single)]
    print(_format_row(*rows[0]), flush=True)
    cluster, client = _cluster(args.workers)
    try:
        _dask_fit(client, x[:2000], y[:2000], xt, yt, 2, 0, 1, **opts)  # warm the workers
        for chunks in args.chunks:
            for rounds in args.rounds:
                sync = max(1, -(-steps // rounds))
                hs = [_diverged_as_nan(_dask_fit, client, x, y, xt, yt, chunks, s,
                                       args.epochs, sync_every=sync, **opts) for s in seeds]
                rows.append((f"{chunks} chunks", -(-steps // sync), hs))
                print(_format_row(*rows[-1]), flush=True)
    finally:
        client.close()
        cluster.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"run": name, "rounds": rounds, "seeds": list(seeds),
                        "val_accuracy": [h["val_accuracy"] for h in hs],
                        "seconds": [h["seconds"] for h in hs]} for name, rounds, hs in rows],
                      f)
    print(f"\nMNIST classic {CLASSIC}, first {len(x)} training rows, SGD lr 0.5, batch 100, "
          f"float32; LocalCluster of {args.workers} single-threaded workers; medians over "
          f"seeds {seeds.start}-{seeds.stop - 1}; {_host()}")
    print("| run | rounds/epoch | test acc. after 3 epochs | after 10 | s/epoch |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(_format_row(*row))


def _diverged_as_nan(fit, *args, **kwargs):
    """The history of ``fit(...)``, or, if training diverged (local steps on
    a few rows at a high rate can), one of NaNs."""
    import fastnn
    try:
        return fit(*args, **kwargs)[0]
    except fastnn.TrainingDivergedError:
        epochs = args[7]
        return {"val_accuracy": [float("nan")] * epochs, "seconds": [float("nan")]}


def _format_row(name, rounds, hs):
    acc = [[100 * h["val_accuracy"][e] for h in hs] for e in (2, len(hs[0]["val_accuracy"]) - 1)]
    sec = [_median(h["seconds"]) for h in hs]
    failed = sum(np.isnan(a) for a in acc[1])
    if failed:  # a median over the seeds that trained would flatter the setting
        return (f"| {name} | {rounds} | diverged ({failed} of {len(hs)} seeds) | | "
                f"{_median([t for t in sec if t == t]):.3f} |")
    return (f"| {name} | {rounds} | {_median(acc[0]):.2f}% | {_median(acc[1]):.2f}% "
            f"| {_median(sec):.3f} |")


def scaling(args):
    import fastnn
    (x, y), (xt, yt) = fastnn.load_mnist()
    results = {}
    for name, layers, n, lr, epochs in [("classic", CLASSIC, 60000, 0.5, args.epochs),
                                        ("wide", WIDE, 20000, 0.1, args.wide_epochs)]:
        xs, ys = x[:n], y[:n]
        opts = dict(batch_size=100, lr=lr)
        fastnn.Network(layers, seed=0).fit(xs[:500], ys[:500], epochs=1, **opts)  # warm
        net = fastnn.Network(layers, seed=8)
        t0 = time.perf_counter()
        h = net.fit(xs, ys, epochs=epochs, validation_data=(xt, yt), **opts)
        wall = time.perf_counter() - t0
        target = h["val_accuracy"][-1]
        results[name] = [("1 process", fastnn.get_num_threads(), "-", h, wall, target, net)]
        print(_scaling_row(name, *results[name][-1][:5], target), flush=True)
        for workers in args.workers_list:
            cluster, client = _cluster(workers)
            try:
                _dask_fit(client, xs[:2000], ys[:2000], xt, yt, workers, 0, 1,
                          layers=layers, **opts)  # warm the workers
                for sync_name, sync in (("every step", 1), ("1 per epoch", 10 ** 9)):
                    dnet_h, dwall = _dask_fit(client, xs, ys, xt, yt, workers, 8,
                                              2 * epochs, layers=layers, sync_every=sync,
                                              **opts)
                    results[name].append((f"{workers} workers", 1, sync_name, dnet_h, dwall,
                                          target, None))
                    print(_scaling_row(name, *results[name][-1][:5], target), flush=True)
            finally:
                client.close()
                cluster.close()
    print(f"\n{_host()}")
    print("| model | run | threads each | rounds | s/epoch | test acc. after "
          "the 1-process epochs | s to the 1-process accuracy |")
    print("|---|---|---:|---|---:|---:|---:|")
    for name, rows in results.items():
        for row in rows:
            print(_scaling_row(name, *row[:5], row[5]))
    print("\nOn paper, per round: the parameters go to every chunk's worker and come back "
          "(client in the middle).")
    for name, layers in (("classic", CLASSIC), ("wide", WIDE)):
        net = results[name][0][6]
        p = net.theta.nbytes
        step = _median(results[name][0][3]["seconds"]) / -(-(60000 if name == "classic"
                                                            else 20000) // 100)
        one_core = step * fastnn.get_num_threads()  # a step's compute on one core
        print(f"  {name} {layers}: {net.theta.size:,} parameters = {p / 1e6:.2f} MB each way "
              f"per worker per round; a batch-100 step takes {1e3 * one_core:.2f} ms on one "
              f"core here")
        for sync_name, steps_per_round in (("every step", 1), ("10 steps", 10)):
            # w workers: compute per round one_core * steps / w; traffic 2 * p * w at 1.25 GB/s
            # through the client. Equal at w^2 = one_core * steps * 1.25e9 / (2 p).
            w = (one_core * steps_per_round * 1.25e9 / (2 * p)) ** 0.5
            print(f"    rounds {sync_name}: communication overtakes compute beyond "
                  f"~{w:.1f} workers")


def _scaling_row(name, run, threads, sync, h, wall, target):
    acc = h["val_accuracy"]
    epochs_single = len(acc) if run == "1 process" else len(acc) // 2
    reached = next((i for i, a in enumerate(acc) if a >= target), None)
    to_target = ("not reached" if reached is None
                 else f"{sum(h['seconds'][:reached + 1]):.1f}")
    return (f"| {name} | {run} | {threads} | {sync} | {_median(h['seconds']):.3f} | "
            f"{100 * acc[epochs_single - 1]:.2f}% | {to_target} |")


def cold(args):
    import distributed

    import fastnn
    from fastnn import dask as fd
    (x, y), _ = fastnn.load_mnist()
    x, y = x[:20000], y[:20000]
    root = tempfile.mkdtemp(prefix="fastnn-cold-")
    try:
        with command_line_cluster(root) as address:
            client = distributed.Client(address, timeout=60)
            client.wait_for_workers(2, timeout=120)
            first = []
            net = fastnn.Network(CLASSIC, seed=8)
            t0 = time.perf_counter()
            # One round an epoch: the first round is a whole pass over each chunk.
            fd.fit(net, x, y, client=client, epochs=3, batch_size=100, lr=0.5,
                   sync_every=10 ** 9,
                   callbacks=[lambda n, h: first.append(time.perf_counter() - t0)])
            helpers = len(compile_helpers(root))
            client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{_host()}\nempty kernel caches, 2 workers x 1 thread, 20,000 rows, classic, "
          f"one round an epoch: epochs end {', '.join(f'{t:.2f}' for t in first)} s after "
          f"fd.fit was called; compile helpers still running for the workers' caches: "
          f"{helpers} (the workers trained on the NumPy backend meanwhile)")


@contextlib.contextmanager
def command_line_cluster(root, workers=2):
    """A scheduler and ``workers`` single-threaded workers started from
    their command lines on 127.0.0.1, each worker with its own empty kernel
    cache under ``root`` (a new machine); yields the scheduler's address.
    Stops them on leaving, and their compile helpers too (their caches are
    thrown away)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "FASTNN_BACKEND", "FASTNN_BACKGROUND_COMPILE")}
    log = open(os.path.join(root, "cluster.log"), "w")
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              stdout=log, stderr=log, env=env)]
    try:
        for i in range(workers):
            cache = os.path.join(root, f"cache{i}")
            os.mkdir(cache)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                 "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"],
                stdout=log, stderr=log,
                env=dict(env, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS="1",
                         OMP_NUM_THREADS="1")))
        yield address
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # The workers' compile helpers outlive them by design (a cache
        # finished for next time); these caches are thrown away.
        for pid in compile_helpers(str(root)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()


def compile_helpers(path):
    """PIDs of fastnn compile helpers whose environment mentions ``path``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
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


def _host():
    import numba
    from llvmlite import binding

    from fastnn._config import TARGET_ISA
    return (f"host: {binding.get_host_cpu_name()} ({TARGET_ISA} kernels), "
            f"{os.cpu_count()} cores, numba {numba.__version__}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--rows", type=int, default=20000)
    a.add_argument("--chunks", type=int, nargs="+", default=[2, 4, 8, 16])
    a.add_argument("--rounds", type=int, nargs="+", default=[10 ** 9, 10, 1],
                   help="rounds per epoch (10**9: every step)")
    a.add_argument("--seeds", type=int, default=5, help="how many seeds")
    a.add_argument("--first-seed", type=int, default=1)
    a.add_argument("--json", help="also write every run's per-epoch figures here")
    a.add_argument("--epochs", type=int, default=10)
    a.add_argument("--workers", type=int, default=2)
    s = sub.add_parser("scaling")
    s.add_argument("--workers-list", type=int, nargs="+", default=[1, 2, 4])
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--wide-epochs", type=int, default=3)
    sub.add_parser("cold")
    args = p.parse_args(argv)
    {"accuracy": accuracy, "scaling": scaling, "cold": cold}[args.mode](args)


if __name__ == "__main__":
    main()
