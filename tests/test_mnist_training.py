"""The classic tutorial run on the bundled MNIST.

784-100-50-10, relu, softmax, uniform +-0.1 init with seed 8, lr 0.5,
batch 100, no shuffling, float32: the tutorial's printed log shows test
accuracy 92.38% after epoch 1 and 96.34% after epoch 2.
"""
import numpy as np
import pytest

import fastnn
from fastnn import reference as R


@pytest.fixture(scope="module")
def mnist():
    return fastnn.load_mnist()


def classic_net(dtype="float32"):
    return fastnn.Network([784, 100, 50, 10], hidden="relu", output="softmax",
                          init="uniform", init_scale=0.1, seed=8, dtype=dtype)


def test_classic_run_reproduces_the_tutorial_log(mnist):
    (x, y), (xt, yt) = mnist
    net = classic_net()
    hist = net.fit(x, y, epochs=2, batch_size=100, lr=0.5, shuffle=False,
                   validation_data=(xt, yt))
    acc = [100 * a for a in hist["val_accuracy"]]
    assert abs(acc[0] - 92.38) <= 0.05, acc
    assert abs(acc[1] - 96.34) <= 0.05, acc


def test_first_mnist_epoch_matches_the_numpy_reference(mnist):
    """Same data, same float64 math: parameters after 600 SGD steps agree."""
    (x, y), _ = mnist
    x = x[:12000].astype(np.float64)
    y = y[:12000]
    net = classic_net("float64")
    params = [(W.copy(), b.copy()) for W, b in zip(net.weights, net.biases)]
    ref_loss = R.train_epoch(params, x, y, 0.5, 100)
    hist = net.fit(x, y, epochs=1, batch_size=100, lr=0.5, shuffle=False)
    assert hist["loss"][0] == pytest.approx(ref_loss, rel=1e-10)
    flat = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params])
    assert np.abs(net.theta - flat).max() < 1e-9


@pytest.mark.slow
def test_classic_configuration_reaches_98_percent_within_30_epochs(mnist):
    (x, y), (xt, yt) = mnist
    net = classic_net()
    best = 0.0
    for epoch in range(30):
        net.fit(x, y, epochs=1, batch_size=100, lr=0.5, shuffle=False)
        best = max(best, net.evaluate(xt, yt)["accuracy"])
        if best >= 0.98:
            break
    assert best >= 0.98, best


@pytest.mark.slow
def test_fifty_epochs_stay_finite_and_accurate(mnist):
    """The endurance run of the robustness issue: 50 classic epochs end with
    finite parameters and ~98.2% test accuracy (bench/endurance.py measures
    its memory)."""
    (x, y), (xt, yt) = mnist
    net = classic_net()
    hist = net.fit(x, y, epochs=50, batch_size=100, lr=0.5, shuffle=False,
                   validation_data=(xt, yt))
    assert np.isfinite(net.theta).all()
    assert np.isfinite(hist["loss"]).all()
    assert hist["val_accuracy"][-1] >= 0.98, hist["val_accuracy"][-5:]
