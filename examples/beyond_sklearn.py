"""What scikit-learn's MLP does not offer
======================================

On an imbalanced problem.

scikit-learn's MLPClassifier has no class weights, no dropout, no AdamW
and no validation-loss curve. fastnn's MLPClassifier keeps scikit-learn's
parameters and adds them. On 95% / 5% classes the plain fit mostly
predicts the majority; class_weight="balanced" trades a little accuracy
for the minority class's recall.

Run it::

    python examples/beyond_sklearn.py
    python examples/beyond_sklearn.py --rows 20000 --max-iter 50
"""
import argparse
import time
import warnings


def configurations(seed):
    """(name, estimator class, parameters) of each run."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastnn import MLPClassifier

    common = dict(hidden_layer_sizes=(64, 32), random_state=seed, learning_rate_init=1e-3)
    return [
        ("scikit-learn MLPClassifier (adam)", SkMLP, dict(common, solver="adam")),
        ("fastnn, same settings", MLPClassifier, dict(common, solver="adam")),
        ("fastnn, class_weight='balanced', adamw", MLPClassifier,
         dict(common, solver="adamw", weight_decay=0.01, class_weight="balanced")),
        ("fastnn, that and dropout 0.2", MLPClassifier,
         dict(common, solver="adamw", weight_decay=0.01, class_weight="balanced",
              dropout=0.2)),
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rows", type=int, default=20000, help="samples (default: 20000)")
    p.add_argument("--max-iter", type=int, default=30, help="epochs (default: 30)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from sklearn.datasets import make_classification
    from sklearn.metrics import balanced_accuracy_score, recall_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=args.rows, n_features=20, n_informative=6,
                               weights=[0.95, 0.05], flip_y=0.01, random_state=args.seed)
    X = StandardScaler().fit_transform(X)
    x, xt, y, yt = train_test_split(X, y, test_size=0.25, stratify=y, random_state=args.seed)
    results = {}
    print(f"{args.rows} rows, {100 * y.mean():.1f}% in the minority class; "
          f"{args.max_iter} epochs each")
    for name, cls, params in configurations(args.seed):
        est = cls(max_iter=args.max_iter, **params)
        with warnings.catch_warnings():  # max_iter reached: expected for a short run
            warnings.simplefilter("ignore")
            if cls.__module__.startswith("fastnn"):  # compile (or load) the kernels first
                cls(hidden_layer_sizes=(4,), max_iter=1, solver=params["solver"]).fit(x[:50],
                                                                                      y[:50])
            t0 = time.perf_counter()
            est.fit(x, y)
            seconds = time.perf_counter() - t0
        pred = est.predict(xt)
        results[name] = dict(balanced_accuracy=balanced_accuracy_score(yt, pred),
                             minority_recall=recall_score(yt, pred), seconds=seconds)
        r = results[name]
        print(f"{name:>40}: balanced accuracy {100 * r['balanced_accuracy']:5.1f}%, "
              f"minority recall {100 * r['minority_recall']:5.1f}%, fit {seconds:6.2f} s",
              flush=True)
    return results


if __name__ == "__main__":
    main()
