"""The ``fastnn`` command line (``python -m fastnn``)."""


def __getattr__(name):
    from .. import _submodule
    return _submodule(__name__, name)
