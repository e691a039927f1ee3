"""fastnn: fast multi-layer perceptrons on the CPU, with Numba kernels.

    >>> import fastnn
    >>> (x, y), (xt, yt) = fastnn.datasets.load_mnist()
    >>> net = fastnn.Network([784, 100, 50, 10], seed=8)
    >>> hist = net.fit(x, y, epochs=2, lr=0.5, shuffle=False)
    >>> net.evaluate(xt, yt)["accuracy"]
"""
import numba

from . import datasets, reference
from .datasets import load_mnist
from .network import Network, TrainingDivergedError

__version__ = "0.1.0"


def __getattr__(name):
    # The scikit-learn estimators load scikit-learn: only when asked for.
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def set_num_threads(n):
    """Threads used by the compiled kernels (at most the CPU count)."""
    numba.set_num_threads(n)


def get_num_threads():
    return numba.get_num_threads()


__all__ = ["Network", "MLPClassifier", "MLPRegressor", "TrainingDivergedError", "datasets", "load_mnist", "reference", "set_num_threads",
           "get_num_threads", "__version__"]
