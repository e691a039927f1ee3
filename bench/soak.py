"""Soak: many fit / predict / save / load cycles with valid and invalid inputs.

Each cycle picks a random small problem (layers, activation, output head,
dtype, dense or mostly-zero inputs) and runs ``fit`` (or ``partial_fit``),
``predict_proba``, ``save`` into a scratch directory and ``load``; and one
random bad call (NaN inputs, wrong shapes, labels out of range, a save into a
missing directory, a load of a truncated or garbage file, a bad argument).
Every bad call must raise ValueError / TypeError / OSError (anything else,
or no error, is counted as a failure and printed). Reported: the process's
resident memory (RSS) and number of open file descriptors after the warm-up
cycles and at the end, and the temporary files left in the scratch
directory (there must be none).

    python bench/soak.py                 # 1000 cycles
    python bench/soak.py --cycles 200 --seed 3

The figures are the process's own (/proc/self): Linux only.
"""
import argparse
import os
import tempfile
import time

import numpy as np


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds():
    return len(os.listdir("/proc/self/fd"))


HEADS = ("softmax", "sigmoid", "identity")
HIDDEN = ("relu", "tanh", "sigmoid", "identity")


def problem(rng):
    n_in = int(rng.integers(1, 40))
    layers = [n_in] + [int(v) for v in rng.integers(1, 64, rng.integers(1, 3))] + [
        int(rng.integers(2, 6))]
    out = HEADS[rng.integers(len(HEADS))]
    n = int(rng.integers(5, 300))
    x = rng.standard_normal((n, n_in))
    if rng.random() < 0.3:
        x[rng.random(x.shape) < 0.9] = 0  # takes the sparse first layer
    if out == "softmax":
        y = rng.integers(0, layers[-1], n)
    else:
        y = rng.integers(0, 2, (n, layers[-1])).astype(float)
    dtype = "float32" if rng.random() < 0.7 else "float64"
    return layers, out, dtype, x.astype(dtype), y


def bad_calls(net, x, y, d, rng):
    """(description, callable) of calls that must fail cleanly."""
    import fastnn

    nan = x.copy()
    nan[0, 0] = np.nan
    return [
        ("NaN input", lambda: net.fit(nan, y, epochs=1)),
        ("wrong width", lambda: net.predict(np.ones((3, x.shape[1] + 1)))),
        ("1-D input", lambda: net.predict(np.ones(x.shape[1]))),
        ("labels out of range", lambda: net.fit(x, np.full(len(x), 99), epochs=1)
         if net.output == "softmax" else net.fit(x, y[:, :1], epochs=1)),
        ("rows mismatch", lambda: net.fit(x, y[:-1] if len(y) > 1 else y[:0], epochs=1)),
        ("bad lr", lambda: net.fit(x, y, epochs=1, lr=-1)),
        ("save into a missing directory", lambda: net.save(os.path.join(d, "no", "m.npz"))),
        ("load garbage", lambda: fastnn.Network.load(_write(d, "g.npz", rng.bytes(200)))),
        ("load truncated", lambda: fastnn.Network.load(_truncated(d))),
        ("load missing", lambda: fastnn.Network.load(os.path.join(d, "missing.npz"))),
        ("string input", lambda: net.predict([["a"] * x.shape[1]])),
    ]


def _write(d, name, data):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _truncated(d):
    path = os.path.join(d, "m.npz")
    data = open(path, "rb").read()
    return _write(d, "t.npz", data[: len(data) // 2])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100,
                   help="cycles before the first measurement (kernels compile, caches fill)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import fastnn

    rng = np.random.default_rng(args.seed)
    failures = []
    t0 = time.perf_counter()
    base = None
    with tempfile.TemporaryDirectory() as d:
        model_path = os.path.join(d, "m.npz")
        for cycle in range(args.cycles):
            if cycle == args.warmup:
                base = (rss_mb(), open_fds())
            layers, out, dtype, x, y = problem(rng)
            net = fastnn.Network(layers, hidden=HIDDEN[rng.integers(len(HIDDEN))], output=out,
                                 dtype=dtype, seed=int(rng.integers(1 << 30)))
            bs = int(rng.integers(1, 64))
            if rng.random() < 0.5:
                net.fit(x, y, epochs=int(rng.integers(1, 3)), batch_size=bs, lr=0.01,
                        verbose=False)
            else:
                net.partial_fit(x, y, batch_size=bs, lr=0.01)
            p1 = net.predict_proba(x)
            net.save(model_path)
            p2 = fastnn.Network.load(model_path).predict_proba(x)
            if not np.array_equal(p1, p2, equal_nan=True):
                failures.append((cycle, "save/load changed the predictions"))
            calls = bad_calls(net, x, y, d, rng)
            what, call = calls[rng.integers(len(calls))]
            try:
                call()
                failures.append((cycle, f"{what}: no error"))
            except (ValueError, TypeError, OSError):
                pass
            except Exception as e:  # noqa: BLE001 - the point is to see it
                failures.append((cycle, f"{what}: {type(e).__name__}: {e}"))
        end = (rss_mb(), open_fds())
        leftovers = [f for f in os.listdir(d)
                     if f not in ("m.npz", "g.npz", "t.npz")]
    seconds = time.perf_counter() - t0
    print(f"{args.cycles} cycles in {seconds:.1f} s (seed {args.seed})")
    if base is not None:
        print(f"RSS after {args.warmup} cycles {base[0]:.1f} MiB, at the end {end[0]:.1f} MiB "
              f"({end[0] - base[0]:+.1f})")
        print(f"open files after {args.warmup} cycles {base[1]}, at the end {end[1]} "
              f"({end[1] - base[1]:+d})")
    print(f"files left in the scratch directory besides the model: {leftovers or 'none'}")
    print(f"failures: {len(failures)}")
    for cycle, text in failures[:20]:
        print(f"  cycle {cycle}: {text}")
    return 1 if failures or leftovers else 0


if __name__ == "__main__":
    raise SystemExit(main())
