"""Speed when the CPU is shared: one fastnn process alone (the baseline),
two at once, and one beside a CPU hog, in one report.

    python bench/shared_cpu.py                 # classic MNIST epochs on 20k rows
    python bench/shared_cpu.py --epochs 8 --env OMP_WAIT_POLICY=passive
    python bench/shared_cpu.py --workload tabular   # each tabular shape (compare.py's)

Each trainer process warms up (one epoch, compiling if needed), waits at a
barrier file so that the pair starts together, then times ``--epochs``
epochs (one ``fit(epochs=1)`` each) and prints their median. The ratios are
each scenario's median over the lone median: 1.0 means no slowdown.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TRAINER = r"""
import json, os, sys, time
import numpy as np
import fastnn
from fastnn.integrations import benchmark
epochs, go, workload = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if workload == "classic":
    (x, y), _ = fastnn.load_mnist()
    x, y = x[:20000], y[:20000]
    spec = dict(layers=[784, 100, 50, 10], batch_size=100, lr=0.1, optimizer="sgd")
else:
    x, y = benchmark.tabular_data(workload)
    spec = benchmark.TABULAR[workload]
system = benchmark.FastnnSystem(x, y, spec["layers"], spec["batch_size"], spec["lr"],
                                "float32", spec["optimizer"])
system.epoch()   # warm-up (and compile)
open(go + "." + str(os.getpid()), "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
times = []
for _ in range(epochs):
    t0 = time.perf_counter()
    system.epoch()
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""

HOG = "import time\nt = time.time() + 600\nwhile time.time() < t: pass\n"


def run(n_trainers, epochs, env, hog=False, workload="classic"):
    """Medians (s/epoch) of ``n_trainers`` processes started together, each
    training ``workload`` (classic: MNIST's on 20k rows; or a tabular
    shape of fastnn.integrations.benchmark.TABULAR)."""
    go = os.path.join(tempfile.mkdtemp(), "go")
    hog_proc = subprocess.Popen([sys.executable, "-c", HOG]) if hog else None
    try:
        procs = [subprocess.Popen([sys.executable, "-c", TRAINER, str(epochs), go, workload],
                                  env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(n_trainers)]
        d = os.path.dirname(go)
        while sum(n.startswith("go.") for n in os.listdir(d)) < n_trainers:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a trainer ended before its warm-up finished")
            time.sleep(0.01)
        open(go, "w").close()
        out = [json.loads(p.communicate()[0]) for p in procs]
    finally:
        if hog_proc is not None:
            hog_proc.kill()
    return [sorted(t)[len(t) // 2] for t in out]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="environment for the trainers (e.g. OMP_WAIT_POLICY=passive)")
    p.add_argument("--workload", nargs="+", default=["classic"],
                   help="classic, tabular (every tabular shape) or tabular shape names")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    from fastnn.integrations.benchmark import TABULAR

    workloads = [w for name in args.workload
                 for w in (TABULAR if name == "tabular" else [name])]
    for w in workloads:
        if w != "classic" and w not in TABULAR:
            p.error(f"--workload: unknown workload {w!r}")
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.env))
    import llvmlite.binding as ll
    feats = ll.get_host_cpu_features()
    isa = "AVX-512" if feats.get("avx512f") else "AVX2" if feats.get("avx2") else "SSE"
    print(f"{os.cpu_count()} CPUs ({isa}); median of {args.epochs} epochs; "
          f"env {' '.join(args.env) or '(default)'}")
    results = {}
    for w in workloads:
        lone = run(1, args.epochs, env, workload=w)[0]
        pair = run(2, args.epochs, env, workload=w)
        hogged = run(1, args.epochs, env, hog=True, workload=w)[0]
        results[w] = {"alone": lone, "pair": pair, "hog": hogged}
        print(f"\n{w}" + (" (20,000 MNIST rows)" if w == "classic" else ""))
        print(f"{'scenario':20s} {'s/epoch':>18s} {'x alone':>14s}")
        for name, ts in (("alone", [lone]), ("two at once", pair),
                         ("beside a CPU hog", [hogged])):
            print(f"{name:20s} {' '.join(f'{t:.3f}' for t in ts):>18s} "
                  f"{' '.join(f'{t / lone:.2f}' for t in ts):>14s}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": args.env, "workloads": results}, f)


if __name__ == "__main__":
    main()
