"""The tiled matmul against np.matmul, per orientation and shape, naming the
instruction set the kernels were compiled for.

    python bench/gemm_isa.py                # this host's ISA
    python bench/gemm_isa.py --isa avx2     # AVX2 code on an AVX-512 host, against
                                            # OpenBLAS's AVX2 (Haswell) kernels

The closing line gives each product's share of the kernels' ceiling (the
register tile on L1 data, fastnn.integrations.benchmark.tile_peak).
Each figure is the median over 5 rounds of 6 calls (or of 50 ms of calls,
whichever is more), float32 unless ``--dtype float64``; the ratio is fastnn /
np.matmul in the same run. The rounds take ours and np.matmul's in turn,
each block after half a second's sleep and a warm-up call: on a shared VM whose speed drifts from minute to minute, 30
calls of ours and then 30 of theirs compared two different machines (the
same code read 0.73-0.95 of np.matmul in runs minutes apart).
Shapes: the classic first layer (100x784x100), the wide workload's hidden
layer (256x1024x1024) and 512^3. Orientations as training uses them: nn
(forward, A @ B), tn (weight gradient, A.T @ B), nt (input gradient, A @ B.T).
"""
import argparse
import statistics
import time

import numpy as np

SHAPES = {"100x784x100": (100, 784, 100), "256x1024x1024": (256, 1024, 1024),
          "512^3": (512, 512, 512)}


def isa():
    """The instruction set the kernels are compiled for (Numba's target)."""
    from fastnn.kernels import layout

    return layout.TARGET_ISA


def median_seconds(fn, reps=30, settle=0.0):
    """Median of ``reps`` timed calls after one untimed call; ``settle``
    seconds of sleep first (layer_gemms.py's timing)."""
    time.sleep(settle)
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def paired_medians(ours, theirs, rounds=5, reps=6, settle=0.5, block=0.05):
    """Median seconds per call of ``ours`` and of ``theirs``: ``rounds``
    rounds of timed calls of each in turn, each block after ``settle``
    seconds of sleep and one untimed call (see main). A block has ``reps``
    calls or, for calls shorter than ``block / reps`` seconds, enough for
    ``block`` seconds: the first calls after the sleep wake sleeping
    threads, and 6 calls of a 0.2 ms product read 52 GFLOP/s, not ~85."""
    ts = ([], [])
    n = []
    for fn in (ours, theirs):
        fn()
        t0 = time.perf_counter()
        fn()
        n.append(max(reps, int(block / max(time.perf_counter() - t0, 1e-9))))
    for _ in range(rounds):
        for fn, out, calls in zip((ours, theirs), ts, n):
            time.sleep(settle)
            fn()
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    return statistics.median(ts[0]), statistics.median(ts[1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--isa", choices=["host", "avx2"], default="host",
                   help="avx2: fastnn's kernels and OpenBLAS on AVX2 code (fastnn.integrations.benchmark."
                        "avx2_environment)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    import sys

    from fastnn.integrations.benchmark import rerun_for_isa

    status = rerun_for_isa(args.isa, [sys.executable] + sys.argv)
    if status is not None:
        return status
    import fastnn
    from fastnn.integrations.benchmark import tile_peak
    from fastnn.kernels import layout, matmul

    dt = np.dtype(args.dtype)
    ceiling = [tile_peak(dt.name)]  # (before np.matmul's threads spin)
    print(f"kernels compiled for {isa()}, {layout.TARGET_CPU} (MR32={layout.MR32}, "
          f"MR64={layout.MR64}, NR={layout.NR}, TASK_PACK={layout.TASK_PACK}, "
          f"NT_PACK_MIN_N={layout.NT_PACK_MIN_N}); {fastnn.get_num_threads()} threads; {dt}")
    print(f"{'shape':14s} {'op':3s} {'fastnn GF/s':>11s} {'numpy GF/s':>11s} {'ratio':>6s}")
    results = {"isa": isa(), "dtype": dt.name, "gflops": {}}
    rng = np.random.default_rng(0)
    for name, (M, K, N) in SHAPES.items():
        A = rng.random((M, K)).astype(dt)
        B = rng.random((K, N)).astype(dt)
        At = np.ascontiguousarray(A.T)  # (K, M) for tn
        Bt = np.ascontiguousarray(B.T)  # (N, K) for nt
        C = np.empty((M, N), dt)
        scratch = np.empty((K, N), dt)
        flops = 2.0 * M * K * N
        cases = {
            "nn": (lambda: matmul.gemm_nn(A, B, C), lambda: np.matmul(A, B, out=C)),
            "tn": (lambda: matmul.gemm_tn(At, B, C), lambda: np.matmul(At.T, B, out=C)),
            "nt": (lambda: matmul.gemm_nt(A, Bt, C, scratch), lambda: np.matmul(A, Bt.T, out=C)),
        }
        for op, (ours, theirs) in cases.items():
            # A sleep before each block: after np.matmul returns, OpenBLAS's
            # threads spin-wait for a while, and a block of ours started
            # inside that window shared a core with them (512^3 nn read 0.40
            # and 0.98 of np.matmul in two runs on a 2-core AMD EPYC;
            # compare.py sleeps between systems for the same reason).
            t_ours, t_theirs = paired_medians(ours, theirs)
            f, g = flops / t_ours / 1e9, flops / t_theirs / 1e9
            print(f"{name:14s} {op:3s} {f:11.1f} {g:11.1f} {f / g:6.2f}", flush=True)
            results["gflops"][f"{name} {op}"] = {"fastnn": f, "numpy": g, "ratio": f / g}
    # Read again at the end, the higher kept (as compare.py does).
    ceiling = max(ceiling + [tile_peak(dt.name)])
    results["tile_peak_gflops"] = ceiling
    print(f"share of the kernels' ceiling (fastnn's register tile on L1 data, "
          f"{ceiling:.0f} GFLOP/s): " + ", ".join(
              f"{k} {100 * v['fastnn'] / ceiling:.0f}%" for k, v in results["gflops"].items()))
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
