"""Sparse inputs (a text-like problem): fastnn vs scikit-learn, one report.

    python bench/sparse_text.py                     # 20,000 x 50,000, 0.5% non-zero
    python bench/sparse_text.py --rows 5000 --cols 20000

A TF-IDF-like CSR matrix (row-normalised non-negative values at random
columns, a Zipf-like column popularity) with labels from a sparse linear
model; ``MLPClassifier(hidden_layer_sizes=(100,), solver="adam",
max_iter=EPOCHS)`` fitted by each library on the same CSR matrix (each in
its own process, after a warm-up fit on a slice). Reports seconds per fit,
the peak RSS increase during fit, and test accuracy.
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, scipy.sparse as sp
args = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
n, d, density = args["rows"], args["cols"], args["density"]
nnz_row = max(1, int(d * density))
pop = 1.0 / np.arange(1, d + 1) ** 0.8
pop /= pop.sum()
cols = rng.choice(d, size=(n, nnz_row), p=pop)
vals = rng.random((n, nnz_row))
X = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * nnz_row + 1, nnz_row)), shape=(n, d))
X.sum_duplicates()
X = sp.csr_matrix(X.multiply(1.0 / np.sqrt(X.multiply(X).sum(axis=1))))
w = rng.standard_normal((d, 5)) * (rng.random((d, 1)) < 0.05)
y = np.asarray((X @ w)).argmax(axis=1)
split = int(0.8 * n)
Xtr, Xte, ytr, yte = X[:split], X[split:], y[:split], y[split:]
if args["lib"] == "fastnn":
    from fastnn import MLPClassifier
else:
    from sklearn.neural_network import MLPClassifier
from sklearn.exceptions import ConvergenceWarning
warnings.simplefilter("ignore", ConvergenceWarning)
kw = dict(hidden_layer_sizes=(100,), max_iter=args["epochs"], random_state=0)
MLPClassifier(**dict(kw, max_iter=1)).fit(Xtr[:500], ytr[:500])   # warm-up
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
clf = MLPClassifier(**kw).fit(Xtr, ytr)
t = time.perf_counter() - t0
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
csr_mb = (Xtr.data.nbytes + Xtr.indices.nbytes + Xtr.indptr.nbytes) / 2**20
print(json.dumps({"seconds": t, "peak_rss_increase_mb": (rss1 - rss0) / 1024, "csr_mb": csr_mb,
                  "accuracy": float(clf.score(Xte, yte)), "nnz": int(X.nnz)}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--cols", type=int, default=50000)
    p.add_argument("--density", type=float, default=0.005)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args(argv)
    res = {}
    for lib in ("fastnn", "sklearn"):
        cfg = dict(vars(args), lib=lib)
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], check=True,
                             capture_output=True, text=True).stdout
        res[lib] = json.loads(out.strip().splitlines()[-1])
    f, s = res["fastnn"], res["sklearn"]
    print(f"{args.rows} x {args.cols} CSR, {f['nnz']} non-zeros ({f['csr_mb']:.1f} MB training "
          f"CSR); MLPClassifier (100,), adam, {args.epochs} epochs")
    print(f"{'library':10s} {'fit s':>8s} {'peak RSS +MB':>13s} {'test acc':>9s}")
    for lib in ("fastnn", "sklearn"):
        r = res[lib]
        print(f"{lib:10s} {r['seconds']:8.2f} {r['peak_rss_increase_mb']:13.1f} "
              f"{r['accuracy']:9.4f}")
    print(f"scikit-learn / fastnn fit time: {s['seconds'] / f['seconds']:.1f}x")


if __name__ == "__main__":
    main()
