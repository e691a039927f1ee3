"""fastnn in other tools: scikit-learn estimators, Dask, ONNX, PyTorch,
plots, summaries and the side-by-side benchmark."""
