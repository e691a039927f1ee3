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
7. The same network on fastnn's compiled kernels: the same numbers, faster;
   then in float32, fastnn's default precision.

Run it::

    python examples/from_scratch.py                 # 2 MNIST epochs
    python examples/from_scratch.py --epochs 1 --rows 10000 --show

Each step prints what it computes; ``main`` returns the figures. With
matplotlib installed it also draws three plots (shown with ``--show``).
"""
import argparse
import time

import numpy as np

try:
    import matplotlib.pyplot as plt
except ImportError:  # the plots are optional, the checks are not
    plt = None

import fastnn
from fastnn import reference as R


def section(title):
    print(f"\n== {title}")


# %%
# 1. Least squares
# ----------------
# A linear model predicts ``y_hat = X w``. Least squares picks the
# ``w`` that minimises ``E(w) = |X w - y|^2``; setting
# ``grad E = 2 X.T (X w - y)`` to zero gives the normal equations, and
# the pseudo-inverse solves them in one step: ``w = pinv(X) y``. A column of
# ones in ``X`` carries the intercept.

def least_squares(rng):
    section("1. Least squares: w = pinv(X) y")
    # y = 3 + 2 x1 - x2 + noise; a column of ones carries the intercept.
    X = np.column_stack([np.ones(200), rng.standard_normal((200, 2))])
    y = X @ np.array([3.0, 2.0, -1.0]) + 0.1 * rng.standard_normal(200)
    w = np.linalg.pinv(X) @ y  # minimises |X w - y|^2
    print(f"   exact solution w = {np.round(w, 4)}")
    return X, y, w


# %%
# 2. Gradient descent
# -------------------
# Neural networks have no closed form, so they are trained the iterative
# way: start anywhere and step against the gradient,
# ``w <- w - lr * grad E(w)``. On this convex problem the
# error shrinks by a constant factor per step and reaches the
# pseudo-inverse's answer.

def gradient_descent(X, y, exact):
    section("2. Gradient descent on E(w) = |X w - y|^2 / 2n")
    w = np.zeros(X.shape[1])
    lr = 0.1
    errors = []
    for step in range(1, 301):
        grad = X.T @ (X @ w - y) / len(y)  # dE/dw
        w -= lr * grad
        errors.append(np.abs(w - exact).max())
        if step in (1, 10, 100, 300):
            print(f"   step {step:3d}: w = {np.round(w, 4)}, |w - exact| = {errors[-1]:.2e}")
    if plt is not None:
        # The error shrinks by a constant factor per step: a straight line on
        # a log scale, whose slope the learning rate and X's conditioning set.
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.semilogy(range(1, len(errors) + 1), errors)
        ax.set(xlabel="step", ylabel="max |w - w_exact|",
               title="Gradient descent converges to the pinv solution")
        fig.tight_layout()
    return w


# %%
# 3. One sigmoid neuron, by hand
# ------------------------------
# A neuron computes ``u = x . w + b`` and squashes it,
# ``p = sigmoid(u) = 1 / (1 + exp(-u))``. With the cross-entropy loss
# ``E = -t log p - (1 - t) log(1 - p)`` the chain rule collapses to
# ``dE/du = p - t``, so
# ``dE/dw = (p - t) x``. Central finite differences
# check it.

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
    if plt is not None:
        z = np.linspace(-6, 6, 241)
        s = 1 / (1 + np.exp(-z))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(z, s, label="sigmoid(u)")
        ax.plot(z, s * (1 - s), label="its derivative s (1 - s)")
        ax.plot([u], [p], "o", label=f"the neuron: u = {u:.2f}, p = {p:.3f}")
        ax.set(xlabel="u", title="One sigmoid neuron")
        ax.legend()
        fig.tight_layout()
    return float(np.abs(dw - numeric).max())


# %%
# 4. Softmax with cross-entropy
# -----------------------------
# For K classes the output layer's scores ``z`` become
# probabilities ``softmax(z)_k = exp(z_k) / sum_j exp(z_j)``, and
# the loss is ``-log p_t`` for the true class ``t``. Its gradient is
# again "prediction minus target": ``dE/dz =
# softmax(z) - onehot(t)``.

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


# %%
# 5. Backpropagation
# ------------------
# A network is affine layers ``u = x W + b`` with activations between.
# Backpropagation applies the chain rule layer by layer from the loss back:
# ``delta_out = softmax(z) - onehot(t)``,
# ``dE/dW = x.T delta``, ``dE/db
# = sum(delta)``, and the layer below gets ``delta W.T`` times its
# activation's derivative. ``fastnn.reference.gradients`` is that, in plain
# NumPy; every one of its partial derivatives is checked here against
# finite differences.

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


# %%
# 6-7. The classic MNIST network, in NumPy and on fastnn's kernels
# -----------------------------------------------------------------
# 784 inputs, hidden layers of 100 and 50 ReLU units, a softmax over 10
# digits, mini-batch SGD (batch 100, learning rate 0.5). The NumPy version
# is ``fastnn.reference``; fastnn runs the same math in compiled kernels
# (tiled matrix products, a sparse first layer, whole epochs in compiled
# code), so from the same weights it reaches the same losses and weights
# to float64 rounding, and then runs again in float32.

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

    # float32 halves the bytes every product moves and doubles the values
    # per vector; 784-100-50-10 trains as well in it (fastnn's default).
    x32, xt32 = x.astype(np.float32), xt.astype(np.float32)
    net32 = fastnn.Network([784, 100, 50, 10], seed=8)
    net32.fit(x32[:200], y[:200], epochs=1, lr=0.5, batch_size=100, shuffle=False)  # compile
    net32 = fastnn.Network([784, 100, 50, 10], seed=8)
    t0 = time.perf_counter()
    hist32 = net32.fit(x32, y, epochs=epochs, lr=0.5, batch_size=100, shuffle=False)
    fast32_seconds = (time.perf_counter() - t0) / epochs
    acc32 = net32.evaluate(xt32, yt)["accuracy"]
    print(f"   float32: losses {np.round(hist32['loss'], 4)}, test accuracy {100 * acc32:.2f}%, "
          f"{fast32_seconds:.3f} s an epoch: {numpy_seconds / fast32_seconds:.1f}x")
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6, 3))
        names = ["NumPy (float64)", "fastnn (float64)", "fastnn (float32)"]
        seconds = [numpy_seconds, fast_seconds, fast32_seconds]
        ax.barh(names[::-1], seconds[::-1])
        for i, v in enumerate(seconds[::-1]):
            ax.text(v, i, f" {v:.3f} s", va="center")
        ax.set(xlabel=f"seconds per epoch ({rows} rows, batch 100)",
               title="The same network, the same numbers")
        ax.set_xlim(0, max(seconds) * 1.3)
        fig.tight_layout()
    return {"numpy_seconds": numpy_seconds, "fastnn_seconds": fast_seconds,
            "fastnn32_seconds": fast32_seconds, "accuracy32": acc32,
            "accuracy": acc, "reference_accuracy": ref_acc, "gap": gap}


# %%
# Run every step
# --------------
# The printed figures and the three plots follow.

def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rows", type=int, default=60000, help="MNIST training rows (default: all)")
    p.add_argument("--show", action="store_true", help="show the plots (needs matplotlib)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X, y, exact = least_squares(rng)
    learned = gradient_descent(X, y, exact)
    results = {"gd_error": float(np.abs(learned - exact).max()),
               "neuron_error": sigmoid_neuron(),
               "softmax_error": softmax_cross_entropy(),
               "backprop_error": backpropagation(rng)}
    results.update(mnist(args.epochs, args.rows))
    if args.show and plt is not None:
        plt.show()
    return results


if __name__ == "__main__":
    main()
