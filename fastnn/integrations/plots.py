"""The plots people expect from a training run (matplotlib, optional).

* :func:`plot_history`: loss and accuracy per epoch, train and validation
  (and test, when the command line recorded it), and for classifiers, when
  given, the confusion matrix as a heatmap; returns the figure, and writes
  it when given a path. ``Network.plot_history`` and ``fastnn train
  --plot`` use it.
* :func:`confusion_matrix`: counts of (true class, predicted class).

``import fastnn`` does not import matplotlib; these functions do, and say
how to install it if it is missing.
"""
import os

import numpy as np


def _pyplot(path):
    try:
        import matplotlib
    except ImportError:
        raise ImportError('plots need matplotlib: pip install "fastnn[plot]"') from None
    if path is not None and "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")  # writing a file: no window needed
    import matplotlib.pyplot as plt
    return plt


def confusion_matrix(y_true, y_pred, k):
    """``m[i, j]``: rows of true class ``i`` predicted as class ``j``."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return m


def _curves(ax, epochs, hist, key, label, scale=1.0):
    ax.plot(epochs, scale * np.asarray(hist[key]), "o-", label="train (running mean)")
    for k, name in (("val_" + key, "validation"), ("test_" + key, "test")):
        if k in hist and len(hist[k]) == len(epochs):
            ax.plot(epochs, scale * np.asarray(hist[k]), "s-", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(key)
    ax.grid(alpha=0.3)
    ax.legend()


def _heatmap(ax, m):
    shares = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    k = m.shape[0]
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion ({m.sum()} rows, {100 * np.trace(m) / max(m.sum(), 1):.2f}% right)")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")


def plot_history(hist, path=None, *, confusion=None, title=""):
    """A figure of ``hist`` (a fit's history): loss, accuracy (classifiers)
    and the ``confusion`` matrix heatmap if given. Written to ``path`` (PNG,
    SVG, PDF: by its suffix) if given. Returns the panels' axes (an array:
    loss, accuracy, confusion; ``axes[0].figure`` is the figure): returning
    the figure itself would draw it twice as a notebook cell's last line
    (once as the returned object, once by pyplot's inline backend)."""
    from matplotlib.ticker import MaxNLocator

    if not hist.get("loss"):
        raise ValueError("the history is empty: train for at least one epoch first")
    if path is not None:
        from ..engine.modelio import regular_destination

        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise FileNotFoundError(f"cannot write {path}: directory {d} does not exist")
        path = regular_destination(path)  # no device, FIFO or socket; a link's target
    plt = _pyplot(path)
    epochs = np.arange(1, len(hist["loss"]) + 1)
    classify = not np.isnan(np.asarray(hist.get("accuracy", [np.nan]), float)).all()
    panels = 1 + classify + (confusion is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2), squeeze=False)
    axes = list(axes.ravel())
    for a in axes[:1 + classify]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    _curves(axes[0], epochs, hist, "loss", "loss")
    if classify:
        _curves(axes[1], epochs, hist, "accuracy", "accuracy (%)", 100.0)
    if confusion is not None:
        _heatmap(axes[-1], np.asarray(confusion))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return np.array(axes, dtype=object)
