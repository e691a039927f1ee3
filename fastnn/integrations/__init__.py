"""fastnn in other tools: scikit-learn estimators, Dask, ONNX, PyTorch,
plots, summaries and the side-by-side benchmark."""


def __getattr__(name):
    from .. import _submodule
    return _submodule(__name__, name)
