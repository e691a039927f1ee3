"""Neural networks from scratch
============================

The math fastnn runs, one step at a time.

1. Least squares, solved exactly with the pseudo-inverse.
2. The same problem by gradient descent.
3. One sigmoid neuron, worked by hand.
4. Softmax with cross-entropy, and its gradient.
5. Backpropagation through a two-layer network by the chain rule, checked
   against finite differences.
6. The classic 784-100-50-10 MNIST network in plain NumPy (fastnn.reference).
7. The same network on fastnn's compiled kernels: the same numbers, faster.

    python examples/from_scratch.py                 # 2 MNIST epochs
    python examples/from_scratch.py --epochs 1 --rows 10000

Each step prints what it computes; ``main`` returns the figures.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn import reference as R


def section(title):
    print(f"\n== {title}")


def least_squares(rng):
    section("1. Least squares: w = pinv(X) y")
    # y = 3 + 2 x1 - x2 + noise; a column of ones carries the intercept.
    X = np.column_stack([np.ones(200), rng.standard_normal((200, 2))])
    y = X @ np.array([3.0, 2.0, -1.0]) + 0.1 * rng.standard_normal(200)
    w = np.linalg.pinv(X) @ y  # minimises |X w - y|^2
    print(f"   exact solution w = {np.round(w, 4)}")
    return X, y, w


def gradient_descent(X, y, exact):
    section("2. Gradient descent on E(w) = |X w - y|^2 / 2n")
    w = np.zeros(X.shape[1])
    lr = 0.1
    for step in range(1, 301):
        grad = X.T @ (X @ w - y) / len(y)  # dE/dw
        w -= lr * grad
        if step in (1, 10, 100, 300):
            print(f"   step {step:3d}: w = {np.round(w, 4)}, |w - exact| = "
                  f"{np.abs(w - exact).max():.2e}")
    return w


def sigmoid_neuron():
    section("3. One sigmoid neuron, by hand")
    x, t = np.array([1.0, 2.0]), 1.0
    w, b = np.array([0.5, -0.25]), 0.1
    u = x @ w + b                      # 0.5 - 0.5 + 0.1 = 0.1
    p = 1 / (1 + np.exp(-u))           # sigmoid(0.1) = 0.525
    loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    # Chain rule: dE/du = p - t for sigmoid with cross-entropy, du/dw = x.
    dw, db = (p - t) * x, p - t
    print(f"   u = x.w + b = {u:.4f}; p = sigmoid(u) = {p:.4f}; E = {loss:.4f}")
    print(f"   dE/dw = (p - t) x = {np.round(dw, 4)}, dE/db = {db:.4f}")
    h = 1e-6
    numeric = [(-np.log(1 / (1 + np.exp(-(x @ (w + h * e) + b))))
                + np.log(1 / (1 + np.exp(-(x @ (w - h * e) + b))))) / (2 * h)
               for e in np.eye(2)]
    print(f"   finite differences: {np.round(numeric, 4)}")
    return float(np.abs(dw - numeric).max())


def softmax_cross_entropy():
    section("4. Softmax and cross-entropy: dE/dz = softmax(z) - onehot(t)")
    z, t = np.array([[2.0, 1.0, 0.1]]), np.array([0])
    loss, dz = R.softmax_cross_entropy(z, t)
    print(f"   softmax(z) = {np.round(R.softmax(z)[0], 4)}; E = -log p_t = {loss:.4f}")
    print(f"   dE/dz = {np.round(dz[0], 4)}")
    h = 1e-6
    numeric = [(R.softmax_cross_entropy(z + h * e, t)[0]
                - R.softmax_cross_entropy(z - h * e, t)[0]) / (2 * h) for e in np.eye(3)]
    print(f"   finite differences: {np.round(numeric, 4)}")
    return float(np.abs(dz[0] - numeric).max())


def backpropagation(rng):
    section("5. Backpropagation through 4-5-3 (tanh), checked by finite differences")
    params = [(0.5 * rng.standard_normal((4, 5)), np.zeros(5)),
              (0.5 * rng.standard_normal((5, 3)), np.zeros(3))]
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    _, grads = R.gradients(params, x, y, hidden="tanh")
    worst, h = 0.0, 1e-6
    for (W, b), (dW, db) in zip(params, grads):
        for p, g in ((W, dW), (b, db)):
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + h
                up = R.gradients(params, x, y, hidden="tanh")[0]
                p[i] = old - h
                down = R.gradients(params, x, y, hidden="tanh")[0]
                p[i] = old
                worst = max(worst, abs((up - down) / (2 * h) - g[i]))
    print(f"   largest |backprop - finite difference| over {sum(W.size + b.size for W, b in params)}"
          f" parameters: {worst:.1e}")
    return worst


def mnist(epochs, rows):
    (x, y), (xt, yt) = fastnn.load_mnist()
    # float64 for both (converted once, outside the timings)
    x, y, xt = x[:rows].astype(np.float64), y[:rows].astype(np.int64), xt.astype(np.float64)
    section(f"6. The classic 784-100-50-10 network in NumPy ({rows} rows, {epochs} epochs)")
    net = fastnn.Network([784, 100, 50, 10], seed=8, dtype="float64")
    params = [(W.copy(), b.copy()) for W, b in zip(net.weights, net.biases)]
    t0 = time.perf_counter()
    ref_losses = [R.train_epoch(params, x, y, 0.5, 100) for _ in range(epochs)]
    numpy_seconds = (time.perf_counter() - t0) / epochs
    ref_acc = R.n_correct(R.forward(params, xt)[-1], yt, "softmax") / len(yt)
    print(f"   losses {np.round(ref_losses, 4)}, test accuracy {100 * ref_acc:.2f}%, "
          f"{numpy_seconds:.2f} s an epoch")

    section("7. The same network on fastnn's kernels")
    net.fit(x[:200], y[:200], epochs=1, lr=0.5, batch_size=100, shuffle=False)  # compile once
    net = fastnn.Network([784, 100, 50, 10], seed=8, dtype="float64")
    time.sleep(1)  # NumPy's BLAS threads spin for a while after its last product
    t0 = time.perf_counter()
    hist = net.fit(x, y, epochs=epochs, lr=0.5, batch_size=100, shuffle=False)
    fast_seconds = (time.perf_counter() - t0) / epochs  # (with the fit's input scan)
    acc = net.evaluate(xt, yt)["accuracy"]
    print(f"   losses {np.round(hist['loss'], 4)}, test accuracy {100 * acc:.2f}%, "
          f"{fast_seconds:.3f} s an epoch: {numpy_seconds / fast_seconds:.1f}x the NumPy speed")
    gap = max(float(np.abs(np.array(hist["loss"]) - ref_losses).max()),
              max(float(np.abs(W - p[0]).max()) for W, p in zip(net.weights, params)))
    print(f"   largest difference from the NumPy network (losses, weights): {gap:.1e}")
    return {"numpy_seconds": numpy_seconds, "fastnn_seconds": fast_seconds,
            "accuracy": acc, "reference_accuracy": ref_acc, "gap": gap}


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rows", type=int, default=60000, help="MNIST training rows (default: all)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X, y, exact = least_squares(rng)
    learned = gradient_descent(X, y, exact)
    results = {"gd_error": float(np.abs(learned - exact).max()),
               "neuron_error": sigmoid_neuron(),
               "softmax_error": softmax_cross_entropy(),
               "backprop_error": backpropagation(rng)}
    results.update(mnist(args.epochs, args.rows))
    return results


if __name__ == "__main__":
    main()
