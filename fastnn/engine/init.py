"""Weight initialisation, shared by :class:`fastnn.Network` and the tests'
reference networks so both start from identical parameters."""
import numpy as np

INITS = ("uniform", "he", "glorot")


def init_params(sizes, init="uniform", init_scale=0.1, seed=None):
    """List of ``(W, b)`` float64 pairs for layer sizes ``sizes``.

    * ``uniform``: the classic tutorial scheme, reproducible bit for bit:
      one ``np.random.RandomState(seed)`` and, layer by layer,
      ``W = rng.rand(fan_in, fan_out) * 2*init_scale - init_scale``.
    * ``he``: ``N(0, 2/fan_in)``, for relu networks.
    * ``glorot``: ``U(-a, a)`` with ``a = sqrt(6/(fan_in+fan_out))``.

    Biases start at zero. ``init_scale`` is used by ``uniform`` only.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    rng = np.random.RandomState(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if init == "uniform":
            W = rng.rand(fan_in, fan_out) * 2 * init_scale - init_scale
        elif init == "he":
            W = rng.randn(fan_in, fan_out) * np.sqrt(2.0 / fan_in)
        else:
            a = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-a, a, size=(fan_in, fan_out))
        params.append((W, np.zeros(fan_out)))
    return params
