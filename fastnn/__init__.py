"""fastnn: fast multi-layer perceptrons on the CPU, with Numba kernels.

    >>> import fastnn
    >>> (x, y), (xt, yt) = fastnn.datasets.load_mnist()
    >>> net = fastnn.Network([784, 100, 50, 10], seed=8)
    >>> hist = net.fit(x, y, epochs=2, lr=0.5, shuffle=False)
    >>> net.evaluate(xt, yt)["accuracy"]

The names below are loaded on first use (PEP 562): ``import fastnn`` itself
costs milliseconds and imports neither Numba nor scikit-learn, so the
command line can react to Ctrl-C (or ``--help``) before the heavy imports.
"""
import importlib
import importlib.util

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "Network": (".engine.network", "Network"),
    "TrainingDivergedError": (".engine.training", "TrainingDivergedError"),
    "load_mnist": (".datasets", "load_mnist"),
    "datasets": (".datasets", None),
    "reference": (".reference", None),
    "schedules": (".engine.schedules", None),
    "MLPClassifier": (".integrations.estimators", "MLPClassifier"),
    "MLPRegressor": (".integrations.estimators", "MLPRegressor"),
}


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        # A submodule used as an attribute (``fastnn.engine.network.HIDDEN``), as
        # after an eager ``import fastnn`` it would be.
        module, attr = "." + name, None
        if name.startswith("_") or importlib.util.find_spec(__name__ + module) is None:
            raise AttributeError(f"module 'fastnn' has no attribute {name!r}") from None
    mod = importlib.import_module(module, __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def _submodule(package, name):
    """``package.name`` imported on first use as an attribute (PEP 562), as
    after an eager import of it; for the layer packages' ``__getattr__``."""
    if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return importlib.import_module(f"{package}.{name}")


def __dir__():
    # What a user may call; the lazy-loading machinery stays out of sight.
    return sorted(__all__)


def set_num_threads(n: int) -> None:
    """Set the threads the compiled kernels use.

    Parameters
    ----------
    n : int
        Threads, at most Numba's ``NUMBA_NUM_THREADS`` (the CPU count).
    """
    import numba

    from .runtime.threads import start_pool
    start_pool()
    numba.set_num_threads(n)


def get_num_threads() -> int:
    """The threads the compiled kernels use.

    Returns
    -------
    int
        The current thread count.
    """
    import numba

    from .runtime.threads import start_pool
    start_pool()
    return numba.get_num_threads()


__all__ = ["Network", "MLPClassifier", "MLPRegressor", "TrainingDivergedError", "datasets",
           "load_mnist", "reference", "schedules", "set_num_threads", "get_num_threads",
           "__version__"]
