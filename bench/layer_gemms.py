"""Every matmul of one training step of a network, fastnn against np.matmul.

    python bench/layer_gemms.py                          # digits' 64-50-10, batch 200, 1 thread
    python bench/layer_gemms.py --layers 784 100 50 10 --batch 100 --threads 2

Per layer: the forward product (nn, batch x fan_in @ fan_in x fan_out),
the weight gradient (tn, X.T @ dU) and, above the first layer, the input
gradient (nt, dU @ W.T); medians of 500 calls (a call's dispatch included:
a few us that matter at these sizes), float32 unless ``--dtype float64``, the same number of threads
for Numba and for NumPy's BLAS (threadpoolctl, when installed).
"""
import argparse

import numpy as np

try:
    from .gemm_isa import median_seconds  # imported with bench/ (asv's discovery)
except ImportError:
    from gemm_isa import median_seconds  # run as a script: bench/ is its directory


def median_us(fn, settle):
    return median_seconds(fn, reps=500, settle=settle) * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, nargs="+", default=[64, 50, 10])
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = p.parse_args(argv)
    import fastnn
    from fastnn.kernels import layout, matmul

    fastnn.set_num_threads(args.threads)
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(args.threads)
    except ImportError:
        pass
    rng = np.random.default_rng(0)

    dt = np.dtype(args.dtype)

    def f(*shape):
        return rng.random(shape).astype(dt)

    B = args.batch
    print(f"kernels for {layout.TARGET_ISA}; {args.threads} thread(s); batch {B}; {dt}")
    print(f"{'product':26s} {'fastnn us':>10s} {'numpy us':>9s} {'ratio':>6s}")
    total = [0.0, 0.0]
    for l, (K, N) in enumerate(zip(args.layers, args.layers[1:])):
        X, W, dU = f(B, K), f(K, N), f(B, N)
        Y, dW, dX, WT = (np.empty((B, N), dt), np.empty((K, N), dt),
                         np.empty((B, K), dt), np.empty((N, K), dt))
        cases = [(f"forward{l} nn {B}x{K}x{N}", lambda: matmul.gemm_nn(X, W, Y),
                  lambda: np.matmul(X, W, out=Y)),
                 (f"dW{l} tn {K}x{B}x{N}", lambda: matmul.gemm_tn(X, dU, dW),
                  lambda: np.matmul(X.T, dU, out=dW))]
        if l > 0:
            cases.append((f"dX{l} nt {B}x{N}x{K}", lambda: matmul.gemm_nt(dU, W, dX, WT),
                           lambda: np.matmul(dU, W.T, out=dX)))
        for name, ours, theirs in cases:
            # With 2+ threads, a second's sleep first: OpenBLAS's threads
            # spin-wait after np.matmul (see gemm_isa.py).
            settle = 1.0 if args.threads > 1 else 0.0
            a, b = median_us(ours, settle), median_us(theirs, settle)
            total[0] += a
            total[1] += b
            print(f"{name:26s} {a:10.1f} {b:9.1f} {a / b:6.2f}", flush=True)
    print(f"{'all':26s} {total[0]:10.1f} {total[1]:9.1f} {total[0] / total[1]:6.2f}")


if __name__ == "__main__":
    main()
