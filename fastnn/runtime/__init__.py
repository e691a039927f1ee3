"""The Numba runtime under the compiled kernels: kernel cache, cold start and
its compile helper, the compile notice, Ctrl-C handling, thread choice and
ahead-of-time compiling."""


def __getattr__(name):
    from .. import _submodule
    return _submodule(__name__, name)
