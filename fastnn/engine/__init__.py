"""The engine: Network, training loop and policies, parameter layout, inputs,
model files, argument checks, the operation registry and the NumPy backend."""


def __getattr__(name):
    from .. import _submodule
    return _submodule(__name__, name)
