"""SplitMix64: the one pseudo-random generator of the kernels.

Reproducible across platforms and independent of NumPy's and Numba's global
generators; used for the epoch shuffles (state advanced in place) and for
the input fingerprint's fixed position keys."""
import numpy as np

from .._config import jit

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


@jit
def splitmix64_mix(z):
    """SplitMix64's output function of one state value."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@jit
def splitmix64(state):
    """Next 64-bit value; ``state`` is a uint64 array of length 1, advanced
    in place."""
    state[0] += GOLDEN_GAMMA
    return splitmix64_mix(state[0])
