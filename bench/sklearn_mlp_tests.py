"""scikit-learn's own MLP tests, run against fastnn's estimators, as a first
run on an empty kernel cache and again on the compiled kernels.

A first run trains on the NumPy backend while a helper compiles the
kernels; the second run compiles whatever is still missing in-process
(``FASTNN_BACKGROUND_COMPILE=0``), so every fit runs compiled. The two
should pass the same tests.
(Tests that look at scikit-learn's internals fail on both, for the same
reasons; what matters is the difference.)

    python bench/sklearn_mlp_tests.py [--keep DIR]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def suite_copy(where):
    """scikit-learn's test_mlp.py with its estimators swapped for fastnn's."""
    import sklearn.neural_network.tests.test_mlp as original

    text = Path(original.__file__).read_text()
    swapped = text.replace("from sklearn.neural_network import MLPClassifier, MLPRegressor",
                           "from fastnn import MLPClassifier, MLPRegressor")
    if swapped == text:
        raise SystemExit("scikit-learn's test_mlp.py no longer imports its estimators as expected")
    path = Path(where) / "test_sklearn_mlp.py"
    path.write_text(swapped)
    return path


def run(path, cache_dir, compiled):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("FASTNN_BACKEND", None)
    env.pop("FASTNN_BACKGROUND_COMPILE", None)  # a user's default: NumPy while compiling
    if compiled:
        env["FASTNN_BACKGROUND_COMPILE"] = "0"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "no:randomly", str(path)], capture_output=True, text=True,
                         env=env, cwd=path.parent)
    failed = sorted(set(re.findall(r"^FAILED \S+::(\S+)", out.stdout, re.M)))
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
    return summary, failed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", help="directory for the suite copy and the kernel cache")
    args = p.parse_args()
    where = Path(args.keep or tempfile.mkdtemp(prefix="fastnn-sklearn-mlp-"))
    where.mkdir(parents=True, exist_ok=True)
    path = suite_copy(where)
    cache = where / "kernel-cache"
    results = {}
    for label in ("cold", "warm"):
        results[label] = run(path, cache, compiled=label == "warm")
        print(f"{label:5s} ({'compiled' if label == 'warm' else 'first run'}): "
              f"{results[label][0]}", flush=True)
    only_cold = sorted(set(results["cold"][1]) - set(results["warm"][1]))
    only_warm = sorted(set(results["warm"][1]) - set(results["cold"][1]))
    print(f"failing only on the first run ({len(only_cold)}): {', '.join(only_cold) or '-'}")
    print(f"failing only compiled ({len(only_warm)}): {', '.join(only_warm) or '-'}")
    print(f"failing on both ({len(results['warm'][1]) - len(only_warm)}): "
          f"{', '.join(sorted(set(results['cold'][1]) & set(results['warm'][1]))) or '-'}")
    return 1 if only_cold else 0


if __name__ == "__main__":
    sys.exit(main())
