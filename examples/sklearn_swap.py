"""The scikit-learn swap
=====================

One script, two MLPClassifiers, timed side by side.

The same code trains scikit-learn's MLPClassifier and fastnn's drop-in
replacement on MNIST; only the import differs:

    from sklearn.neural_network import MLPClassifier   # before
    from fastnn import MLPClassifier                   # after

Run it::

    python examples/sklearn_swap.py                 # both, 10 epochs of SGD
    python examples/sklearn_swap.py --only fastnn --max-iter 20
"""
import argparse
import time
import warnings

import fastnn


def train_and_score(MLPClassifier, x, y, xt, yt, max_iter):
    clf = MLPClassifier(hidden_layer_sizes=(100,), solver="sgd", learning_rate_init=0.1,
                        momentum=0.9, batch_size=100, max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():  # max_iter reached: expected for a short run
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        clf.fit(x, y)
        seconds = time.perf_counter() - t0
    return clf.score(xt, yt), seconds, clf.n_iter_


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--max-iter", type=int, default=10, help="epochs (default: 10)")
    p.add_argument("--only", choices=["sklearn", "fastnn"], default=None)
    p.add_argument("--train-rows", type=int, default=60000)
    args = p.parse_args(argv)
    (x, y), (xt, yt) = fastnn.load_mnist()
    x, y = x[:args.train_rows], y[:args.train_rows]
    impls = {}
    if args.only in (None, "sklearn"):
        try:
            from sklearn.neural_network import MLPClassifier
            impls["scikit-learn"] = MLPClassifier
        except ImportError:
            print("scikit-learn is not installed: pip install 'fastnn[sklearn]'")
    if args.only in (None, "fastnn"):
        from fastnn import MLPClassifier
        # fastnn compiles its kernels on first use (cached on disk after
        # that): warm up so the timing below is of training only.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier(hidden_layer_sizes=(4,), max_iter=1).fit(x[:50], y[:50])
        impls["fastnn"] = MLPClassifier
    results = {}
    for name, cls in impls.items():
        acc, seconds, n_iter = train_and_score(cls, x, y, xt, yt, args.max_iter)
        results[name] = seconds
        print(f"{name:>12}: test accuracy {100 * acc:.2f}%  fit {seconds:6.2f}s "
              f"({n_iter} epochs, {seconds / n_iter:.3f} s/epoch)", flush=True)
    if len(results) == 2:
        print(f"fastnn is {results['scikit-learn'] / results['fastnn']:.1f}x faster here")
    return results


if __name__ == "__main__":
    main()
