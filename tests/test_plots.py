"""fastnn.integrations.plots: the curves and the confusion heatmap render to files."""
import numpy as np
import pytest

import fastnn
from fastnn.integrations import plots

pytest.importorskip("matplotlib")

pytestmark = pytest.mark.both_backends


def test_confusion_matrix_counts():
    m = plots.confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], 3)
    assert m.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 2]]


def test_plot_history_with_validation_and_confusion(tmp_path, rng):
    import matplotlib.image as mpimg

    x = rng.random((300, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(int) + (x[:, 2] > 0.8)
    net = fastnn.Network([6, 12, 3], seed=0)
    net.fit(x, y, epochs=4, batch_size=30, lr=0.3, validation_split=0.2)
    path = tmp_path / "h.png"
    axes = net.plot_history(path, x, y)
    assert [a.get_title() for a in axes][:2] == ["loss", "accuracy"] and len(axes) == 3
    assert "confusion" in axes[2].get_title()
    img = mpimg.imread(path)
    assert img.shape[1] > 2 * img.shape[0]  # three panels side by side
    assert img[..., :3].std() > 0.05  # not blank
    # Each curve panel: train and validation lines, one point per epoch.
    lines = axes[0].get_lines()
    assert len(lines) == 2 and all(len(l.get_xdata()) == 4 for l in lines)


def test_plot_history_regression_and_errors(tmp_path, rng):
    x = rng.random((50, 3))
    net = fastnn.Network([3, 4, 1], output="identity", seed=0)
    with pytest.raises(ValueError, match="call fit first"):
        net.plot_history()
    net.fit(x, x[:, :1], epochs=2, batch_size=10)
    axes = net.plot_history(tmp_path / "r.svg")
    assert len(axes) == 1  # loss only: no accuracy for regression
    assert (tmp_path / "r.svg").read_text().startswith("<?xml")
    with pytest.raises(ValueError, match="softmax"):
        net.plot_history(None, x, x[:, :1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        net.plot_history(tmp_path / "no" / "p.png")
